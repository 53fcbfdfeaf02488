"""Identifiers of the wire contract: ``ct1_`` callback task ids, dispatch ids, attempt ids and
Cloud Tasks names (arco-contract sections 1.1 to 1.4, upstream tests 8.1 and 8.12)."""

from __future__ import annotations

import base64

import pytest

from arco_envelope import (
    InvalidCallbackTaskId,
    attempt_id,
    callback_task_id,
    cloud_task_name,
    dispatch_id,
    parse_callback_task_id,
)

MISSING_PREFIX = "callback task id must start with ct1_"
INVALID_BASE64 = "callback task id payload is not valid base64: "
INVALID_PAYLOAD = "callback task id payload must encode run_id and task_key"
INVALID_UTF8 = "callback task id payload is not valid UTF-8"

# Section 1.1 test vectors: (run_id, task_key, taskId).
CT1_VECTORS = [
    ("run-123", "analytics.daily_sales", "ct1_cnVuLTEyMwBhbmFseXRpY3MuZGFpbHlfc2FsZXM"),
    ("run-1", "extract", "ct1_cnVuLTEAZXh0cmFjdA"),
    ("run-2", "extract", "ct1_cnVuLTIAZXh0cmFjdA"),
    ("r", "k", "ct1_cgBr"),
]


def _ct1(payload: bytes) -> str:
    """An id built from raw payload bytes, canonically encoded (the bytes are what is wrong)."""
    return "ct1_" + base64.urlsafe_b64encode(payload).rstrip(b"=").decode()


# ---------------------------------------------------------------------------------------------
# Upstream tests (section 8.1 and 8.12)


def test_callback_task_id_roundtrips_run_and_task_key() -> None:
    """Upstream: contract_roundtrip.rs::callback_task_id_roundtrips_run_and_task_key."""
    task_id = callback_task_id("run-123", "analytics.daily_sales")
    assert task_id == "ct1_cnVuLTEyMwBhbmFseXRpY3MuZGFpbHlfc2FsZXM"
    assert parse_callback_task_id(task_id) == ("run-123", "analytics.daily_sales")


def test_callback_task_id_rejects_legacy_task_key() -> None:
    """Upstream: contract_roundtrip.rs::callback_task_id_rejects_legacy_task_key."""
    with pytest.raises(InvalidCallbackTaskId) as excinfo:
        parse_callback_task_id("analytics.daily_sales")
    assert "ct1_" in str(excinfo.value)
    assert str(excinfo.value) == MISSING_PREFIX


def test_deterministic_attempt_id_matches_existing_contract() -> None:
    """Upstream: contract_roundtrip.rs::deterministic_attempt_id_matches_existing_contract."""
    first = attempt_id("dispatch:run-123:analytics.daily_sales:1")
    second = attempt_id("dispatch:run-123:analytics.daily_sales:1")
    assert first == second
    assert first.startswith("att_")
    assert first == "att_d73e81338503cf766c5a9d17"


def test_deterministic_attempt_id_is_stable() -> None:
    """Upstream: orchestration/ids.rs::test_deterministic_attempt_id_is_stable."""
    dispatch = dispatch_id("run1", "extract", 1)
    assert attempt_id(dispatch) == attempt_id(dispatch) == "att_af5c419a69061299a227e6a9"


def test_deterministic_attempt_id_differs_for_different_dispatches() -> None:
    """Upstream: orchestration/ids.rs::
    test_deterministic_attempt_id_differs_for_different_dispatches."""
    first = attempt_id(dispatch_id("run-123", "analytics.daily_sales", 1))
    second = attempt_id(dispatch_id("run-123", "analytics.daily_sales", 2))
    other_run = attempt_id(dispatch_id("run-124", "analytics.daily_sales", 1))
    assert len({first, second, other_run}) == 3


def test_cloud_task_id_format() -> None:
    """Upstream: orchestration/ids.rs::test_cloud_task_id_format."""
    name = cloud_task_name("dispatch:run-123:analytics.daily_sales:1")
    assert name.startswith("d_")
    assert len(name) == 28
    assert len(name.removeprefix("d_")) == 26
    assert set(name.removeprefix("d_")) <= set("abcdefghijklmnopqrstuvwxyz234567")


