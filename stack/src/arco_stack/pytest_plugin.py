"""pytest plugin: the ``arco_stack`` fixture runs a whole stack around the worker under test.

Installing arco-stack registers it (entry point ``pytest11``); ``pytest_plugins =
["arco_stack.pytest_plugin"]`` works too. Name the worker with ``--arco-worker MODULE:ATTR``
(or the ini key ``arco_worker``), or ``--arco-worker-url URL`` for one already running.
SQLite in a temporary folder by default; ``--arco-database-url URL`` or ``--arco-postgres
container`` (testcontainers, image ``$ARCO_TEST_POSTGRES_IMAGE``, default ``postgres:16``) for
PostgreSQL. A failing test that used the fixture shows the tail of each service's log.

``arco_stack_factory`` starts more stacks, each with its own options over the command line's
(another worker, another database, extra environment): ``arco_stack_factory(worker=
"tests.e2e.e2e_handlers:worker", database_url=url)``. Each is stopped at the end of the
session, or earlier by its ``stop()``; ``arco_stack`` is the factory's stack with the command
line's options.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import replace
from typing import Any, Protocol

import pytest

from arco_stack.harness import ArcoStack, HarnessError, HarnessOptions
from arco_stack.processes import StackError

_RUNNING = pytest.StashKey[list[ArcoStack]]()
_FIXTURES = ("arco_stack", "arco_stack_factory")


class ArcoStackFactory(Protocol):
    """Start a stack; keyword arguments replace fields of :class:`HarnessOptions` (``worker``,
    ``worker_url``, ``database_url``, ``postgres_container``, ``worker_dir``, ``overrides``)."""

    def __call__(self, **options: Any) -> ArcoStack: ...


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("arco-stack", "a stack around the worker under test (arco_stack)")
    group.addoption(
        "--arco-worker",
        metavar="MODULE:ATTR",
        help="the arco_worker.Worker under test, started as `arco-worker --worker MODULE:ATTR`",
    )
    group.addoption(
        "--arco-worker-url",
        metavar="URL",
        help="a worker already running (any language) instead; it must expect the dispatch "
        "secret in $ARCO_FLOW_WORKER_DISPATCH_SECRET, tenant `local` and workspace `demo`",
    )
    group.addoption("--arco-database-url", metavar="URL", help="PostgreSQL to use (migrated)")
    group.addoption(
        "--arco-postgres",
        choices=["container"],
        help="`container`: PostgreSQL in a container started through testcontainers",
    )
    parser.addini("arco_worker", "the worker under test, MODULE:ATTR (like --arco-worker)")


def _options(config: pytest.Config) -> HarnessOptions:
    worker_url: str | None = config.getoption("--arco-worker-url")
    worker: str | None = config.getoption("--arco-worker")
    if worker is None and worker_url is None:
        worker = str(config.getini("arco_worker") or "") or None
    return HarnessOptions(
        worker=worker,
        worker_url=worker_url,
        database_url=config.getoption("--arco-database-url"),
        postgres_container=config.getoption("--arco-postgres") == "container",
        worker_dir=config.rootpath,
    )


def _log_sections(stack: ArcoStack) -> str:
    return "\n".join(
        f"--- {name} log (last lines) ---\n{text}" for name, text in stack.service_logs().items()
    )


@pytest.fixture(scope="session")
def arco_stack_factory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ArcoStackFactory]:
    """Starts stacks (api, dispatcher, sweeper, a worker) on free ports; each one's options
    are the command line's with the keyword arguments replacing fields."""
    running = request.config.stash.setdefault(_RUNNING, [])
    started: list[ArcoStack] = []

    def start(**changes: Any) -> ArcoStack:
        defaults = _options(request.config)
        if "worker" in changes or "worker_url" in changes:
            # Naming one worker drops the command line's other.
            defaults = replace(defaults, worker=None, worker_url=None)
        try:
            stack = ArcoStack(replace(defaults, **changes), tmp_path_factory.mktemp("arco-stack"))
        except (HarnessError, TypeError) as exc:
            pytest.fail(f"arco_stack: {exc}", pytrace=False)
        try:
            stack.start()
        except (HarnessError, StackError) as exc:
            pytest.fail(f"arco_stack could not start: {exc}\n{_log_sections(stack)}", pytrace=False)
        started.append(stack)
        running.append(stack)
        return stack

    try:
        yield start
    finally:
        for stack in reversed(started):
            stack.stop()
            running.remove(stack)


@pytest.fixture(scope="session")
def arco_stack(arco_stack_factory: ArcoStackFactory) -> ArcoStack:
    """api, dispatcher, sweeper and the worker under test as real processes on free ports."""
    return arco_stack_factory()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    fixtures = getattr(item, "fixturenames", ())
    if not report.failed or not any(name in fixtures for name in _FIXTURES):
        return report
    stacks = [stack for stack in item.config.stash.get(_RUNNING, []) if stack.running]
    for stack in stacks:
        # Several stacks run at once: each section names the stack's data folder.
        label = f" ({stack.data_dir.name})" if len(stacks) > 1 else ""
        for name, text in stack.service_logs().items():
            report.sections.append((f"arco-stack{label} {name} log (last lines)", text))
    return report
