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
DISPATCH_SECRET = "dispatch-secret-0123456789abcdef0123"
TASK_SECRET = "task-secret-0123456789abcdef0123456789"
RUN_TOKEN = "run-token-0123456789abcdef0123456789ab"
TASK_ISSUER = "https://issuer.task"
TASK_AUDIENCE = "arco-worker-callback"
