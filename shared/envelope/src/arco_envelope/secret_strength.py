"""Strength checks of the shared secrets every service holds (user JWT, task token, dispatch
secret, run token): long enough that one captured token cannot be brute-forced, and never one
value serving two purposes."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

MIN_SECRET_BYTES = 32
"""The shortest secret accepted outside the dev posture (HS256 keys: RFC 7518 3.2)."""

DEV_POSTURE_HINT = "outside the dev posture (ARCO_ENVIRONMENT=dev)"


def weak_secret_problems(named: Sequence[tuple[str, str]]) -> list[str]:
    """One line per weakness of the ``(variable, value)`` pairs: a non-blank secret shorter
    than :data:`MIN_SECRET_BYTES` (after trimming, as every service trims), or two variables
    holding the same value. Blank secrets are left to the caller's own required-value check;
    values are never echoed."""
    trimmed = [(name, value.strip()) for name, value in named]
    found: list[str] = []
    for name, value in trimmed:
        size = len(value.encode())
        if 0 < size < MIN_SECRET_BYTES:
            found.append(
                f"{name} is {size} bytes; it must be at least {MIN_SECRET_BYTES} bytes "
                f"{DEV_POSTURE_HINT} (e.g. openssl rand -hex 32)"
            )
    for (first, one), (second, other) in combinations(trimmed, 2):
        if one and one == other:
            found.append(f"{first} and {second} must not be equal: give each its own secret")
    return found
