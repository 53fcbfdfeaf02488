"""The tenant, workspace, worker and secrets the suites share (test values, not credentials)."""

from __future__ import annotations

from arco_orchestration.scope import Scope

TENANT = "tenant-a"
WORKSPACE = "workspace-b"
SCOPE = Scope(TENANT, WORKSPACE)
OTHER_WORKSPACE = Scope(TENANT, "workspace-other")
OTHER_TENANT = Scope("tenant-other", WORKSPACE)
WORKER = "worker-1"

CALLBACK_BASE_URL = "https://api.example"
DISPATCH_SECRET = "dispatch-secret"
TASK_SECRET = "task-secret"
TASK_ISSUER = "https://issuer.task"
TASK_AUDIENCE = "arco-worker-callback"
