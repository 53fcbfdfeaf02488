"""Property tests (hypothesis, derandomized): ``ct1_`` ids, envelope round trips, tokens and
timestamps."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arco_envelope import (
    InvalidCallbackTaskId,
    WorkerDispatchEnvelope,
    callback_task_id,
    format_timestamp,
    parse_callback_task_id,
    parse_timestamp,
)
from arco_envelope.tokens import TaskTokenConfig, mint_task_token, verify_task_token
from arco_envelope.wire import U32_MAX, U64_MAX

PROPERTY = settings(
    derandomize=True,
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Any text without NUL (surrogates excluded: they cannot be UTF-8 encoded).
nul_free_text = st.text(st.characters(exclude_characters="\x00"), min_size=1)
# Any character at all, lone surrogates included: a mutation may insert anything.
any_character = st.characters(exclude_categories=())

# Python datetimes hold years 1..9999; keep a day of margin so any offset stays in range, and
# stay at or above year 1000 (four-digit years are covered by test_timestamps).
aware_datetimes = st.datetimes(
    min_value=datetime(1000, 1, 2),  # naive bounds, as hypothesis requires
    max_value=datetime(9999, 12, 30),
    timezones=st.builds(
        timezone, st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timedelta(minutes=m))
    ),
)

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=U64_MAX)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)


# ---------------------------------------------------------------------------------------------
# ct1_ callback task ids


@PROPERTY
@given(run_id=nul_free_text, task_key=nul_free_text)
def test_callback_task_id_round_trips(run_id: str, task_key: str) -> None:
    task_id = callback_task_id(run_id, task_key)
    assert task_id.startswith("ct1_")
    assert parse_callback_task_id(task_id) == (run_id, task_key)


@st.composite
def mutated_ids(draw: st.DrawFn) -> tuple[str, str, str]:
    """A valid id for (run_id, task_key) with one character of its body replaced, deleted or
    inserted."""
    run_id = draw(nul_free_text)
    task_key = draw(nul_free_text)
    body = callback_task_id(run_id, task_key).removeprefix("ct1_")
    kind = draw(st.sampled_from(["replace", "delete", "insert"]))
    if kind == "insert":
        index = draw(st.integers(0, len(body)))
        body = body[:index] + draw(any_character) + body[index:]
    else:
        index = draw(st.integers(0, len(body) - 1))
        if kind == "delete":
            body = body[:index] + body[index + 1 :]
        else:
            original = body[index]
            replacement = draw(any_character.filter(lambda c: c != original))
            body = body[:index] + replacement + body[index + 1 :]
    return run_id, task_key, "ct1_" + body


@PROPERTY
@given(case=mutated_ids())
def test_single_character_mutation_is_rejected_or_decodes_differently(
    case: tuple[str, str, str],
) -> None:
    run_id, task_key, mutated = case
    try:
        decoded = parse_callback_task_id(mutated)
    except InvalidCallbackTaskId:
        return
    assert decoded != (run_id, task_key)


@PROPERTY
@given(text=st.text())
def test_parse_raises_only_invalid_callback_task_id(text: str) -> None:
    for candidate in (text, "ct1_" + text):
        try:
            run_id, task_key = parse_callback_task_id(candidate)
        except InvalidCallbackTaskId:
            continue
        assert callback_task_id(run_id, task_key) == candidate


# ---------------------------------------------------------------------------------------------
# Envelope round trip


@st.composite
def envelopes(draw: st.DrawFn) -> WorkerDispatchEnvelope:
    optional_text = st.none() | st.text()
    return WorkerDispatchEnvelope(
        tenant_id=draw(st.text()),
        workspace_id=draw(st.text()),
        task_id=draw(st.none() | st.text()),
        task_key=draw(st.text()),
        run_id=draw(st.text()),
        attempt=draw(st.integers(0, U32_MAX)),
        attempt_id=draw(st.text()),
        dispatch_id=draw(st.text()),
        execution_location_id=draw(optional_text),
        partition_key=draw(optional_text),
        heartbeat_timeout_sec=draw(st.none() | st.integers(0, U32_MAX)),
        worker_queue=draw(st.text()),
        callback_base_url=draw(st.text()),
        task_token=draw(st.text()),
        token_expires_at=draw(aware_datetimes),
        traceparent=draw(optional_text),
        payload=draw(json_values),
    )


@PROPERTY
@given(envelope=envelopes())
def test_envelope_json_round_trip(envelope: WorkerDispatchEnvelope) -> None:
    written = envelope.to_json()
    again = WorkerDispatchEnvelope.from_json(written)
    assert again == envelope
    assert again.to_json() == written
    assert WorkerDispatchEnvelope.from_json(written.encode()) == envelope
    keys = WorkerDispatchEnvelope.from_json(written).to_dict().keys()
    assert "payload" in keys
    assert all("_" not in key for key in keys)


# ---------------------------------------------------------------------------------------------
# Tokens


non_blank_text = st.text(min_size=1).filter(lambda s: s.strip() != "")


@st.composite
def token_cases(draw: st.DrawFn) -> tuple[TaskTokenConfig, dict[str, Any], datetime]:
    config = TaskTokenConfig(
        secret=draw(non_blank_text),
        issuer=draw(st.none() | non_blank_text),
        audience=draw(st.none() | non_blank_text),
        ttl_seconds=draw(st.integers(1, 86400)),
    )
    claims: dict[str, Any] = {
        "task_id": draw(st.text()),
        "tenant_id": draw(st.text()),
        "workspace_id": draw(st.text()),
        "run_id": draw(st.none() | st.text()),
        "attempt": draw(st.none() | st.integers(0, U64_MAX)),
        "attempt_id": draw(st.none() | st.text()),
    }
    now = draw(
        st.datetimes(
            min_value=datetime(1970, 1, 2),
            max_value=datetime(9999, 12, 30),
            timezones=st.just(UTC),
        )
    )
    return config, claims, now


@PROPERTY
@given(case=token_cases())
def test_minted_tokens_verify_to_the_same_claims(
    case: tuple[TaskTokenConfig, dict[str, Any], datetime],
) -> None:
    config, claims, now = case
    token, expires_at = mint_task_token(config, now=now, **claims)
    decoded = verify_task_token(config, token, now=now)
    issued = math.floor(now.timestamp())
    assert decoded.task_id == claims["task_id"]
    assert decoded.tenant_id == claims["tenant_id"]
    assert decoded.workspace_id == claims["workspace_id"]
    assert decoded.run_id == claims["run_id"]
    assert decoded.attempt == claims["attempt"]
    assert decoded.attempt_id == claims["attempt_id"]
    assert decoded.exp == issued + config.ttl_seconds
    assert decoded.nbf == decoded.iat == issued
    assert decoded.iss == config.issuer
    assert decoded.aud == config.audience
    assert expires_at == now + timedelta(seconds=config.ttl_seconds)
    assert "=" not in token
    assert token.count(".") == 2


# ---------------------------------------------------------------------------------------------
# Timestamps


@PROPERTY
@given(value=aware_datetimes)
def test_timestamp_round_trip(value: datetime) -> None:
    text = format_timestamp(value)
    assert text.endswith("Z")
    parsed = parse_timestamp(text)
    assert parsed == value
    assert parsed.tzinfo is UTC
    fraction = text[len("2026-01-01T00:00:00") : -1]
    assert fraction in ("",) or len(fraction) in (4, 7)
