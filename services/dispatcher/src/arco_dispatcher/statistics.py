"""The dispatcher's keeper of planner statistics (PostgreSQL): every few seconds it analyzes
the busy tables whose statistics fell behind (``arco_orchestration.planner_statistics``),
so that a new database does not run for its first minutes on plans made for empty tables."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from arco_orchestration.planner_statistics import refresh_stale

log = structlog.get_logger("arco.dispatcher.statistics")


async def keep_statistics(
    engine: Engine, *, every: float, analyzed: Callable[[str], None] = lambda _: None
) -> None:
    """Refresh stale statistics every ``every`` seconds until cancelled; ``analyzed`` is
    called with each table analyzed. A failed round (database down) is logged and the next
    one tries again."""
    while True:
        try:
            tables = await asyncio.to_thread(refresh_stale, engine)
        except SQLAlchemyError as exc:
            log.warning("planner_statistics_failed", error=str(exc).splitlines()[0])
        else:
            for table in tables:
                analyzed(table)
            if tables:
                log.info("planner_statistics_refreshed", tables=tables)
        await asyncio.sleep(every)
