"""The handler registry: malformed registrations fail at import time, not at dispatch."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from arco_worker import RegistrationError, TaskContext, Worker
from arco_worker.dedupe import DeliveryState, DispatchRegistry
from arco_worker.serving import load_worker


def test_decorator_registers_sync_and_async_handlers() -> None:
    worker = Worker()

    @worker.task("a.sync")
    def sync_handler(ctx: TaskContext) -> None:
        return None

    @worker.task("a.async")
    async def async_handler(ctx: TaskContext) -> None:
        return None

    assert sync_handler.__name__ == "sync_handler"  # the decorator returns the function
    tasks = worker.tasks
    assert tasks["a.sync"].is_async is False
    assert tasks["a.async"].is_async is True
    worker.validate()


def test_async_callable_object_is_async() -> None:
    class Handler:
        async def __call__(self, ctx: TaskContext) -> None:
            return None

    worker = Worker()
    worker.add("obj", Handler())
    assert worker.tasks["obj"].is_async


def test_same_key_twice_is_refused() -> None:
    worker = Worker()
    worker.add("dup", lambda ctx: None)
    with pytest.raises(RegistrationError, match="registered twice"):
        worker.add("dup", lambda ctx: None)


@pytest.mark.parametrize("key", ["", "has space", " lead"])
def test_malformed_key_is_refused(key: str) -> None:
    with pytest.raises(RegistrationError, match="task key"):
        Worker().add(key, lambda ctx: None)


def test_handler_must_take_one_context_argument() -> None:
    def two(ctx: TaskContext, other: int) -> None:
        return None

    def none() -> None:
        return None

    worker = Worker()
    # Typed as Any: these are the mistakes an untyped caller makes.
    for bad in (two, none):
        handler: Any = bad
        with pytest.raises(RegistrationError, match="exactly one argument"):
            worker.add("bad", handler)
    assert worker.tasks == {}


def test_empty_worker_does_not_validate() -> None:
    with pytest.raises(RegistrationError, match="no task handlers"):
        Worker().validate()


def test_include_copies_handlers() -> None:
    first, second = Worker(), Worker()
    first.add("x", lambda ctx: None)
    second.include(first)
    assert set(second.tasks) == {"x"}


def test_dispatch_registry_is_bounded_lru() -> None:
    registry = DispatchRegistry(remembered=2)
    for name in ("a", "b", "c"):
        registry.claim(name)
        assert registry.state(name) is DeliveryState.IN_FLIGHT
        registry.finish(name)
    assert registry.state("a") is DeliveryState.NEW  # evicted
    assert registry.state("b") is DeliveryState.FINISHED
    registry.claim("d")
    assert registry.in_flight == 1
    registry.release("d")
    assert registry.state("d") is DeliveryState.NEW
    with pytest.raises(ValueError, match="already known"):
        registry.claim("c")


def test_dependencies_are_declared_with_the_task() -> None:
    worker = Worker()

    @worker.task("shop.orders")
    def orders(ctx: TaskContext) -> None:
        return None

    @worker.task("shop.report", deps=["shop.orders", "shop.orders"])
    def report(ctx: TaskContext) -> None:
        return None

    assert worker.tasks["shop.orders"].deps == ()
    assert worker.tasks["shop.report"].deps == ("shop.orders",)
    copy = Worker()
    copy.include(worker)
    assert copy.tasks["shop.report"].deps == ("shop.orders",)


@pytest.mark.parametrize("deps", ["shop.orders", ["has space"], [""], ["shop.self"], [3]])
def test_malformed_dependencies_are_refused(deps: Any) -> None:
    worker = Worker()
    with pytest.raises(RegistrationError):
        worker.add("shop.self", lambda ctx: None, deps=deps)


def test_a_worker_module_is_imported_from_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "authored_tasks_cwd.py").write_text(
        "from arco_worker import Worker\nworker = Worker()\n"
        "@worker.task('mine.hello')\ndef hello(ctx):\n    print('hi')\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert set(load_worker("authored_tasks_cwd:worker").tasks) == {"mine.hello"}


def test_a_worker_module_is_imported_from_worker_dir(tmp_path: Path) -> None:
    (tmp_path / "authored_tasks_dir.py").write_text(
        "from arco_worker import Worker\nworker = Worker()\nnot_a_worker = 1\n"
    )
    assert load_worker("authored_tasks_dir:worker", tmp_path).tasks == {}
    with pytest.raises(RegistrationError, match=r"is not an arco_worker\.Worker"):
        load_worker("authored_tasks_dir:not_a_worker", tmp_path)
    with pytest.raises(RegistrationError, match="cannot import 'no_such_module_here'"):
        load_worker("no_such_module_here:worker", tmp_path)


def test_a_handler_can_be_called_directly_with_a_test_context() -> None:
    ctx = TaskContext.for_test("shop.orders", payload={"n": 2}, partition_key="date=x")
    assert (ctx.task_key, ctx.payload, ctx.partition_key, ctx.attempt) == (
        "shop.orders",
        {"n": 2},
        "date=x",
        1,
    )
    assert not ctx.cancelled
