"""Per-attempt task tokens (arco-contract section 6, design decision D8; upstream tests 8.7 #4,
8.8 and the token parts of 8.12).

Attack tokens are forged with PyJWT, an implementation independent of the package, or, where
PyJWT refuses to produce them (non-string ``iss``, non-object claims), by signing raw bytes with
``hmac``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import warnings
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jwt
import pytest

from arco_envelope import format_timestamp
from arco_envelope.tokens import (
    DEFAULT_DISPATCH_TASK_TIMEOUT_SECONDS,
    DEFAULT_TASK_TOKEN_TTL_SECONDS,
    MAX_TASK_TOKEN_TTL_SECONDS,
    TASK_TOKEN_CALLBACK_GRACE_SECONDS,
    InvalidTaskToken,
    TaskTokenClaims,
    TaskTokenConfig,
    TaskTokenConfigError,
    TaskTokenVerifier,
    mint_task_token,
    validate_for_dispatch,
    verify_task_token,
)

SECRET = "task-secret"
ISSUER = "https://issuer.task"
AUDIENCE = "arco-worker-callback"
NOW_TS = 1_767_225_600  # 2026-01-01T00:00:00Z
NOW = datetime(2026, 1, 1, tzinfo=UTC)
CT1_TASK_ID = "ct1_cnVuLTEyMwBhbmFseXRpY3MuZGFpbHlfc2FsZXM"
LONG_SECRET = "a-secret-that-is-longer-than-thirty-two-bytes"

CONFIG = TaskTokenConfig(secret=SECRET, issuer=ISSUER, audience=AUDIENCE, ttl_seconds=3600)
PLAIN_CONFIG = TaskTokenConfig(secret=SECRET)

# Section 6.2: the minted example.
SPEC_CLAIMS_JSON = (
    '{"taskId":"ct1_cnVuLTEyMwBhbmFseXRpY3MuZGFpbHlfc2FsZXM","tenantId":"tenant-a",'
    '"workspaceId":"workspace-b","runId":"run-123","attempt":1,'
    '"attemptId":"att_d73e81338503cf766c5a9d17","exp":1767229200,"nbf":1767225600,'
    '"iat":1767225600,"iss":"https://issuer.task","aud":"arco-worker-callback"}'
)
SPEC_TOKEN = (
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9."
    "eyJ0YXNrSWQiOiJjdDFfY25WdUxURXlNd0JoYm1Gc2VYUnBZM011WkdGcGJIbGZjMkZzWlhNIiwidGVuYW50SWQiOiJ0"
    "ZW5hbnQtYSIsIndvcmtzcGFjZUlkIjoid29ya3NwYWNlLWIiLCJydW5JZCI6InJ1bi0xMjMiLCJhdHRlbXB0IjoxLCJh"
    "dHRlbXB0SWQiOiJhdHRfZDczZTgxMzM4NTAzY2Y3NjZjNWE5ZDE3IiwiZXhwIjoxNzY3MjI5MjAwLCJuYmYiOjE3Njcy"
    "MjU2MDAsImlhdCI6MTc2NzIyNTYwMCwiaXNzIjoiaHR0cHM6Ly9pc3N1ZXIudGFzayIsImF1ZCI6ImFyY28td29ya2Vy"
    "LWNhbGxiYWNrIn0."
    "dylbieeM_JjC5PKJr9dYm9vyAQ-SwnOX8f_ElWsZaU4"
)

# Claims of a valid unscoped token for CONFIG at NOW.
VALID: dict[str, Any] = {
    "taskId": CT1_TASK_ID,
    "tenantId": "tenant-a",
    "workspaceId": "workspace-b",
    "exp": NOW_TS + 900,
    "iss": ISSUER,
    "aud": AUDIENCE,
}


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _pyjwt(
    claims: dict[str, Any],
    key: str = SECRET,
    algorithm: str = "HS256",
    headers: dict[str, Any] | None = None,
) -> str:
    """A token encoded by PyJWT (short HMAC keys warn; the warning is irrelevant here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _raw(header: Any, claims: Any, key: str = SECRET) -> str:
    """A compact JWS over arbitrary JSON values (or raw bytes), HMAC-SHA256 signed."""

    def segment(value: Any) -> str:
        return _b64(value if isinstance(value, bytes) else json.dumps(value).encode())

    signing_input = f"{segment(header)}.{segment(claims)}"
    signature = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _reason(config: TaskTokenConfig, token: str, now: datetime = NOW) -> str:
    with pytest.raises(InvalidTaskToken) as excinfo:
        verify_task_token(config, token, now=now)
    return excinfo.value.reason


def _mint(config: TaskTokenConfig, now: datetime = NOW, **scope: Any) -> tuple[str, datetime]:
    return mint_task_token(
        config,
        task_id=CT1_TASK_ID,
        tenant_id="tenant-a",
        workspace_id="workspace-b",
        now=now,
        **scope,
    )


# ---------------------------------------------------------------------------------------------
# Upstream: unit tests in crates/arco-core/src/task_tokens.rs (8.8)


def test_mint_and_decode_task_token_round_trip() -> None:
    """Upstream: task_tokens.rs::mint_and_decode_task_token_round_trip."""
    token, expires_at = _mint(CONFIG)
    claims = verify_task_token(CONFIG, token, now=NOW)
    assert claims.task_id == CT1_TASK_ID
    assert claims.tenant_id == "tenant-a"
    assert claims.workspace_id == "workspace-b"
    assert expires_at > NOW


def test_mint_and_decode_scoped_task_token_round_trip() -> None:
    """Upstream: task_tokens.rs::mint_and_decode_scoped_task_token_round_trip."""
    token, _ = _mint(CONFIG, run_id="run-1", attempt=2, attempt_id="attempt-2")
    claims = verify_task_token(CONFIG, token, now=NOW)
    assert claims.run_id == "run-1"
    assert claims.attempt == 2
    assert claims.attempt_id == "attempt-2"
    assert claims.is_scoped


def test_legacy_task_token_decodes_without_scope_claims() -> None:
    """Upstream: task_tokens.rs::legacy_task_token_decodes_without_scope_claims."""
    token, _ = _mint(CONFIG)
    claims = verify_task_token(CONFIG, token, now=NOW)
    assert claims.run_id is None
    assert claims.attempt is None
    assert claims.attempt_id is None
    assert not claims.is_scoped


def test_validate_rejects_empty_secret() -> None:
    """Upstream: task_tokens.rs::validate_rejects_empty_secret."""
    default = TaskTokenConfig.from_config_block({})
    assert default.secret == ""
    assert default.ttl_seconds == DEFAULT_TASK_TOKEN_TTL_SECONDS
    with pytest.raises(TaskTokenConfigError, match=r"task_token\.hs256_secret is required"):
        default.validate()


def test_validate_for_dispatch_rejects_short_ttl_for_timeout_budget() -> None:
    """Upstream: task_tokens.rs::validate_for_dispatch_rejects_short_ttl_for_timeout_budget."""
    config = TaskTokenConfig(secret=SECRET, issuer=ISSUER, audience=AUDIENCE, ttl_seconds=900)
    with pytest.raises(TaskTokenConfigError) as excinfo:
        validate_for_dispatch(config, 1800)
    assert "2100" in str(excinfo.value)
    assert len(excinfo.value.problems) == 1


def test_validate_for_dispatch_requires_issuer_and_audience_when_strict() -> None:
    """Upstream: task_tokens.rs::validate_for_dispatch_requires_issuer_and_audience_when_strict."""
    config = TaskTokenConfig(secret=SECRET, audience=AUDIENCE)
    with pytest.raises(TaskTokenConfigError, match=r"task_token\.issuer"):
        validate_for_dispatch(config, DEFAULT_DISPATCH_TASK_TIMEOUT_SECONDS)


def test_validate_for_dispatch_accepts_valid_budget_and_claim_contract() -> None:
    """Upstream: task_tokens.rs::validate_for_dispatch_accepts_valid_budget_and_claim_contract."""
    validate_for_dispatch(CONFIG, 1800)
    assert CONFIG.ttl_seconds == 3600


# ---------------------------------------------------------------------------------------------
# Upstream: dispatcher unit tests (8.12) and API config test (8.7 #4)


def test_task_token_config_from_parts_rejects_missing_issuer() -> None:
    """Upstream: arco_flow_dispatcher.rs::task_token_config_from_parts_rejects_missing_issuer."""
    for issuer in (None, "", "   "):
        config = TaskTokenConfig(secret=SECRET, issuer=issuer, audience=AUDIENCE)
        with pytest.raises(TaskTokenConfigError, match=r"task_token\.issuer"):
            validate_for_dispatch(config, 1800)


def test_task_token_config_from_parts_rejects_missing_audience() -> None:
    """Upstream: arco_flow_dispatcher.rs::task_token_config_from_parts_rejects_missing_audience."""
    for audience in (None, "", "\t"):
        config = TaskTokenConfig(secret=SECRET, issuer=ISSUER, audience=audience)
        with pytest.raises(TaskTokenConfigError, match=r"task_token\.audience"):
            validate_for_dispatch(config, 1800)


def test_validate_task_timeout_seconds_rejects_zero() -> None:
    """Upstream: arco_flow_dispatcher.rs::validate_task_timeout_seconds_rejects_zero."""
    with pytest.raises(TaskTokenConfigError, match="task timeout must be greater than 0"):
        validate_for_dispatch(CONFIG, 0)


def test_config_deserializes_task_token_block() -> None:
    """Upstream: task_token_contract_tests.rs::config_deserializes_task_token_block."""
    config = TaskTokenConfig.from_config_block(
        {"hs256Secret": SECRET, "issuer": ISSUER, "audience": AUDIENCE, "ttlSeconds": 1200}
    )
    assert config.secret == SECRET
    assert config.issuer == ISSUER
    assert config.audience == AUDIENCE
    assert config.ttl_seconds == 1200
    snake = TaskTokenConfig.from_config_block({"hs256_secret": SECRET, "ttl_seconds": 1200})
    assert snake.secret == ""
    assert snake.ttl_seconds == DEFAULT_TASK_TOKEN_TTL_SECONDS


# ---------------------------------------------------------------------------------------------
# Section 6.2: the minted example, byte for byte


def test_mint_reproduces_the_spec_example_token() -> None:
    token, expires_at = _mint(
        CONFIG, run_id="run-123", attempt=1, attempt_id="att_d73e81338503cf766c5a9d17"
    )
    assert token == SPEC_TOKEN
    assert expires_at == datetime(2026, 1, 1, 1, 0, tzinfo=UTC)


def test_spec_example_token_segments() -> None:
    header, claims, _ = SPEC_TOKEN.split(".")
    assert base64.urlsafe_b64decode(header + "==") == b'{"typ":"JWT","alg":"HS256"}'
    assert base64.urlsafe_b64decode(claims + "==").decode() == SPEC_CLAIMS_JSON
    assert "=" not in SPEC_TOKEN


def test_spec_example_token_verifies_at_its_own_now() -> None:
    claims = verify_task_token(CONFIG, SPEC_TOKEN, now=NOW)
    assert claims == TaskTokenClaims(
        task_id=CT1_TASK_ID,
        tenant_id="tenant-a",
        workspace_id="workspace-b",
        run_id="run-123",
        attempt=1,
        attempt_id="att_d73e81338503cf766c5a9d17",
        exp=1_767_229_200,
        nbf=NOW_TS,
        iat=NOW_TS,
        iss=ISSUER,
        aud=AUDIENCE,
    )


def test_spec_example_token_verifies_with_pyjwt() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        decoded = jwt.decode(
            SPEC_TOKEN,
            SECRET,
            algorithms=["HS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
    assert decoded == json.loads(SPEC_CLAIMS_JSON)


def test_unscoped_mint_omits_scope_and_unset_iss_aud() -> None:
    token, _ = _mint(PLAIN_CONFIG)
    payload = token.split(".")[1]
    assert json.loads(base64.urlsafe_b64decode(payload + "==")) == {
        "taskId": CT1_TASK_ID,
        "tenantId": "tenant-a",
        "workspaceId": "workspace-b",
        "exp": NOW_TS + 3600,
        "nbf": NOW_TS,
        "iat": NOW_TS,
    }


def test_blank_issuer_and_audience_are_not_minted() -> None:
    token, _ = _mint(TaskTokenConfig(secret=SECRET, issuer="  ", audience=""))
    claims = verify_task_token(PLAIN_CONFIG, token, now=NOW)
    assert claims.iss is None
    assert claims.aud is None


# ---------------------------------------------------------------------------------------------
# Section 6.3: minting


def test_expires_at_is_now_plus_ttl_at_full_precision_and_exp_is_its_floor() -> None:
    now = datetime(2026, 1, 1, 0, 0, 0, 987654, tzinfo=UTC)
    token, expires_at = _mint(CONFIG, now=now)
    assert expires_at == now + timedelta(seconds=3600)
    assert expires_at.microsecond == 987654
    claims = verify_task_token(CONFIG, token, now=now)
    assert claims.exp == NOW_TS + 3600
    assert claims.nbf == claims.iat == NOW_TS


def test_expires_at_is_written_with_microseconds_in_an_envelope() -> None:
    _, expires_at = _mint(CONFIG, now=datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC))
    assert format_timestamp(expires_at) == "2026-01-01T01:00:00.123456Z"


def test_mint_with_naive_now_raises() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        _mint(CONFIG, now=datetime(2026, 1, 1))  # naive on purpose


def test_verify_with_naive_now_raises() -> None:
    token, _ = _mint(CONFIG)
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_task_token(CONFIG, token, now=datetime(2026, 1, 1))  # naive on purpose


def test_mint_validates_the_config_first() -> None:
    with pytest.raises(TaskTokenConfigError, match="hs256_secret"):
        _mint(TaskTokenConfig(secret="   "))
    with pytest.raises(TaskTokenConfigError, match="at most 86400"):
        _mint(TaskTokenConfig(secret=SECRET, ttl_seconds=86401))


def test_mint_with_an_offset_now_uses_the_same_instant() -> None:
    plus_two = datetime(2026, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    token_offset, expires_offset = _mint(CONFIG, now=plus_two)
    token_utc, expires_utc = _mint(CONFIG, now=NOW)
    assert token_offset == token_utc
    assert expires_offset == expires_utc


# ---------------------------------------------------------------------------------------------
# Section 6.4 A: algorithm and signature


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(_pyjwt(VALID, key="", algorithm="none"), id="none"),
        pytest.param(_pyjwt(VALID, algorithm="HS384"), id="HS384"),
        pytest.param(_pyjwt(VALID, algorithm="HS512"), id="HS512"),
        pytest.param(_raw({"typ": "JWT", "alg": "RS256"}, VALID), id="RS256-header-hmac-sig"),
        pytest.param(_raw({"typ": "JWT", "alg": "none"}, VALID), id="none-with-hmac-sig"),
        pytest.param(_raw({"typ": "JWT", "alg": "hs256"}, VALID), id="lowercase-hs256"),
        pytest.param(_raw({"typ": "JWT"}, VALID), id="no-alg"),
    ],
)
def test_only_hs256_is_accepted(token: str) -> None:
    assert _reason(CONFIG, token) == "InvalidAlgorithm"


def test_algorithm_is_checked_before_the_signature() -> None:
    assert _reason(CONFIG, _pyjwt(VALID, key="other-secret", algorithm="HS512")) == (
        "InvalidAlgorithm"
    )


def test_wrong_secret_is_invalid_signature() -> None:
    assert _reason(CONFIG, _pyjwt(VALID, key="not-the-task-secret")) == "InvalidSignature"


def test_unsigned_hs256_token_is_invalid_signature() -> None:
    header, claims, _ = _pyjwt(VALID).split(".")
    assert _reason(CONFIG, f"{header}.{claims}.") == "InvalidSignature"


def test_tampered_claims_are_invalid_signature() -> None:
    header, _, signature = _pyjwt(VALID).split(".")
    forged = _b64(json.dumps(VALID | {"tenantId": "tenant-z"}).encode())
    assert _reason(CONFIG, f"{header}.{forged}.{signature}") == "InvalidSignature"


def test_signature_is_checked_before_the_claims() -> None:
    broken = {k: v for k, v in VALID.items() if k != "exp"}
    assert _reason(CONFIG, _pyjwt(broken, key="other-secret")) == "InvalidSignature"


def test_signature_with_non_canonical_trailing_bits_is_rejected() -> None:
    """JWS segments are strict unpadded base64url: upstream decodes them with the base64
    crate's URL_SAFE_NO_PAD engine, which rejects non-zero trailing bits. The spec token's
    signature ends in "4"; "5", "6" and "7" differ from it only in the 2 unused low bits, so a
    lenient decoder yields the same 32 bytes. Those altered token strings must not verify."""
    assert SPEC_TOKEN.endswith("4")
    outcomes = {}
    for replacement in "567":
        mutated = SPEC_TOKEN[:-1] + replacement
        try:
            verify_task_token(CONFIG, mutated, now=NOW)
        except InvalidTaskToken as exc:
            outcomes[replacement] = exc.reason
        else:
            outcomes[replacement] = "accepted"
    assert outcomes == dict.fromkeys("567", "InvalidSignature")


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param("abc", id="one-segment"),
        pytest.param("a.b", id="two-segments"),
        pytest.param(SPEC_TOKEN + ".x", id="four-segments"),
        pytest.param("!!!." + SPEC_TOKEN.split(".", 1)[1], id="header-not-base64url"),
        pytest.param(_b64(b"not json") + "." + SPEC_TOKEN.split(".", 1)[1], id="header-not-json"),
    ],
)
def test_malformed_tokens_are_invalid_token(token: str) -> None:
    assert _reason(CONFIG, token) == "InvalidToken"


