"""The tenant/workspace scope every query and fact runs in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scope:
    tenant_id: str
    workspace_id: str
