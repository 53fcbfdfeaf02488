"""Exceptions a task handler raises to say how its attempt ended."""

from __future__ import annotations

from arco_envelope import ErrorCategory


class TaskFailure(Exception):  # noqa: N818 - reads as the outcome it reports
    """A failure with an explicit category and retry decision.

    Any other exception a handler raises is reported as ``USER_CODE`` with the server's
    default retry rule. Raise this one to report e.g. bad input data as ``DATA_QUALITY``
    (not retried by default) or a flaky dependency as a retryable ``INFRASTRUCTURE`` error.
    ``retryable=None`` leaves the decision to the category's default.
    """

    def __init__(
        self,
        message: str,
        *,
        category: ErrorCategory = ErrorCategory.USER_CODE,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.category = category
        self.retryable = retryable


class TaskCancelled(Exception):  # noqa: N818 - reads as the event it reports
    """Raised by ``TaskContext.raise_if_cancelled()`` once cancellation was requested.

    Handlers may let it propagate; the attempt is then reported as ``CANCELLED``.
    """


class RegistrationError(ValueError):
    """A task handler cannot be registered, or the registry is unusable."""