def test_padded_segments_are_rejected() -> None:
    header, claims, signature = SPEC_TOKEN.split(".")
    with pytest.raises(InvalidTaskToken):
        verify_task_token(CONFIG, f"{header}.{claims}.{signature}=", now=NOW)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param({"alg": "HS256"}, id="no-typ"),
        pytest.param({"alg": "HS256", "typ": "at+jwt"}, id="other-typ"),
        pytest.param({"alg": "HS256", "kid": "k1"}, id="kid"),
    ],
)
def test_typ_is_not_checked(header: dict[str, Any]) -> None:
    claims = verify_task_token(CONFIG, _raw(header, VALID), now=NOW)
    assert claims.task_id == CT1_TASK_ID


# ---------------------------------------------------------------------------------------------
# Section 6.4 A: claim schema (runs before the temporal checks)


@pytest.mark.parametrize("missing", ["exp", "taskId", "tenantId", "workspaceId"])
def test_missing_required_claim_is_a_json_error(missing: str) -> None:
    claims = {k: v for k, v in VALID.items() if k != missing}
    assert _reason(CONFIG, _pyjwt(claims)) == "Json"


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        pytest.param("aud", [AUDIENCE], id="aud-list"),
        pytest.param("aud", [], id="aud-empty-list"),
        pytest.param("exp", NOW_TS + 900.0, id="exp-float-integral"),
        pytest.param("exp", NOW_TS + 900.5, id="exp-float"),
        pytest.param("exp", -1, id="exp-negative"),
        pytest.param("exp", str(NOW_TS + 900), id="exp-string"),
        pytest.param("exp", None, id="exp-null"),
        pytest.param("nbf", -5, id="nbf-negative"),
        pytest.param("iat", 1.5, id="iat-float"),
        pytest.param("attempt", -1, id="attempt-negative"),
        pytest.param("attempt", 2.0, id="attempt-float"),
        pytest.param("taskId", 5, id="taskId-number"),
        pytest.param("tenantId", None, id="tenantId-null"),
    ],
)
def test_wrongly_typed_claim_is_a_json_error(claim: str, value: Any) -> None:
    assert _reason(CONFIG, _pyjwt(VALID | {claim: value})) == "Json"


