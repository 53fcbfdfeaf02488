"""The :class:`Worker` a worker author builds: a registry of task handlers that can serve itself."""

from __future__ import annotations

from arco_worker.registry import TaskRegistry
from arco_worker.serving import run


class Worker(TaskRegistry):
    """A set of task handlers served by the arco worker service.

    >>> worker = Worker()
    >>> @worker.task("analytics.daily_sales")
    ... def daily_sales(ctx: TaskContext) -> dict[str, int]:
    ...     return {"rowCount": 42}
    """

    def serve(self) -> None:
        """Serve this worker with the configuration from the environment, until SIGTERM.

        Exits the process with status 2 when the configuration is invalid.
        """
        code = run(self)
        if code:
            raise SystemExit(code)