# ---------------------------------------------------------------------------------------------
# Section 1.1: encoding vectors


@pytest.mark.parametrize(("run_id", "task_key", "expected"), CT1_VECTORS)
def test_callback_task_id_encodes_spec_vectors(run_id: str, task_key: str, expected: str) -> None:
    assert callback_task_id(run_id, task_key) == expected


@pytest.mark.parametrize(("run_id", "task_key", "task_id"), CT1_VECTORS)
def test_parse_callback_task_id_decodes_spec_vectors(
    run_id: str, task_key: str, task_id: str
) -> None:
    assert parse_callback_task_id(task_id) == (run_id, task_key)


def test_callback_task_id_uses_the_url_safe_alphabet_without_padding() -> None:
    # Standard base64 of this payload is "cnVuPj4+AGtleT8/Pw==": "+", "/" and padding.
    task_id = callback_task_id("run>>>", "key???")
    assert task_id == "ct1_cnVuPj4-AGtleT8_Pw"
    assert parse_callback_task_id(task_id) == ("run>>>", "key???")


def test_callback_task_id_encodes_utf8() -> None:
    task_id = callback_task_id("r\u00e9", "\u65e5\u672c")
    assert task_id == "ct1_csOpAOaXpeacrA"
    assert parse_callback_task_id(task_id) == ("r\u00e9", "\u65e5\u672c")
    assert parse_callback_task_id("ct1_378A77-_") == ("\u07ff", "\uffff")


# ---------------------------------------------------------------------------------------------
# Section 1.1: negative vectors, with upstream's messages


@pytest.mark.parametrize(
    "task_id",
    [
        "analytics.daily_sales",
        "",
        "ct1",
        "CT1_cnVuLTEAZXh0cmFjdA",
        "Ct1_cnVuLTEAZXh0cmFjdA",
        "ct2_cnVuLTEAZXh0cmFjdA",
        "cnVuLTEAZXh0cmFjdA",
        " ct1_cnVuLTEAZXh0cmFjdA",
    ],
)
def test_parse_rejects_missing_prefix(task_id: str) -> None:
    with pytest.raises(InvalidCallbackTaskId) as excinfo:
        parse_callback_task_id(task_id)
    assert str(excinfo.value) == MISSING_PREFIX


@pytest.mark.parametrize(
    "task_id",
    [
        pytest.param("ct1_cnVuLTEAZXh0cmFjdB", id="non-zero-trailing-bits"),
        pytest.param("ct1_cgB", id="non-zero-trailing-bits-short"),
        pytest.param("ct1_cnVuLTEAZXh0cmFjdA==", id="padded"),
        pytest.param("ct1_cnVuLTEAZXh0cmFjdA=", id="single-pad"),
        pytest.param("ct1_cgBr=", id="pad-on-full-quad"),
        pytest.param("ct1_cnVu+TEAZXh0cmFjdA", id="plus"),
        pytest.param("ct1_cnVu/TEAZXh0cmFjdA", id="slash"),
        pytest.param("ct1_+/8A", id="standard-alphabet-only"),
        pytest.param("ct1_cnVuLTEA ZXh0cmFjdA", id="space"),
        pytest.param("ct1_cnVuLTEAZXh0cmFjdA\n", id="trailing-newline"),
        pytest.param("ct1_cnVuLTEA\nZXh0cmFjdA", id="inner-newline"),
        pytest.param("ct1_cnVuLTEAZXh0cmFjd\u00e9", id="non-ascii"),
        pytest.param("ct1_cnVuL", id="length-mod-4-is-1"),
        pytest.param("ct1_c", id="length-1"),
        pytest.param("ct1_cgBrc", id="length-5"),
    ],
)
def test_parse_rejects_invalid_base64(task_id: str) -> None:
    with pytest.raises(InvalidCallbackTaskId) as excinfo:
        parse_callback_task_id(task_id)
    assert str(excinfo.value).startswith(INVALID_BASE64)