@pytest.mark.parametrize("value", [5, ["https://issuer.task"], True])
def test_non_string_iss_is_a_json_error(value: Any) -> None:
    token = _raw({"typ": "JWT", "alg": "HS256"}, VALID | {"iss": value})
    assert _reason(CONFIG, token) == "Json"


@pytest.mark.parametrize("claims", [[], "x", 1, None, b"not json", b"\xff\xfe"])
def test_non_object_claims_are_a_json_error(claims: Any) -> None:
    assert _reason(CONFIG, _raw({"typ": "JWT", "alg": "HS256"}, claims)) == "Json"


def test_claim_schema_is_checked_before_expiry() -> None:
    expired_and_broken = VALID | {"exp": NOW_TS - 3600, "aud": [AUDIENCE]}
    assert _reason(CONFIG, _pyjwt(expired_and_broken)) == "Json"


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"task_id": CT1_TASK_ID}, id="taskId+task_id"),
        pytest.param({"tenant": "tenant-a"}, id="tenantId+tenant"),
        pytest.param({"tenant_id": "tenant-a"}, id="tenantId+tenant_id"),
        pytest.param({"workspace_id": "workspace-b"}, id="workspaceId+workspace_id"),
        pytest.param({"workspace": "workspace-b"}, id="workspaceId+workspace"),
        pytest.param({"runId": "r", "run_id": "r"}, id="runId+run_id"),
        pytest.param({"attemptId": "a", "attempt_id": "a"}, id="attemptId+attempt_id"),
    ],
)
def test_two_spellings_of_one_claim_is_a_json_error(extra: dict[str, Any]) -> None:
    assert _reason(CONFIG, _pyjwt(VALID | extra)) == "Json"


