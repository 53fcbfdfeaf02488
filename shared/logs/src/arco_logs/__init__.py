"""The one logging setup of the services: structlog events and standard-library records (uvicorn,
SQLAlchemy) alike become one JSON object per line, with the context variables the caller bound
(request, run, task and attempt ids), so a log pipeline can index them.

A package of its own because every service uses it and the worker may import nothing of ours
but the envelope and this.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

__all__ = ["configure_logging"]


def _drop_color_message(
    _logger: object, _method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    # uvicorn attaches an ANSI-coloured copy of its message for terminals; JSON needs one.
    event.pop("color_message", None)
    return event


class _WithoutQueryString(logging.Filter):
    """uvicorn's access lines without the query string: a secret put in a URL by mistake
    (``?secret=...``) must not reach the logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # uvicorn.access: (client, method, path with query, http version, status)
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], args[2].split("?", 1)[0], args[3], args[4])
        return True


def _level_number(level: str) -> int:
    """``debug``/``INFO``/... in any case; an unknown name logs errors only."""
    return logging.getLevelNamesMapping().get(level.upper(), logging.ERROR)


def configure_logging(level: str = "INFO", *, stream: TextIO | None = None) -> None:
    """Route structlog and the standard library to JSON lines on ``stream`` (stderr unless
    given) at ``level``."""
    out = stream if stream is not None else sys.stderr
    levelno = _level_number(level)
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(levelno),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(), _drop_color_message],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(levelno)
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _WithoutQueryString) for f in access.filters):
        access.addFilter(_WithoutQueryString())