@pytest.mark.parametrize(
    "task_id",
    [
        pytest.param("ct1_", id="empty-remainder"),
        pytest.param(_ct1(b"run-1extract"), id="no-nul"),
        pytest.param(_ct1(b"run-1\x00extract\x00x"), id="two-nuls"),
        pytest.param(_ct1(b"run-1\x00\x00extract"), id="two-adjacent-nuls"),
        pytest.param(_ct1(b"\x00extract"), id="empty-run"),
        pytest.param(_ct1(b"run-1\x00"), id="empty-key"),
        pytest.param(_ct1(b"\x00"), id="both-empty"),
        pytest.param(callback_task_id("", "extract"), id="encoder-empty-run"),
        pytest.param(callback_task_id("run-1", ""), id="encoder-empty-key"),
        pytest.param(callback_task_id("run\x001", "extract"), id="encoder-nul-in-run"),
    ],
)
def test_parse_rejects_invalid_payload(task_id: str) -> None:
    with pytest.raises(InvalidCallbackTaskId) as excinfo:
        parse_callback_task_id(task_id)
    assert str(excinfo.value) == INVALID_PAYLOAD


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"\xff\x00extract", id="run-part"),
        pytest.param(b"run-1\x00\xc3\x28", id="task-part"),
        pytest.param(b"run-1\x00\xed\xa0\x80", id="surrogate-in-task-part"),
        # UTF-8 is checked before emptiness: an invalid run part with an empty key is InvalidUtf8.
        pytest.param(b"\xff\x00", id="utf8-before-empty-check"),
    ],
)
def test_parse_rejects_invalid_utf8(payload: bytes) -> None:
    with pytest.raises(InvalidCallbackTaskId) as excinfo:
        parse_callback_task_id(_ct1(payload))
    assert str(excinfo.value).startswith(INVALID_UTF8)


def test_parse_checks_nul_count_before_utf8() -> None:
    with pytest.raises(InvalidCallbackTaskId) as excinfo:
        parse_callback_task_id(_ct1(b"\xff\x00a\x00b"))
    assert str(excinfo.value) == INVALID_PAYLOAD


def test_parse_checks_base64_before_payload() -> None:
    # Padded *and* without a NUL: the base64 failure wins.
    with pytest.raises(InvalidCallbackTaskId) as excinfo:
        parse_callback_task_id("ct1_YWJj=")
    assert str(excinfo.value).startswith(INVALID_BASE64)


def test_invalid_callback_task_id_is_a_value_error() -> None:
    assert issubclass(InvalidCallbackTaskId, ValueError)


# ---------------------------------------------------------------------------------------------
# Sections 1.2 to 1.4


def test_dispatch_id_format() -> None:
    assert (
        dispatch_id("run-123", "analytics.daily_sales", 1)
        == "dispatch:run-123:analytics.daily_sales:1"
    )
    assert dispatch_id("run1", "extract", 12) == "dispatch:run1:extract:12"


@pytest.mark.parametrize(
    ("dispatch", "expected"),
    [
        ("dispatch:run-123:analytics.daily_sales:1", "att_d73e81338503cf766c5a9d17"),
        ("dispatch:run-123:analytics.daily_sales:2", "att_2525d2dcba4aff1402c32ba6"),
        ("dispatch:run1:extract:1", "att_af5c419a69061299a227e6a9"),
    ],
)
def test_attempt_id_vectors(dispatch: str, expected: str) -> None:
    assert attempt_id(dispatch) == expected


def test_attempt_id_shape() -> None:
    value = attempt_id("dispatch:run-123:analytics.daily_sales:1")
    digits = value.removeprefix("att_")
    assert len(digits) == 24
    assert digits == digits.lower()
    int(digits, 16)


def test_cloud_task_name_vector() -> None:
    assert (
        cloud_task_name("dispatch:run-123:analytics.daily_sales:1")
        == "d_qdd6g2ky62mspicbvotk3h6sws"
    )


def test_cloud_task_name_of_a_repair_dispatch_differs() -> None:
    original = "dispatch:run-123:analytics.daily_sales:1"
    repair = f"{original}:repair:3:01HQ0000000000000000000000"
    assert cloud_task_name(repair) != cloud_task_name(original)
    assert len(cloud_task_name(repair)) == 28