def test_two_aliases_of_one_claim_is_a_json_error() -> None:
    claims = {k: v for k, v in VALID.items() if k != "tenantId"} | {
        "tenant": "tenant-a",
        "tenant_id": "tenant-a",
    }
    assert _reason(CONFIG, _pyjwt(claims)) == "Json"


@pytest.mark.parametrize(
    ("canonical", "alias", "attribute", "value"),
    [
        ("taskId", "task_id", "task_id", CT1_TASK_ID),
        ("tenantId", "tenant", "tenant_id", "tenant-a"),
        ("tenantId", "tenant_id", "tenant_id", "tenant-a"),
        ("workspaceId", "workspace_id", "workspace_id", "workspace-b"),
        ("workspaceId", "workspace", "workspace_id", "workspace-b"),
        ("runId", "run_id", "run_id", "run-123"),
        ("attemptId", "attempt_id", "attempt_id", "att-1"),
    ],
)
def test_claim_aliases_are_accepted(canonical: str, alias: str, attribute: str, value: str) -> None:
    claims = {k: v for k, v in VALID.items() if k != canonical} | {alias: value}
    decoded = verify_task_token(CONFIG, _pyjwt(claims), now=NOW)
    assert getattr(decoded, attribute) == value


def test_all_aliases_at_once() -> None:
    claims = {
        "task_id": CT1_TASK_ID,
        "tenant": "tenant-a",
        "workspace_id": "workspace-b",
        "run_id": "run-123",
        "attempt": 3,
        "attempt_id": "att-3",
        "exp": NOW_TS + 900,
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    decoded = verify_task_token(CONFIG, _pyjwt(claims), now=NOW)
    assert (decoded.task_id, decoded.tenant_id, decoded.workspace_id) == (
        CT1_TASK_ID,
        "tenant-a",
        "workspace-b",
    )
    assert (decoded.run_id, decoded.attempt, decoded.attempt_id) == ("run-123", 3, "att-3")
    assert decoded.is_scoped


def test_extra_claims_are_ignored() -> None:
    claims = VALID | {"sub": "someone", "jti": "j", "scope": "admin", "role": ["x"]}
    assert verify_task_token(CONFIG, _pyjwt(claims), now=NOW).task_id == CT1_TASK_ID


# ---------------------------------------------------------------------------------------------
# Section 6.4 A: temporal checks (60 s leeway, integer seconds, strict comparisons)


def test_expiry_leeway_boundary() -> None:
    token = _pyjwt(VALID)
    exp = VALID["exp"]
    assert verify_task_token(CONFIG, token, now=_at(exp)).exp == exp
    assert verify_task_token(CONFIG, token, now=_at(exp + 60)).exp == exp
    assert _reason(CONFIG, token, now=_at(exp + 61)) == "ExpiredSignature"


def test_expiry_compares_whole_seconds() -> None:
    token = _pyjwt(VALID)
    exp = VALID["exp"]
    assert verify_task_token(CONFIG, token, now=_at(exp + 60.999999)).exp == exp
    assert _reason(CONFIG, token, now=_at(exp + 61.000001)) == "ExpiredSignature"


def test_not_before_leeway_boundary() -> None:
    assert verify_task_token(CONFIG, _pyjwt(VALID | {"nbf": NOW_TS + 60}), now=NOW).nbf == (
        NOW_TS + 60
    )
    assert _reason(CONFIG, _pyjwt(VALID | {"nbf": NOW_TS + 61})) == "ImmatureSignature"


def test_future_iat_is_accepted() -> None:
    claims = verify_task_token(CONFIG, _pyjwt(VALID | {"iat": NOW_TS + 86_400}), now=NOW)
    assert claims.iat == NOW_TS + 86_400


def test_expiry_is_checked_before_issuer_and_audience() -> None:
    claims = VALID | {"exp": NOW_TS - 3600, "iss": "https://evil", "aud": "other"}
    assert _reason(CONFIG, _pyjwt(claims)) == "ExpiredSignature"


def test_minted_token_expires_after_ttl_plus_leeway() -> None:
    token, _ = _mint(CONFIG)
    assert verify_task_token(CONFIG, token, now=_at(NOW_TS + 3600 + 60)).exp == NOW_TS + 3600
    assert _reason(CONFIG, token, now=_at(NOW_TS + 3600 + 61)) == "ExpiredSignature"


def test_minted_token_is_immature_before_now_minus_leeway() -> None:
    token, _ = _mint(CONFIG)
    assert verify_task_token(CONFIG, token, now=_at(NOW_TS - 60)).nbf == NOW_TS
    assert _reason(CONFIG, token, now=_at(NOW_TS - 61)) == "ImmatureSignature"


# ---------------------------------------------------------------------------------------------
# Section 6.4 A: issuer and audience, with the D8 hardening


def test_issuer_mismatch_is_invalid_issuer() -> None:
    assert _reason(CONFIG, _pyjwt(VALID | {"iss": "https://other.issuer"})) == "InvalidIssuer"


def test_issuer_is_checked_before_audience() -> None:
    assert _reason(CONFIG, _pyjwt(VALID | {"iss": "x", "aud": "y"})) == "InvalidIssuer"


def test_audience_mismatch_is_invalid_audience() -> None:
    assert _reason(CONFIG, _pyjwt(VALID | {"aud": "another-audience"})) == "InvalidAudience"


def test_audience_present_without_configured_audience_is_invalid_audience() -> None:
    config = TaskTokenConfig(secret=SECRET, issuer=ISSUER)
    assert _reason(config, _pyjwt(VALID)) == "InvalidAudience"
    assert _reason(PLAIN_CONFIG, _pyjwt(VALID)) == "InvalidAudience"


def test_issuer_present_without_configured_issuer_is_accepted() -> None:
    config = TaskTokenConfig(secret=SECRET, audience=AUDIENCE)
    assert verify_task_token(config, _pyjwt(VALID), now=NOW).iss == ISSUER


def test_token_without_iss_is_rejected_when_an_issuer_is_configured() -> None:
    """D8 hardening: upstream accepts a token without ``iss``; we do not."""
    claims = {k: v for k, v in VALID.items() if k != "iss"}
    with pytest.raises(InvalidTaskToken) as excinfo:
        verify_task_token(CONFIG, _pyjwt(claims), now=NOW)
    assert excinfo.value.reason == "MissingRequiredClaim"
    assert "iss" in str(excinfo.value)


def test_token_without_aud_is_rejected_when_an_audience_is_configured() -> None:
    """D8 hardening: upstream accepts a token without ``aud``; we do not."""
    claims = {k: v for k, v in VALID.items() if k != "aud"}
    with pytest.raises(InvalidTaskToken) as excinfo:
        verify_task_token(CONFIG, _pyjwt(claims), now=NOW)
    assert excinfo.value.reason == "MissingRequiredClaim"
    assert "aud" in str(excinfo.value)


def test_token_without_iss_and_aud_is_accepted_when_neither_is_configured() -> None:
    claims = {k: v for k, v in VALID.items() if k not in ("iss", "aud")}
    assert verify_task_token(PLAIN_CONFIG, _pyjwt(claims), now=NOW).tenant_id == "tenant-a"


def test_unscoped_mint_from_plain_config_fails_strict_verification() -> None:
    token, _ = _mint(PLAIN_CONFIG)
    assert _reason(CONFIG, token) == "MissingRequiredClaim"


# ---------------------------------------------------------------------------------------------
# Error shape


def test_invalid_task_token_message_prefix() -> None:
    with pytest.raises(InvalidTaskToken) as excinfo:
        verify_task_token(CONFIG, _pyjwt(VALID, key="wrong-secret"), now=NOW)
    assert str(excinfo.value).startswith("invalid input: invalid task token: ")
    assert str(excinfo.value) == "invalid input: invalid task token: InvalidSignature"
    assert isinstance(excinfo.value, ValueError)


def test_every_failure_message_has_the_prefix() -> None:
    tokens = [
        "a.b",
        _pyjwt(VALID, algorithm="HS512"),
        _pyjwt({"taskId": "x"}),
        _pyjwt(VALID | {"exp": NOW_TS - 61 - 900}),
        _pyjwt({k: v for k, v in VALID.items() if k != "iss"}),
    ]
    for token in tokens:
        with pytest.raises(InvalidTaskToken) as excinfo:
            verify_task_token(CONFIG, token, now=NOW)
        assert str(excinfo.value).startswith("invalid input: invalid task token: ")


def test_verify_with_invalid_config_rejects() -> None:
    token, _ = _mint(CONFIG)
    broken = TaskTokenConfig(secret="  ", issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(InvalidTaskToken) as excinfo:
        verify_task_token(broken, token, now=NOW)
    assert "hs256_secret" in str(excinfo.value)


# ---------------------------------------------------------------------------------------------
# D8: secret trimming and rotation


def test_secrets_are_trimmed_on_mint_and_verify() -> None:
    token, _ = _mint(TaskTokenConfig(secret="  s  ", issuer=ISSUER, audience=AUDIENCE))
    verify_task_token(TaskTokenConfig(secret="s", issuer=ISSUER, audience=AUDIENCE), token, now=NOW)
    token, _ = _mint(TaskTokenConfig(secret="s", issuer=ISSUER, audience=AUDIENCE))
    verify_task_token(
        TaskTokenConfig(secret="\t s \n", issuer=ISSUER, audience=AUDIENCE), token, now=NOW
    )
    # Independent check: the signing key really is the trimmed secret.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        jwt.decode(
            token, "s", algorithms=["HS256"], audience=AUDIENCE, options={"verify_exp": False}
        )


def test_trimmed_secret_still_differs_from_other_secrets() -> None:
    token, _ = _mint(TaskTokenConfig(secret=" s ", issuer=ISSUER, audience=AUDIENCE))
    other = TaskTokenConfig(secret="s2", issuer=ISSUER, audience=AUDIENCE)
    assert _reason(other, token) == "InvalidSignature"


OLD = "old-secret-0123456789-0123456789-abcdef"
NEW = "new-secret-0123456789-0123456789-abcdef"


def test_previous_secrets_verify_tokens_signed_before_rotation() -> None:
    old_config = TaskTokenConfig(secret=OLD, issuer=ISSUER, audience=AUDIENCE)
    rotated = TaskTokenConfig(
        secret=NEW, issuer=ISSUER, audience=AUDIENCE, previous_secrets=(" older ", OLD)
    )
    old_token, _ = _mint(old_config)
    assert verify_task_token(rotated, old_token, now=NOW).task_id == CT1_TASK_ID


def test_previous_secrets_are_trimmed() -> None:
    old_token, _ = _mint(TaskTokenConfig(secret=OLD, issuer=ISSUER, audience=AUDIENCE))
    rotated = TaskTokenConfig(
        secret=NEW, issuer=ISSUER, audience=AUDIENCE, previous_secrets=(f"  {OLD}\n",)
    )
    assert verify_task_token(rotated, old_token, now=NOW).task_id == CT1_TASK_ID


def test_minting_uses_the_current_secret_not_a_previous_one() -> None:
    rotated = TaskTokenConfig(secret=NEW, issuer=ISSUER, audience=AUDIENCE, previous_secrets=(OLD,))
    new_token, _ = _mint(rotated)
    old_only = TaskTokenConfig(secret=OLD, issuer=ISSUER, audience=AUDIENCE)
    assert _reason(old_only, new_token) == "InvalidSignature"
    new_only = TaskTokenConfig(secret=NEW, issuer=ISSUER, audience=AUDIENCE)
    assert verify_task_token(new_only, new_token, now=NOW).task_id == CT1_TASK_ID
    jwt.decode(
        new_token, NEW, algorithms=["HS256"], audience=AUDIENCE, options={"verify_exp": False}
    )


def test_without_previous_secrets_old_tokens_fail() -> None:
    old_token, _ = _mint(TaskTokenConfig(secret=OLD, issuer=ISSUER, audience=AUDIENCE))
    assert _reason(TaskTokenConfig(secret=NEW, issuer=ISSUER, audience=AUDIENCE), old_token) == (
        "InvalidSignature"
    )


def test_blank_previous_secrets_are_not_keys() -> None:
    # A blank previous secret must not turn the empty HMAC key into a valid signing key.
    forged = _raw({"typ": "JWT", "alg": "HS256"}, VALID, key="")
    config = TaskTokenConfig(
        secret=SECRET, issuer=ISSUER, audience=AUDIENCE, previous_secrets=("", "   ")
    )
    assert _reason(config, forged) == "InvalidSignature"


# ---------------------------------------------------------------------------------------------
# Section 6.7: configuration rules


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        (TaskTokenConfig(secret=""), "task_token.hs256_secret is required"),
        (TaskTokenConfig(secret="  \t\n"), "task_token.hs256_secret is required"),
        (TaskTokenConfig(secret=SECRET, ttl_seconds=0), "must be greater than 0"),
        (TaskTokenConfig(secret=SECRET, ttl_seconds=-1), "must be greater than 0"),
        (TaskTokenConfig(secret=SECRET, ttl_seconds=86401), "must be at most 86400"),
    ],
)
def test_validate_rejects(config: TaskTokenConfig, problem: str) -> None:
    with pytest.raises(TaskTokenConfigError) as excinfo:
        config.validate()
    assert len(excinfo.value.problems) == 1
    assert problem in excinfo.value.problems[0]
    assert isinstance(excinfo.value, ValueError)


