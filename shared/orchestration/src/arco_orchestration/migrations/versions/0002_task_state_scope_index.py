"""index tasks by state and scope

The sweeper's scan of unstarted tasks of cancelled runs filters on state, tenant and
workspace only; SQLite otherwise reads every task of the workspace (2.3 s at 1M tasks).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 16:15:00
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_tasks_state_tenant_id_workspace_id",
            ["state", "tenant_id", "workspace_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_state_tenant_id_workspace_id")
