"""The built-in ``http`` provider's push queue, kept in the outbox table (design D5).

A CREATED row with ``delivery_state`` QUEUED is a message waiting for delivery at
``next_delivery_at``. A dispatcher claims due rows with a lease (``FOR UPDATE SKIP LOCKED``
on PostgreSQL, so concurrent dispatchers take disjoint rows; SQLite serialises writers),
delivers them with no transaction open, and records the outcome in a new short transaction.
A claim pushes ``next_delivery_at`` to the lease expiry, so a row whose dispatcher died
becomes due again by itself. The lease is short: a dispatcher renews the leases of the
deliveries it still has in flight (:func:`renew_leases`), so a long delivery keeps its row
while a dead dispatcher's rows come due again soon. Each outcome is recorded only by the
claim that still holds the lease: a late answer to an expired lease changes nothing.

Lock order: a function that also writes the task history (which checks its foreign key to
the run with ``FOR KEY SHARE``) locks the run first, like every fact, so it cannot deadlock
with a fact that holds the run and deletes this row (``/started``).

A delivery that reaches the worker removes nothing here: the row goes away when the worker's
``/started`` callback consumes the attempt, as every other outbox row does.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import ColumnElement, Connection, Integer, Table, bindparam, func, select, update
from sqlalchemy.orm import Session

from arco_orchestration.facts.keysets import DIALECTS, pair_match, pair_params
from arco_orchestration.facts.snapshots import DispatchSnapshot, TaskSnapshot
from arco_orchestration.facts.store import (
    EventKind,
    add_event,
    get_task,
    get_tasks,
    lock_run,
    lock_runs,
)
from arco_orchestration.models import DispatchOutbox, Task, key_scope
from arco_orchestration.scope import Scope
from arco_orchestration.states import DeliveryState, OutboxStatus, TaskState

LEASE_OWNER_MAX = 128
ERROR_TEXT_MAX = 500

# The pump's hot statements are Core only: they run on a session or, cheaper, on a bare
# connection (``Database.connection``).
Executor = Session | Connection


def _dialect(executor: Executor) -> str:
    bind = executor if isinstance(executor, Connection) else executor.get_bind()
    return bind.dialect.name


@dataclass(frozen=True)
class DeliveryClaim:
    """A leased row: deliver it, then record the outcome with this claim."""

    dispatch: DispatchSnapshot
    lease_token: str
    delivery_attempt: int  # 1 for the first delivery of this queue position


def _scoped(scope: Scope) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    return (
        DispatchOutbox.tenant_id == scope.tenant_id,
        DispatchOutbox.workspace_id == scope.workspace_id,
    )


# What a claim reads: the outbox row's snapshot fields and its task row's (``None`` when the
# task row is missing: the outer join's task columns are then all NULL).
_CLAIM_COLUMNS = (
    DispatchOutbox.dispatch_id,
    DispatchOutbox.run_id,
    DispatchOutbox.task_key,
    DispatchOutbox.attempt,
    DispatchOutbox.attempt_id,
    DispatchOutbox.worker_queue,
    DispatchOutbox.status,
    DispatchOutbox.created_at,
    DispatchOutbox.enqueued_at,
    DispatchOutbox.redispatch_count,
    DispatchOutbox.delivery_state,
    DispatchOutbox.delivery_attempts,
    Task.task_key.label("task_task_key"),
    Task.state.label("task_state"),
    Task.attempt.label("task_attempt"),
    Task.attempt_id.label("task_attempt_id"),
    Task.partition_key.label("task_partition_key"),
    Task.heartbeat_timeout_sec.label("task_heartbeat_timeout_sec"),
)

# Built once, with parameters: a statement built per call is compiled from the cache, but its
# cache key is computed anew each time, which costs more than the execution.
_CLAIM = (
    select(*_CLAIM_COLUMNS)
    .outerjoin(
        Task,
        (Task.run_id == DispatchOutbox.run_id)
        & (Task.task_key == DispatchOutbox.task_key)
        & key_scope(Task, bindparam("tenant"), bindparam("workspace")),
    )
    .where(
        DispatchOutbox.delivery_state == DeliveryState.QUEUED.value,
        DispatchOutbox.next_delivery_at <= bindparam("now"),
        DispatchOutbox.status == OutboxStatus.CREATED.value,
        DispatchOutbox.tenant_id == bindparam("tenant"),
        DispatchOutbox.workspace_id == bindparam("workspace"),
    )
    .order_by(DispatchOutbox.next_delivery_at)
    .limit(bindparam("limit", type_=Integer))
    .with_for_update(skip_locked=True, of=DispatchOutbox)
)

_NEXT_DUE = select(func.min(DispatchOutbox.next_delivery_at)).where(
    DispatchOutbox.delivery_state == DeliveryState.QUEUED.value,
    DispatchOutbox.tenant_id == bindparam("tenant"),
    DispatchOutbox.workspace_id == bindparam("workspace"),
)

_STILL_HELD = select(DispatchOutbox.dispatch_id).where(
    DispatchOutbox.dispatch_id.in_(bindparam("ids", expanding=True)),
    DispatchOutbox.lease_owner.in_(bindparam("tokens", expanding=True)),
    DispatchOutbox.tenant_id == bindparam("tenant"),
    DispatchOutbox.workspace_id == bindparam("workspace"),
)

# On the table, not the mapped class: an executemany of an ORM UPDATE would be the ORM's
# bulk update by primary key, which takes no WHERE criteria.
_OUTBOX = cast(Table, DispatchOutbox.__table__)
_LEASE = (
    update(_OUTBOX)
    .where(_OUTBOX.c.dispatch_id == bindparam("claimed_id"))
    .values(
        lease_owner=bindparam("token"),
        lease_expires_at=bindparam("expires"),
        next_delivery_at=bindparam("expires"),
        delivery_attempts=_OUTBOX.c.delivery_attempts + 1,
        row_version=_OUTBOX.c.row_version + 1,
    )
)


def claim_due_deliveries(
    session: Executor,
    scope: Scope,
    *,
    owner: str,
    now: datetime,
    lease: timedelta,
    limit: int,
) -> list[DeliveryClaim]:
    """Lease up to ``limit`` QUEUED rows due at ``now``, oldest due first.

    Core statements built once, not the ORM: one query reads the rows (locked, skipping
    those another dispatcher is claiming) with their task rows, one executemany leases them.
    A claim is made for every delivery, and the ORM's identity map and unit of work cost
    more CPU than the statements themselves."""
    if limit <= 0:
        return []
    found = session.execute(
        _CLAIM,
        {
            "now": now,
            "limit": limit,
            "tenant": scope.tenant_id,
            "workspace": scope.workspace_id,
        },
    ).all()
    if not found:
        return []
    expires = now + lease
    claims: list[DeliveryClaim] = []
    for row in found:
        token = f"{owner[: LEASE_OWNER_MAX - 17]}:{uuid.uuid4().hex[:16]}"
        task = None
        if row.task_task_key is not None:
            task = TaskSnapshot(
                run_id=row.run_id,
                task_key=row.task_key,
                state=row.task_state,
                attempt=row.task_attempt,
                attempt_id=row.task_attempt_id,
                partition_key=row.task_partition_key,
                heartbeat_timeout_sec=row.task_heartbeat_timeout_sec,
            )
        attempts = row.delivery_attempts + 1
        # The snapshot is of the row as leased.
        leased = {**row._mapping, "delivery_attempts": attempts, "lease_expires_at": expires}
        dispatch = replace(DispatchSnapshot.of_values(leased, None), task=task)
        claims.append(DeliveryClaim(dispatch, token, delivery_attempt=attempts))
    leases = [
        {"claimed_id": c.dispatch.dispatch_id, "token": c.lease_token, "expires": expires}
        for c in claims
    ]
    session.execute(_LEASE, leases)
    return claims


def next_delivery_due(session: Executor, scope: Scope) -> datetime | None:
    """When the earliest QUEUED row (leased or not) becomes due, if any."""
    return session.scalar(_NEXT_DUE, {"tenant": scope.tenant_id, "workspace": scope.workspace_id})


def _finish_claim(
    session: Session, scope: Scope, claim: DeliveryClaim, values: dict[str, object]
) -> bool:
    result = session.execute(
        update(DispatchOutbox)
        .where(
            DispatchOutbox.dispatch_id == claim.dispatch.dispatch_id,
            DispatchOutbox.lease_owner == claim.lease_token,
            *_scoped(scope),
        )
        .values(
            lease_owner=None,
            lease_expires_at=None,
            row_version=DispatchOutbox.row_version + 1,
            **values,
        )
        .returning(DispatchOutbox.dispatch_id)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    return result is not None


def record_delivered(
    session: Session, scope: Scope, claim: DeliveryClaim, *, now: datetime, status: int
) -> bool:
    """The worker answered 2xx: the row is DELIVERED and the task history says so.
    Returns ``False`` when the claim no longer holds the row (consumed or re-leased)."""
    lock_run(session, scope, claim.dispatch.run_id)
    if not _finish_claim(
        session,
        scope,
        claim,
        {
            "delivery_state": DeliveryState.DELIVERED.value,
            "delivered_at": now,
            "next_delivery_at": None,
            "last_delivery_status": status,
            "last_delivery_error": None,
        },
    ):
        return False
    task = get_task(session, scope, claim.dispatch.run_id, claim.dispatch.task_key)
    if task is not None and task.attempt == claim.dispatch.attempt:
        add_event(
            session,
            task,
            EventKind.DISPATCH_DELIVERED,
            now,
            from_state=task.state,
            detail={
                "dispatchId": claim.dispatch.dispatch_id,
                "status": status,
                "deliveryAttempt": claim.delivery_attempt,
            },
        )
    return True


@dataclass(frozen=True)
class Delivered:
    """A claim whose delivery the worker answered with 2xx ``status``."""

    claim: DeliveryClaim
    status: int


def record_deliveries(
    session: Session, scope: Scope, delivered: Sequence[Delivered], *, now: datetime
) -> set[str]:
    """:func:`record_delivered` for many claims in one transaction (runs locked first, in
    order). Returns the lease tokens of the claims that still held their row."""
    if not delivered:
        return set()
    by_token = {item.claim.lease_token: item for item in delivered}
    # Usually the worker's /started consumed the row before the worker answered: find the
    # rows still held first, without locks. A lease token is never handed out twice, so a
    # row not held by its claim now never will be again, and rows not held need no run
    # lock (which would queue behind, and hold up, the callbacks of those runs).
    still_held = set(
        session.scalars(
            _STILL_HELD,
            {
                "ids": sorted({i.claim.dispatch.dispatch_id for i in delivered}),
                "tokens": sorted(by_token),
                "tenant": scope.tenant_id,
                "workspace": scope.workspace_id,
            },
        )
    )
    if not still_held:
        return set()
    lock_runs(
        session,
        scope,
        (i.claim.dispatch.run_id for i in delivered if i.claim.dispatch.dispatch_id in still_held),
    )
    rows = session.scalars(
        select(DispatchOutbox)
        .where(
            DispatchOutbox.dispatch_id.in_(sorted(still_held)),
            *_scoped(scope),
        )
        .order_by(DispatchOutbox.dispatch_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    held = [(row, by_token[row.lease_owner]) for row in rows if row.lease_owner in by_token]
    tasks = get_tasks(session, scope, ((row.run_id, row.task_key) for row, _ in held))
    for row, item in held:
        row.lease_owner = None
        row.lease_expires_at = None
        row.row_version += 1
        row.delivery_state = DeliveryState.DELIVERED.value
        row.delivered_at = now
        row.next_delivery_at = None
        row.last_delivery_status = item.status
        row.last_delivery_error = None
        task = tasks.get((row.run_id, row.task_key))
        if task is not None and task.attempt == item.claim.dispatch.attempt:
            add_event(
                session,
                task,
                EventKind.DISPATCH_DELIVERED,
                now,
                from_state=task.state,
                detail={
                    "dispatchId": row.dispatch_id,
                    "status": item.status,
                    "deliveryAttempt": item.claim.delivery_attempt,
                },
            )
    return {item.claim.lease_token for _, item in held}


def record_delivery_failure(
    session: Session,
    scope: Scope,
    claim: DeliveryClaim,
    *,
    status: int | None,
    error: str,
    retry_at: datetime | None,
    counted: bool = True,
) -> bool:
    """The delivery failed: queue it again at ``retry_at``, or give up when ``retry_at`` is
    ``None``. ``error`` is our own description (never a response body, which might echo the
    envelope's token). ``counted=False`` gives the claim's delivery attempt back, as for a
    busy worker (429): that try says nothing about the row, only about the worker's load."""
    values: dict[str, object] = {
        "delivery_state": (
            DeliveryState.QUEUED if retry_at is not None else DeliveryState.GAVE_UP
        ).value,
        "next_delivery_at": retry_at,
        "last_delivery_status": status,
        "last_delivery_error": error[:ERROR_TEXT_MAX],
    }
    if not counted:
        values["delivery_attempts"] = DispatchOutbox.delivery_attempts - 1
    return _finish_claim(session, scope, claim, values)


def renew_leases(
    session: Session,
    scope: Scope,
    claims: Sequence[DeliveryClaim],
    *,
    now: datetime,
    lease: timedelta,
) -> set[str]:
    """Extend to ``now + lease`` the leases of ``claims`` that still hold their rows, in one
    statement; returns the lease tokens renewed. A claim missing from the answer no longer
    holds its row (consumed by ``/started``, recorded, or taken over after it expired), or
    its row is locked by another transaction at this moment: rows locked elsewhere are
    skipped, not waited for, so a renewal never queues behind (or deadlocks with) a fact
    that locked its run first, and the next renewal tries again."""
    if not claims:
        return set()
    ids = sorted({claim.dispatch.dispatch_id for claim in claims})
    tokens = sorted({claim.lease_token for claim in claims})
    held = (
        select(DispatchOutbox.dispatch_id)
        .where(
            DispatchOutbox.dispatch_id.in_(ids),
            DispatchOutbox.lease_owner.in_(tokens),
            *_scoped(scope),
        )
        .with_for_update(skip_locked=True)
    )
    expires = now + lease
    renewed = session.scalars(
        update(DispatchOutbox)
        .where(
            DispatchOutbox.dispatch_id.in_(held),
            DispatchOutbox.lease_owner.in_(tokens),
            *_scoped(scope),
        )
        .values(
            lease_expires_at=expires,
            # The row comes due again when the renewed lease ends, not the old one.
            next_delivery_at=expires,
            row_version=DispatchOutbox.row_version + 1,
        )
        .returning(DispatchOutbox.lease_owner)
        .execution_options(synchronize_session=False)
    ).all()
    return {token for token in renewed if token is not None}


def release_claim(session: Session, scope: Scope, claim: DeliveryClaim, *, now: datetime) -> bool:
    """Give a claimed row back at once, uncounted (a dispatcher stopping mid-delivery)."""
    return _finish_claim(
        session,
        scope,
        claim,
        {
            "next_delivery_at": now,
            "delivery_attempts": DispatchOutbox.delivery_attempts - 1,
        },
    )


# An attempt a worker accepted holds one of its slots until the worker is done with it: while
# the task is on that attempt and DISPATCHED (accepted, /started not yet in) or RUNNING.
_HOLDING_STATES = frozenset((TaskState.DISPATCHED.value, TaskState.RUNNING.value))
# The rows by primary key only, their state checked here: a ``state IN (...)`` condition lets
# the planner scan the state index instead, through an entry for every task that passed
# through those states since the last VACUUM (the pump asks every few milliseconds).
_ATTEMPT_STATES = {
    dialect: select(Task.run_id, Task.task_key, Task.attempt, Task.state).where(
        pair_match(Task.run_id, Task.task_key)[dialect],
        key_scope(Task, bindparam("tenant"), bindparam("workspace")),
    )
    for dialect in DIALECTS
}

AttemptRef = tuple[str, str, int]
"""``(run_id, task_key, attempt)`` of one task attempt."""


def open_attempts(
    session: Executor, scope: Scope, attempts: Collection[AttemptRef]
) -> set[AttemptRef]:
    """Of these delivered attempts, the ones a worker may still be running: their task is
    still on that attempt and DISPATCHED or RUNNING. An attempt that finished, was retried,
    reaped or cancelled is left out (its worker slot is free, or the sweeper's)."""
    if not attempts:
        return set()
    dialect = _dialect(session)
    pairs = sorted({(run_id, task_key) for run_id, task_key, _ in attempts})
    params = {
        **pair_params(dialect, pairs),
        "tenant": scope.tenant_id,
        "workspace": scope.workspace_id,
    }
    found = {
        (r.run_id, r.task_key, r.attempt)
        for r in session.execute(_ATTEMPT_STATES[dialect], params)
        if r.state in _HOLDING_STATES
    }
    return found & set(attempts)