@pytest.mark.parametrize("ttl", [1, 3600, MAX_TASK_TOKEN_TTL_SECONDS])
def test_validate_accepts(ttl: int) -> None:
    TaskTokenConfig(secret=SECRET, ttl_seconds=ttl).validate()


def test_validate_names_every_problem() -> None:
    with pytest.raises(TaskTokenConfigError) as excinfo:
        TaskTokenConfig(secret=" ", ttl_seconds=0).validate()
    assert len(excinfo.value.problems) == 2
    assert "hs256_secret" in str(excinfo.value)
    assert "ttl_seconds" in str(excinfo.value)


@pytest.mark.parametrize(
    ("ttl", "timeout", "ok"),
    [
        (900, 1800, False),
        (2099, 1800, False),
        (2100, 1800, True),
        (3600, 1800, True),
        (2400, 1800, True),
        (86400, 86100, True),
        (86400, 86101, False),
    ],
)
def test_validate_for_dispatch_budget(ttl: int, timeout: int, ok: bool) -> None:
    config = TaskTokenConfig(secret=SECRET, issuer=ISSUER, audience=AUDIENCE, ttl_seconds=ttl)
    if ok:
        validate_for_dispatch(config, timeout)
    else:
        needed = timeout + TASK_TOKEN_CALLBACK_GRACE_SECONDS
        with pytest.raises(TaskTokenConfigError, match=str(needed)):
            validate_for_dispatch(config, timeout)


