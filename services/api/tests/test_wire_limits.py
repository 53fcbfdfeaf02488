"""Every limit a column has is a limit of the wire model (issue 15 finding 5), so a value
the model accepts is one the database can hold, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import pytest
from services.api.tests.api_test_support import Api, Attempt, error_of
from sqlalchemy import String

from arco_envelope.callbacks import MAX_OUTPUT_KEY_LENGTH
from arco_orchestration.models import Task


@pytest.mark.parametrize("field", ["materializationId", "deltaTable"])
def test_an_output_key_longer_than_its_column_is_422_naming_it(
    api: Api, running: Attempt, field: str
) -> None:
    """A 600-character ``output.materializationId`` passed the model and then was refused by
    the database (400 on PostgreSQL): now the model refuses it, naming the field."""
    before = api.snapshot(running.run_id)
    response = api.completed(running, extra={"output": {field: "m" * 600}})
    status, code, message = error_of(response)
    assert (status, code) == (422, "invalid_request")
    assert f"output.{field}" in message
    assert api.snapshot(running.run_id) == before


def test_an_output_key_at_the_column_limit_is_stored(api: Api, running: Attempt) -> None:
    longest = "m" * MAX_OUTPUT_KEY_LENGTH
    output = {"materializationId": longest, "deltaTable": longest}
    assert api.completed(running, extra={"output": output}).status_code == 200
    task = api.snapshot(running.run_id)["task"]
    assert (task["materialization_id"], task["delta_table"]) == (longest, longest)


def test_the_model_limit_is_the_column_limit() -> None:
    for column in ("materialization_id", "delta_table"):
        kind = Task.__table__.columns[column].type
        assert isinstance(kind, String)
        assert kind.length == MAX_OUTPUT_KEY_LENGTH


def test_output_timestamps_keep_nanoseconds_end_to_end(api: Api, running: Attempt) -> None:
    """arco-contract 2.4 (issue 15 finding 12): a worker's ``publishedAt`` with 9 digits is
    stored in the output document and read back with them. The ``publishedAt`` column is a
    timestamp (microseconds on PostgreSQL, as upstream's), so the run view's field has 6."""
    published = "2026-03-04T05:06:07.123456789Z"
    output = {"publishedAt": published, "outputVisibilityState": "VISIBLE"}
    assert api.completed(running, extra={"output": output}).status_code == 200
    task = api.task(running.run_id, running.task_key)
    assert task["output"]["publishedAt"] == published
    summary = api.summary(running.run_id, running.task_key)
    assert summary["publishedAt"] == "2026-03-04T05:06:07.123456Z"
