"""Wire timestamps (arco-contract section 2.4): relaxed RFC 3339 reading with a mandatory
offset, normalised to UTC; writing in UTC with ``Z`` and 0, 3, 6 or 9 fractional digits."""

from __future__ import annotations

import copy
import json
import pickle
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from arco_envelope import TaskStartedRequest, format_timestamp, parse_timestamp

MIDNIGHT = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-01T00:00:00Z", MIDNIGHT),
        ("2026-01-01T02:00:00+02:00", MIDNIGHT),
        ("2026-01-01T02:00:00+0200", MIDNIGHT),
        ("2025-12-31T23:00:00-01:00", MIDNIGHT),
        ("2025-12-31T23:00:00-0100", MIDNIGHT),
        ("2026-01-01T05:30:00+05:30", MIDNIGHT),
        ("2026-01-01T00:00:00+00:00", MIDNIGHT),
        ("2026-01-01T00:00:00-00:00", MIDNIGHT),
        ("2026-01-01T00:00:00UTC", MIDNIGHT),
        ("2026-01-01t00:00:00z", MIDNIGHT),
        ("2026-01-01T00:00:00z", MIDNIGHT),
        ("2026-01-01t00:00:00Z", MIDNIGHT),
        ("2026-01-01 00:00:00Z", MIDNIGHT),
        ("2026-01-01 02:00:00+02:00", MIDNIGHT),
        ("2026-01-01T00:00:00.250Z", MIDNIGHT + timedelta(milliseconds=250)),
        ("2026-01-01T00:00:00.5Z", MIDNIGHT + timedelta(milliseconds=500)),
        ("2026-01-01T00:00:00.123456Z", MIDNIGHT + timedelta(microseconds=123456)),
        ("2026-01-01T02:00:00.000001+02:00", MIDNIGHT + timedelta(microseconds=1)),
    ],
)
def test_parse_timestamp_accepts_relaxed_rfc3339_and_normalises_to_utc(
    text: str, expected: datetime
) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("2026-03-04T05:06:07.123456789Z", "2026-03-04T05:06:07.123456789Z"),
        ("2026-03-04T05:06:07.000000001Z", "2026-03-04T05:06:07.000000001Z"),
        ("2026-03-04T05:06:07.1234567Z", "2026-03-04T05:06:07.123456700Z"),
        ("2026-03-04T05:06:07.123456000Z", "2026-03-04T05:06:07.123456Z"),
        ("2026-03-04T05:06:07.120000000Z", "2026-03-04T05:06:07.120Z"),
        ("2026-03-04T05:06:07.000000000Z", "2026-03-04T05:06:07Z"),
        ("2026-03-04T07:06:07.999999999+02:00", "2026-03-04T05:06:07.999999999Z"),
        ("2026-03-04T05:06:07.1234567891234Z", "2026-03-04T05:06:07.123456789Z"),
    ],
)
def test_nanoseconds_are_kept_and_written_with_3_6_or_9_digits(text: str, written: str) -> None:
    """arco-contract 2.4 (issue 15 finding 12): the fewest of 3, 6 or 9 digits that are exact;
    nanoseconds survive parse, copy, pickle and write."""
    parsed = parse_timestamp(text)
    assert format_timestamp(parsed) == written
    assert format_timestamp(copy.deepcopy(parsed)) == written
    assert format_timestamp(pickle.loads(pickle.dumps(parsed))) == written  # noqa: S301


def test_parse_timestamp_compares_at_microseconds() -> None:
    # Arithmetic and comparison are those of datetime: nanoseconds (which upstream's
    # serverTime usually carries) count only when written, never rounded into a microsecond.
    assert parse_timestamp("2026-01-01T00:00:00.123456789Z") == MIDNIGHT + timedelta(
        microseconds=123456
    )
    assert parse_timestamp("2026-01-01T00:00:00.999999999Z") == MIDNIGHT + timedelta(
        microseconds=999999
    )


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("2026-01-01T00:00:00", id="naive"),
        pytest.param("2026-01-01T00:00:00.250", id="naive-with-fraction"),
        pytest.param("2026-01-01 00:00:00", id="naive-space"),
        pytest.param("2026-01-01", id="date-only"),
        pytest.param("2026-01-01T00:00Z", id="no-seconds"),
        pytest.param("2026-01-01T00:00:00+02", id="hour-only-offset"),
        pytest.param("2026-01-01T00:00:00+24:00", id="offset-hours-out-of-range"),
        pytest.param("2026-01-01T00:00:00+02:60", id="offset-minutes-out-of-range"),
        pytest.param("2026-13-01T00:00:00Z", id="month-13"),
        pytest.param("2026-02-30T00:00:00Z", id="february-30"),
        pytest.param("2026-01-01T25:00:00Z", id="hour-25"),
        pytest.param("2026-01-01X00:00:00Z", id="bad-separator"),
        pytest.param("2026-01-01T00:00:00.Z", id="empty-fraction"),
        pytest.param("1767225600", id="unix-seconds-string"),
        pytest.param("", id="empty"),
    ],
)
def test_parse_timestamp_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid timestamp"):
        parse_timestamp(text)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("0001-01-01T00:00:00+01:00", id="before-year-1-in-utc"),
        pytest.param("9999-12-31T23:59:59-01:00", id="after-year-9999-in-utc"),
    ],
)
def test_parse_timestamp_out_of_python_range_raises_value_error(text: str) -> None:
    """An offset that pushes the instant outside Python's datetime range must be reported as
    a ``ValueError`` (so models turn it into a ``ValidationError``), not an ``OverflowError``."""
    with pytest.raises(ValueError, match="invalid timestamp"):
        parse_timestamp(text)


