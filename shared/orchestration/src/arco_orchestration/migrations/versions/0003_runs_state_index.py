"""index runs by scope, state and time

The console's runs page filters by state in newest-first order and counts runs per state;
without this index both read every run of the workspace (100,000 rows per page).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 05:45:00
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

NAME = "ix_runs_tenant_id_workspace_id_state_triggered_at_run_id"


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(
            NAME, ["tenant_id", "workspace_id", "state", "triggered_at", "run_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(NAME)
