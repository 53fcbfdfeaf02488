"""SQLAlchemy models: the one schema of the stack. Changed only through Alembic migrations.

Every table carries ``tenant_id`` and ``workspace_id``; every query is scoped by them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ColumnElement,
    DateTime,
    Dialect,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    and_,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ID = String(255)
KEY = String(512)
# The partial index of the tasks that hold a run's public state back (queries.GATING_VISIBILITY).
VISIBILITY_GATING_SQL = "output_visibility_state IN ('FAILED', 'PENDING')"


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite has no time zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        Any: JSON(),
    }


class Manifest(Base):
    __tablename__ = "manifests"

    manifest_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ID)
    workspace_id: Mapped[str] = mapped_column(ID)
    code_version_id: Mapped[str] = mapped_column(KEY)
    fingerprint: Mapped[str] = mapped_column(String(64))
    deployed_at: Mapped[datetime]
    deployed_by: Mapped[str] = mapped_column(KEY)
    idempotency_key: Mapped[str | None] = mapped_column(KEY)
    asset_count: Mapped[int] = mapped_column(Integer)
    body: Mapped[dict[str, Any]]

    __table_args__ = (
        Index(None, "tenant_id", "workspace_id", "deployed_at"),
        UniqueConstraint("tenant_id", "workspace_id", "idempotency_key"),
    )


class Run(Base):
    __tablename__ = "runs"

    run_id: Mapped[str] = mapped_column(ID, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ID)
    workspace_id: Mapped[str] = mapped_column(ID)
    plan_id: Mapped[str] = mapped_column(ID)
    state: Mapped[str] = mapped_column(String(16))
    run_key: Mapped[str | None] = mapped_column(KEY)
    labels: Mapped[dict[str, Any]]
    code_version: Mapped[str | None] = mapped_column(KEY)
    manifest_id: Mapped[str | None] = mapped_column(String(64))
    triggered_by: Mapped[str] = mapped_column(KEY)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    cancel_requested_at: Mapped[datetime | None]
    tasks_total: Mapped[int] = mapped_column(Integer, default=0)
    tasks_completed: Mapped[int] = mapped_column(Integer, default=0)
    tasks_succeeded: Mapped[int] = mapped_column(Integer, default=0)
    tasks_failed: Mapped[int] = mapped_column(Integer, default=0)
    tasks_skipped: Mapped[int] = mapped_column(Integer, default=0)
    tasks_cancelled: Mapped[int] = mapped_column(Integer, default=0)
    triggered_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    parent_run_id: Mapped[str | None] = mapped_column(ID)
    rerun_kind: Mapped[str | None] = mapped_column(String(32))
    rerun_reason: Mapped[str | None] = mapped_column(String(64))
    row_version: Mapped[int] = mapped_column(Integer, default=1)

    __table_args__ = (
        Index(None, "tenant_id", "workspace_id", "triggered_at", "run_id"),
        # The console's runs page: a state filter in newest-first order, and counts per state.
        Index(None, "tenant_id", "workspace_id", "state", "triggered_at", "run_id"),
    )


class RunKey(Base):
    """A run-key reservation: one run per (tenant, workspace, run key)."""

    __tablename__ = "run_keys"

    tenant_id: Mapped[str] = mapped_column(ID, primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ID, primary_key=True)
    run_key: Mapped[str] = mapped_column(KEY, primary_key=True)
    run_id: Mapped[str] = mapped_column(ID)
    plan_id: Mapped[str] = mapped_column(ID)
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class Task(Base):
    __tablename__ = "tasks"

    run_id: Mapped[str] = mapped_column(ID, primary_key=True)
    task_key: Mapped[str] = mapped_column(KEY, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ID)
    workspace_id: Mapped[str] = mapped_column(ID)
    state: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    attempt_id: Mapped[str | None] = mapped_column(String(64))
    asset_key: Mapped[str | None] = mapped_column(KEY)
    partition_key: Mapped[str | None] = mapped_column(Text)
    deps_total: Mapped[int] = mapped_column(Integer, default=0)
    deps_satisfied_count: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    heartbeat_timeout_sec: Mapped[int] = mapped_column(Integer, default=300)
    requires_visible_output: Mapped[bool] = mapped_column(Boolean, default=True)
    ready_at: Mapped[datetime | None]
    dispatched_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    last_heartbeat_at: Mapped[datetime | None]
    # Heartbeat deadline = last sign of life + timeout; indexed so the reaper scans only
    # overdue RUNNING tasks.
    heartbeat_deadline: Mapped[datetime | None]
    retry_not_before: Mapped[datetime | None]
    error_message: Mapped[str | None] = mapped_column(Text)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    output: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    materialization_id: Mapped[str | None] = mapped_column(KEY)
    output_visibility_state: Mapped[str | None] = mapped_column(String(16))
    published_at: Mapped[datetime | None]
    publish_error: Mapped[str | None] = mapped_column(Text)
    delta_table: Mapped[str | None] = mapped_column(KEY)
    delta_version: Mapped[int | None] = mapped_column(BigInteger)
    delta_partition: Mapped[str | None] = mapped_column(Text)
    execution_lineage_ref: Mapped[str | None] = mapped_column(Text)
    progress_pct: Mapped[int | None] = mapped_column(Integer)
    progress_message: Mapped[str | None] = mapped_column(Text)
    row_version: Mapped[int] = mapped_column(Integer, default=1)

    __table_args__ = (
        ForeignKeyConstraint(["run_id"], ["runs.run_id"], ondelete="CASCADE"),
        Index(None, "tenant_id", "workspace_id", "task_key"),
        # Scans of the dispatcher and sweeper: one index per (state, due time) pair.
        Index("ix_tasks_state_ready_at", "state", "ready_at"),
        Index("ix_tasks_state_retry_not_before", "state", "retry_not_before"),
        Index("ix_tasks_state_heartbeat_deadline", "state", "heartbeat_deadline"),
        Index("ix_tasks_state_dispatched_at", "state", "dispatched_at"),
        # The sweeper's scan of unstarted tasks of cancelled runs (state and scope only):
        # without it SQLite reads every task of the workspace through the task_key index.
        Index("ix_tasks_state_tenant_id_workspace_id", "state", "tenant_id", "workspace_id"),
        # The run list's state filter: the few tasks whose required output is not visible
        # (they change their run's public state), migration 0004.
        Index(
            "ix_tasks_visibility_gating_run_id",
            "run_id",
            postgresql_where=text(VISIBILITY_GATING_SQL),
            sqlite_where=text(VISIBILITY_GATING_SQL),
        ),
    )


class TaskDependency(Base):
    """One dependency edge ``upstream -> downstream`` inside a run."""

    __tablename__ = "task_dependencies"

    run_id: Mapped[str] = mapped_column(ID, primary_key=True)
    upstream_key: Mapped[str] = mapped_column(KEY, primary_key=True)
    downstream_key: Mapped[str] = mapped_column(KEY, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ID)
    workspace_id: Mapped[str] = mapped_column(ID)
    satisfied: Mapped[bool] = mapped_column(Boolean, default=False)
    resolution: Mapped[str | None] = mapped_column(String(16))
    satisfying_attempt: Mapped[int | None] = mapped_column(Integer)
    satisfied_at: Mapped[datetime | None]

    __table_args__ = (
        ForeignKeyConstraint(["run_id"], ["runs.run_id"], ondelete="CASCADE"),
        Index(None, "run_id", "downstream_key"),
    )


class DispatchOutbox(Base):
    """One requested dispatch of one attempt, and its delivery by the provider."""

    __tablename__ = "dispatch_outbox"

    dispatch_id: Mapped[str] = mapped_column(KEY, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ID)
    workspace_id: Mapped[str] = mapped_column(ID)
    run_id: Mapped[str] = mapped_column(ID)
    task_key: Mapped[str] = mapped_column(KEY)
    attempt: Mapped[int] = mapped_column(Integer)
    attempt_id: Mapped[str] = mapped_column(String(64))
    worker_queue: Mapped[str] = mapped_column(KEY)
    status: Mapped[str] = mapped_column(String(16))
    cloud_task_id: Mapped[str | None] = mapped_column(KEY)
    created_at: Mapped[datetime]
    enqueued_at: Mapped[datetime | None]
    redispatch_count: Mapped[int] = mapped_column(Integer, default=0)
    # Push delivery by the built-in http provider (a durable queue in this table).
    delivery_state: Mapped[str | None] = mapped_column(String(16))
    delivery_attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_delivery_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    last_delivery_status: Mapped[int | None] = mapped_column(Integer)
    last_delivery_error: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text)
    row_version: Mapped[int] = mapped_column(Integer, default=1)

    __table_args__ = (
        ForeignKeyConstraint(["run_id"], ["runs.run_id"], ondelete="CASCADE"),
        Index(None, "run_id", "task_key", "attempt"),
        Index("ix_dispatch_outbox_status_created_at", "status", "created_at"),
        Index("ix_dispatch_outbox_delivery", "delivery_state", "next_delivery_at"),
    )


class TaskEvent(Base):
    """Append-only history of one task: dispatched, enqueued, started, completed, reaped,
    cancelled, skipped, retried. Heartbeats only refresh the task row. A fact that must apply
    once carries an idempotency key, unique per workspace."""

    __tablename__ = "task_events"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    tenant_id: Mapped[str] = mapped_column(ID)
    workspace_id: Mapped[str] = mapped_column(ID)
    run_id: Mapped[str] = mapped_column(ID)
    task_key: Mapped[str] = mapped_column(KEY)
    attempt: Mapped[int] = mapped_column(Integer)
    attempt_id: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str | None] = mapped_column(String(16))
    idempotency_key: Mapped[str | None] = mapped_column(String(1200))
    at: Mapped[datetime]
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (
        ForeignKeyConstraint(["run_id"], ["runs.run_id"], ondelete="CASCADE"),
        Index(None, "run_id", "task_key", "id"),
        UniqueConstraint("tenant_id", "workspace_id", "idempotency_key"),
    )


class TaskLog(Base):
    """Logs uploaded for one attempt; create-only."""

    __tablename__ = "task_logs"

    run_id: Mapped[str] = mapped_column(ID, primary_key=True)
    task_key: Mapped[str] = mapped_column(KEY, primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ID)
    workspace_id: Mapped[str] = mapped_column(ID)
    stdout: Mapped[str] = mapped_column(Text)
    stderr: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]

    __table_args__ = (ForeignKeyConstraint(["run_id"], ["runs.run_id"], ondelete="CASCADE"),)


def key_scope(entity: type[Run] | type[Task], tenant: Any, workspace: Any) -> ColumnElement[bool]:
    """The scope condition of a lookup by primary key (``tenant`` and ``workspace`` are
    values or bound parameters): ``IS NOT DISTINCT FROM``, the same as ``=`` on these NOT
    NULL columns, but no index condition. Without statistics (a new database, until
    autovacuum first analyzes it a minute or more after it fills) PostgreSQL's planner
    takes ``tenant_id = $1 AND workspace_id = $2`` for very selective and prefers an index
    that leads with the scope to the primary key, reading every row of the workspace on
    each lookup. As a filter the scope still applies, to the one row the key finds."""
    return and_(
        entity.tenant_id.is_not_distinct_from(tenant),
        entity.workspace_id.is_not_distinct_from(workspace),
    )
