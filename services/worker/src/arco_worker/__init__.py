"""Reference external worker for arco's ``WorkerDispatchEnvelope``.

The library part a worker author needs::

    from arco_worker import TaskContext, Worker

    worker = Worker()

    @worker.task("analytics.daily_sales")
    def daily_sales(ctx: TaskContext) -> dict[str, int]:
        return {"rowCount": 42}

    if __name__ == "__main__":
        worker.serve()
"""

from arco_worker.client import (
    CallbackClient,
    CallbackError,
    CallbackRejectedError,
    CallbackUnavailableError,
    RetryPolicy,
)
from arco_worker.context import CancellationSignal, ProgressSnapshot, TaskContext
from arco_worker.errors import RegistrationError, TaskCancelled, TaskFailure
from arco_worker.worker import Worker

__all__ = [
    "CallbackClient",
    "CallbackError",
    "CallbackRejectedError",
    "CallbackUnavailableError",
    "CancellationSignal",
    "ProgressSnapshot",
    "RegistrationError",
    "RetryPolicy",
    "TaskCancelled",
    "TaskContext",
    "TaskFailure",
    "Worker",
]