def test_validate_for_dispatch_short_ttl_message_names_2100() -> None:
    config = TaskTokenConfig(secret=SECRET, issuer=ISSUER, audience=AUDIENCE, ttl_seconds=900)
    with pytest.raises(TaskTokenConfigError) as excinfo:
        validate_for_dispatch(config, 1800)
    assert excinfo.value.problems == [
        "task_token.ttl_seconds=900 must be >= task timeout 1800 + 300 = 2100"
    ]


def test_validate_for_dispatch_runs_validate_first_and_names_every_problem() -> None:
    with pytest.raises(TaskTokenConfigError) as excinfo:
        validate_for_dispatch(TaskTokenConfig(secret=""), 0)
    text = str(excinfo.value)
    for fragment in ("hs256_secret", "task timeout", "issuer", "audience"):
        assert fragment in text


@pytest.mark.parametrize("timeout", [0, -1])
def test_validate_for_dispatch_rejects_non_positive_timeout(timeout: int) -> None:
    with pytest.raises(TaskTokenConfigError, match="task timeout must be greater than 0"):
        validate_for_dispatch(CONFIG, timeout)


def test_defaults_match_the_contract() -> None:
    assert DEFAULT_TASK_TOKEN_TTL_SECONDS == 3600
    assert DEFAULT_DISPATCH_TASK_TIMEOUT_SECONDS == 1800
    assert TASK_TOKEN_CALLBACK_GRACE_SECONDS == 300
    assert MAX_TASK_TOKEN_TTL_SECONDS == 86400
    validate_for_dispatch(
        TaskTokenConfig(secret=SECRET, issuer=ISSUER, audience=AUDIENCE),
        DEFAULT_DISPATCH_TASK_TIMEOUT_SECONDS,
    )


