"""The registry of task handlers keyed by task key (what :class:`arco_worker.Worker` is, minus
serving it).

A handler is a sync or async function taking one :class:`TaskContext`. It returns the task's
output (a ``TaskOutput``, a mapping of its fields, or ``None``) or raises.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from arco_worker.context import TaskContext
from arco_worker.errors import RegistrationError

Handler = Callable[[TaskContext], Any]
H = TypeVar("H", bound=Handler)

# Task keys are asset-like names (`analytics.daily_sales`); whitespace or an empty key is
# always a typo, which we would rather catch at import time than at dispatch time.
_TASK_KEY = re.compile(r"^\S+$")


@dataclass(frozen=True)
class RegisteredTask:
    """One handler and how it is run."""

    task_key: str
    handler: Handler
    is_async: bool
    # Task keys this one depends on (a manifest derived from the worker declares them).
    deps: tuple[str, ...] = ()


def _is_async(handler: Handler) -> bool:
    call = getattr(handler, "__call__", None)  # noqa: B004 - async __call__ of callable objects
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)


def _check_signature(task_key: str, handler: Handler) -> None:
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):
        return  # builtins without a signature: trust the caller
    try:
        signature.bind(object())
    except TypeError:
        raise RegistrationError(
            f"handler for {task_key!r} must accept exactly one argument (the TaskContext), "
            f"its signature is {signature}"
        ) from None


class TaskRegistry:
    """A set of task handlers; :class:`arco_worker.Worker` adds serving them."""

    def __init__(self, name: str = "arco-worker") -> None:
        self.name = name
        self._tasks: dict[str, RegisteredTask] = {}

    def task(self, task_key: str, *, deps: Sequence[str] = ()) -> Callable[[H], H]:
        """Register the decorated function as the handler of ``task_key``; ``deps`` names
        the task keys it depends on (``arco-stack deploy --worker`` declares them).

        Raises :class:`RegistrationError` at once for a malformed key or dependency, a key
        registered twice or a function that cannot take a single context argument.
        """

        def register(handler: H) -> H:
            self.add(task_key, handler, deps=deps)
            return handler

        return register

    def add(self, task_key: str, handler: Handler, *, deps: Sequence[str] = ()) -> None:
        """Register ``handler`` for ``task_key`` (the non-decorator form of :meth:`task`)."""
        if not isinstance(task_key, str) or not _TASK_KEY.match(task_key):
            raise RegistrationError(
                f"task key must be a non-empty string without spaces: {task_key!r}"
            )
        if isinstance(deps, str):
            raise RegistrationError(f"deps of {task_key!r} must be a list of task keys")
        for dep in deps:
            if not isinstance(dep, str) or not _TASK_KEY.match(dep) or dep == task_key:
                raise RegistrationError(f"{task_key!r} has an invalid dependency: {dep!r}")
        if not callable(handler):
            raise RegistrationError(f"handler for {task_key!r} is not callable")
        if task_key in self._tasks:
            raise RegistrationError(f"task key {task_key!r} is registered twice")
        _check_signature(task_key, handler)
        self._tasks[task_key] = RegisteredTask(
            task_key, handler, _is_async(handler), tuple(dict.fromkeys(deps))
        )

    def include(self, other: TaskRegistry) -> None:
        """Register every handler of ``other`` (e.g. the sample tasks) in this worker."""
        for task in other.tasks.values():
            self.add(task.task_key, task.handler, deps=task.deps)

    @property
    def tasks(self) -> Mapping[str, RegisteredTask]:
        """Registered handlers by task key."""
        return dict(self._tasks)

    def get(self, task_key: str) -> RegisteredTask | None:
        """The handler registered for ``task_key``, if any."""
        return self._tasks.get(task_key)

    def validate(self) -> None:
        """Check the registry is usable; the service calls this before it starts serving."""
        if not self._tasks:
            raise RegistrationError(
                f"worker {self.name!r} has no task handlers: register some with "
                "@worker.task(...) or set ARCO_WORKER_SAMPLE_TASKS=true"
            )
