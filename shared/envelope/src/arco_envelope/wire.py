"""Base model and field types shared by every wire message."""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

U32_MAX = 4_294_967_295
U64_MAX = 18_446_744_073_709_551_615
I64_MIN = -9_223_372_036_854_775_808
I64_MAX = 9_223_372_036_854_775_807

# Integers on the wire are strict: floats (even 1.0), numeric strings and booleans are rejected.
U32 = Annotated[StrictInt, Field(ge=0, le=U32_MAX)]
U64 = Annotated[StrictInt, Field(ge=0, le=U64_MAX)]
I64 = Annotated[StrictInt, Field(ge=I64_MIN, le=I64_MAX)]


def to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


class WireModel(BaseModel):
    """A JSON message of the contract: camelCase on the wire, unknown keys ignored.

    Python code may construct models with field names; :meth:`from_json` and
    :meth:`from_dict` read the wire, where only the spellings the contract allows count.
    Subclasses map in ``_legacy_aliases`` each canonical name to the other spellings accepted
    on read; supplying two spellings of one field is an error.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="ignore",
        frozen=True,
    )

    _legacy_aliases: ClassVar[dict[str, tuple[str, ...]]] = {}

    @model_validator(mode="before")
    @classmethod
    def _reject_duplicate_spellings(cls, data: Any) -> Any:
        reject_duplicate_spellings(data, cls._legacy_aliases)
        return data

    @classmethod
    def from_json(cls, data: str | bytes) -> Self:
        """Parse a wire JSON document; raises ``pydantic.ValidationError`` (a ``ValueError``)."""
        return cls.model_validate_json(data, by_name=False, by_alias=True)

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        """Validate an already-decoded wire JSON value."""
        return cls.model_validate(data, by_name=False, by_alias=True)

    def to_dict(self) -> dict[str, Any]:
        """The canonical wire form as a JSON-compatible dict (optional fields omitted)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def to_json(self) -> str:
        """The canonical wire form: compact camelCase JSON, optional fields omitted."""
        return canonical_json(self.to_dict())


def reject_duplicate_spellings(data: Any, spellings: dict[str, tuple[str, ...]]) -> None:
    """Raise ``ValueError`` when a JSON object gives one field under two spellings."""
    if not isinstance(data, dict):
        return
    for canonical, others in spellings.items():
        present = [name for name in (canonical, *others) if name in data]
        if len(present) > 1:
            raise ValueError(f"duplicate field `{canonical}` (given as {', '.join(present)})")


def canonical_json(value: Any) -> str:
    """Compact JSON in the form upstream's serde_json writes (no spaces, UTF-8 kept)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
