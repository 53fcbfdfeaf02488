"""index the tasks whose required output is not visible

The run API's state filter (RUNNING, FAILED) must find the runs whose public state comes
from an unpublished output rather than from their stored state; this partial index holds
just those few tasks, so the filter reads them instead of every task.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 08:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

NAME = "ix_tasks_visibility_gating_run_id"
# Kept here rather than imported: a migration must not change when the models do.
WHERE = "output_visibility_state IN ('FAILED', 'PENDING')"


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index(
            NAME,
            ["run_id"],
            unique=False,
            postgresql_where=sa.text(WHERE),
            sqlite_where=sa.text(WHERE),
        )


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index(NAME)
