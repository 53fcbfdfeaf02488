"""Cron expressions and timezones, as the Rust ``cron`` and ``chrono-tz`` crates accept them."""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ),
        start=1,
    )
    for name in names
}
# The cron crate numbers days of the week 1..7 starting on Sunday.
_WEEKDAYS = {
    name: number
    for number, names in enumerate(
        (
            ("sun", "sunday"),
            ("mon", "monday"),
            ("tue", "tues", "tuesday"),
            ("wed", "wednesday"),
            ("thu", "thurs", "thursday"),
            ("fri", "friday"),
            ("sat", "saturday"),
        ),
        start=1,
    )
    for name in names
}


@dataclass(frozen=True)
class _CronField:
    low: int
    high: int
    names: Mapping[str, int] | None = None
    allows_any: bool = False  # `?` is accepted in day-of-month and day-of-week only


_CRON_FIELDS = (
    _CronField(0, 59),
    _CronField(0, 59),
    _CronField(0, 23),
    _CronField(1, 31, allows_any=True),
    _CronField(1, 12, names=_MONTHS),
    _CronField(1, 7, names=_WEEKDAYS, allows_any=True),
)
_DIGITS = re.compile(r"[0-9]+")
_LETTERS = re.compile(r"[A-Za-z]+")


def cron_is_valid(expression: str) -> bool:
    """Whether ``expression`` (5 or 6 fields) parses like upstream's ``cron::Schedule``.

    A 5-field expression gets a ``0`` seconds field first. Fields accept ``*``, numbers,
    ranges ``a-b``, names (months, weekdays) and name ranges, lists ``a,b`` and steps
    ``x/n``; ``?`` only in day-of-month and day-of-week. A zero step is rejected (in Rust it
    would panic).
    """
    fields = expression.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        return False
    return all(
        all(_cron_item_is_valid(item, spec) for item in text.split(","))
        for text, spec in zip(fields, _CRON_FIELDS, strict=True)
    )


def _cron_item_is_valid(item: str, spec: _CronField) -> bool:
    base, has_step, step = item.partition("/")
    if has_step:
        if not _DIGITS.fullmatch(step) or int(step) == 0:
            return False
        if _LETTERS.fullmatch(base):
            return False  # a named point cannot carry a step
    if base == "*" or (base == "?" and spec.allows_any):
        return True
    low_text, is_range, high_text = base.partition("-")
    low = _cron_ordinal(low_text, spec)
    if low is None:
        return False
    if not is_range:
        return True
    high = _cron_ordinal(high_text, spec)
    same_kind = bool(_DIGITS.fullmatch(low_text)) == bool(_DIGITS.fullmatch(high_text))
    return high is not None and same_kind and low <= high


def _cron_ordinal(text: str, spec: _CronField) -> int | None:
    if _DIGITS.fullmatch(text):
        value = int(text)
    elif _LETTERS.fullmatch(text) and spec.names is not None:
        found = spec.names.get(text.lower())
        if found is None:
            return None
        value = found
    else:
        return None
    return value if spec.low <= value <= spec.high else None


@cache
def _known_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def timezone_is_valid(name: str) -> bool:
    """Whether ``name`` is an IANA zone name (case-sensitive, like chrono-tz)."""
    return name in _known_timezones()