def test_out_of_range_timestamp_in_a_body_is_a_validation_error() -> None:
    """``from_json`` promises ``pydantic.ValidationError``; a server maps that to 422, while an
    ``OverflowError`` escaping the model would become a 500."""
    body = json.dumps(
        {
            "attempt": 1,
            "attemptId": "att-1",
            "workerId": "w",
            "startedAt": "9999-12-31T23:59:59-01:00",
        }
    )
    with pytest.raises(ValidationError):
        TaskStartedRequest.from_json(body)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (MIDNIGHT, "2026-01-01T00:00:00Z"),
        (MIDNIGHT + timedelta(milliseconds=250), "2026-01-01T00:00:00.250Z"),
        (MIDNIGHT + timedelta(milliseconds=1), "2026-01-01T00:00:00.001Z"),
        (MIDNIGHT + timedelta(microseconds=123456), "2026-01-01T00:00:00.123456Z"),
        (MIDNIGHT + timedelta(microseconds=1), "2026-01-01T00:00:00.000001Z"),
        (MIDNIGHT + timedelta(microseconds=100), "2026-01-01T00:00:00.000100Z"),
        (MIDNIGHT + timedelta(microseconds=999999), "2026-01-01T00:00:00.999999Z"),
        (datetime(2026, 6, 30, 23, 59, 59, tzinfo=UTC), "2026-06-30T23:59:59Z"),
    ],
)
def test_format_timestamp_uses_the_fewest_fraction_digits(value: datetime, expected: str) -> None:
    assert format_timestamp(value) == expected
    assert parse_timestamp(expected) == value


def test_format_timestamp_converts_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert format_timestamp(datetime(2026, 1, 1, 2, 0, tzinfo=plus_two)) == "2026-01-01T00:00:00Z"
    minus_half = timezone(-timedelta(hours=3, minutes=30))
    assert (
        format_timestamp(datetime(2025, 12, 31, 20, 30, 0, 500000, tzinfo=minus_half))
        == "2026-01-01T00:00:00.500Z"
    )


def test_format_timestamp_rejects_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        format_timestamp(datetime(2026, 1, 1))  # naive on purpose


def test_format_timestamp_pads_the_year_to_four_digits() -> None:
    """RFC 3339 years are four digits; ``strftime("%Y")`` does not pad years below 1000 on
    Linux, so the written value could not be read back."""
    value = datetime(999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert format_timestamp(value) == "0999-12-31T23:59:59Z"
    assert parse_timestamp(format_timestamp(value)) == value


def test_timestamp_fields_reject_naive_datetimes_from_python() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        TaskStartedRequest(
            attempt=1,
            attempt_id="att-1",
            worker_id="w",
            started_at=datetime(2026, 1, 1),  # naive on purpose
        )


def test_timestamp_fields_normalise_aware_datetimes_from_python() -> None:
    request = TaskStartedRequest(
        attempt=1,
        attempt_id="att-1",
        worker_id="w",
        started_at=datetime(2026, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2))),
    )
    assert request.started_at == MIDNIGHT
    assert request.started_at is not None
    assert request.started_at.tzinfo is UTC
    assert request.to_dict()["startedAt"] == "2026-01-01T00:00:00Z"


@pytest.mark.parametrize("value", [1767225600, 1767225600.0, True, ["2026-01-01T00:00:00Z"]])
def test_timestamp_fields_reject_non_strings(value: object) -> None:
    body = {"attempt": 1, "attemptId": "att-1", "workerId": "w", "startedAt": value}
    with pytest.raises(ValidationError, match="startedAt"):
        TaskStartedRequest.from_dict(body)
