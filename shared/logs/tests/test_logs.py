"""The one log setup: structlog events and standard-library records alike are JSON lines on the
chosen stream, carrying the bound context; the level filters both."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from arco_logs import configure_logging


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = io.StringIO()
    yield out
    root.handlers, root.level = handlers, level
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_events_and_stdlib_records_are_json_lines_with_context(stream: io.StringIO) -> None:
    configure_logging("info", stream=stream)
    structlog.contextvars.bind_contextvars(run_id="run-1")
    structlog.get_logger("t").info("callback", status=200)
    # A logger of its own: in-process servers of other suites may have configured uvicorn's.
    logging.getLogger("arco_logs_test.server").info(
        "Started server", extra={"color_message": "\x1b[1m"}
    )
    event, record = lines(stream)
    assert (event["event"], event["status"], event["run_id"], event["level"]) == (
        "callback",
        200,
        "run-1",
        "info",
    )
    assert (record["event"], record["run_id"], record["level"]) == (
        "Started server",
        "run-1",
        "info",
    )
    assert "color_message" not in record
    assert event["timestamp"].endswith("Z")


@pytest.mark.parametrize("level", ["WARNING", "warning"])
def test_level_filters_both_in_any_case(stream: io.StringIO, level: str) -> None:
    configure_logging(level, stream=stream)
    structlog.get_logger("t").info("quiet")
    logging.getLogger("arco_logs_test.quiet").info("quiet too")
    structlog.get_logger("t").warning("loud")
    assert [line["event"] for line in lines(stream)] == ["loud"]


def test_exceptions_are_rendered_into_the_line(stream: io.StringIO) -> None:
    configure_logging(stream=stream)
    try:
        raise ValueError("bad")
    except ValueError:
        structlog.get_logger("t").exception("failed")
    [line] = lines(stream)
    assert "ValueError: bad" in line["exception"]