# ---------------------------------------------------------------------------------------------
# TaskTokenVerifier: the API's remembered verifications answer as verify_task_token does


def _verifier_reason(
    verifier: TaskTokenVerifier, config: TaskTokenConfig, token: str, now: datetime
) -> str:
    with pytest.raises(InvalidTaskToken) as excinfo:
        verifier.verify(config, token, now=now)
    return excinfo.value.reason


def test_verifier_checks_the_time_again_on_a_remembered_token() -> None:
    verifier = TaskTokenVerifier()
    token, _ = _mint(CONFIG)
    assert verifier.verify(CONFIG, token, now=NOW) == verify_task_token(CONFIG, token, now=NOW)
    # Remembered now: exp and nbf are still checked, at their exact boundaries, either way
    # the clock goes.
    assert verifier.verify(CONFIG, token, now=_at(NOW_TS + 3600 + 60)).exp == NOW_TS + 3600
    assert _verifier_reason(verifier, CONFIG, token, _at(NOW_TS + 3600 + 61)) == (
        "ExpiredSignature"
    )
    assert verifier.verify(CONFIG, token, now=_at(NOW_TS - 60)).nbf == NOW_TS
    assert _verifier_reason(verifier, CONFIG, token, _at(NOW_TS - 61)) == "ImmatureSignature"
    with pytest.raises(ValueError, match="timezone-aware"):
        verifier.verify(CONFIG, token, now=datetime(2026, 1, 1))


def test_verifier_checks_a_token_again_under_another_config() -> None:
    verifier = TaskTokenVerifier()
    token, _ = _mint(CONFIG)
    verifier.verify(CONFIG, token, now=NOW)
    other = TaskTokenConfig(secret="another-secret", issuer=ISSUER, audience=AUDIENCE)
    assert _verifier_reason(verifier, other, token, NOW) == "InvalidSignature"
    assert _verifier_reason(verifier, PLAIN_CONFIG, token, NOW) == "InvalidAudience"


def test_verifier_keeps_only_tokens_that_verified_and_at_most_its_size() -> None:
    verifier = TaskTokenVerifier(size=2)
    token, _ = _mint(CONFIG)
    late = _at(NOW_TS + 3600 + 61)
    assert _verifier_reason(verifier, CONFIG, token, late) == "ExpiredSignature"
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BA")
    verifier.verify(CONFIG, token, now=NOW)
    assert _verifier_reason(verifier, CONFIG, tampered, NOW) == "InvalidSignature"
    others = [_mint(CONFIG, run_id=f"run-{n}")[0] for n in range(2)]
    for other in others:
        verifier.verify(CONFIG, other, now=NOW)
    assert token not in verifier._verified
    assert list(verifier._verified) == others
