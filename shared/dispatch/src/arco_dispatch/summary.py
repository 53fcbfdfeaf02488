"""What a ``POST /run`` cycle reports: counters plus per-item errors (snake_case keys,
arco-orchestration 3.1 and 4.4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class CycleError:
    """One item that failed; the cycle went on with the others."""

    kind: str
    id: str
    message: str


class CycleSummary(Protocol):
    """What every service's summary offers."""

    @property
    def errors(self) -> list[CycleError]:
        """Items that failed; a non-empty list makes ``POST /run`` answer 500."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """The JSON body."""
        ...
