"""The state machine: one function per fact. Each applies its guards, its state change and
every derived effect (readiness, skip and cancel cascades, run counters, run completion) in
the caller's transaction (arco-orchestration sections 1, 2 and 5, with design decision D7);
the caller owns the transaction and commits it.

Which state may follow which is declared once, in :mod:`.transitions`, and every state
change of a task or a run goes through :func:`.transitions.transition`.

Concurrency: every fact that changes a task first locks its run row (``FOR UPDATE`` on
PostgreSQL; SQLite serialises writers with ``BEGIN IMMEDIATE``), so the facts of one run
apply one at a time, and always lock run before task and outbox rows (no deadlocks). The
one exception is TaskStarted: it changes only its own task, so it holds the run row in
share mode (``FOR SHARE``, the task ``FOR UPDATE``) and the starts of one run's tasks
apply together, each still ordered against every other fact of the run. Facts
that must apply once per attempt also insert a task event with a unique idempotency key, so
a repeat is a no-op enforced by the database even across processes.

Modules, bottom up: ``keysets`` (many-key conditions with a fixed SQL text),
``transitions`` (the tables), ``store`` (locks, lookups, keyed events, outbox rows,
NOTIFY), ``snapshots`` (session-free copies of rows), ``graph`` (readiness, cascades, run
completion), then one module per group of facts: ``trigger``, ``dispatch``, ``attempts``,
``cancel``, ``repairs``.
"""

from arco_orchestration.facts.attempts import (
    ANTI_ENTROPY_WORKER,
    Completion,
    apply_completion,
    apply_heartbeat,
    apply_started,
)
from arco_orchestration.facts.cancel import CancelDisposition, cancel_run, cancel_unstarted_task
from arco_orchestration.facts.dispatch import (
    DispatchRequest,
    Enqueued,
    QueueNow,
    apply_dispatch_request,
    record_enqueued,
    record_enqueues,
    request_dispatch,
    request_dispatches,
)
from arco_orchestration.facts.repairs import (
    fail_attempt,
    reap_silent_task,
    record_redispatch,
    recreate_dispatch,
)
from arco_orchestration.facts.snapshots import (
    DispatchSnapshot,
    TaskSnapshot,
    load_dispatch,
    load_dispatches,
    load_task,
)
from arco_orchestration.facts.store import (
    NOTIFY_CHANNEL,
    EventKind,
    RunLock,
    add_event,
    get_task,
    get_tasks,
    insert_keyed,
    keyed_event_fields,
    lock_run,
    lock_runs,
    notify_dispatcher,
    run_with_task,
)
from arco_orchestration.facts.transitions import (
    RUN_TRANSITIONS,
    TASK_TRANSITIONS,
    IllegalTransition,
    RunTransition,
    TaskTransition,
    allows,
    transition,
)
from arco_orchestration.facts.trigger import (
    PlannedTaskLike,
    RunKeyReservation,
    reserve_run_key,
    trigger_run,
)

__all__ = [
    "ANTI_ENTROPY_WORKER",
    "NOTIFY_CHANNEL",
    "RUN_TRANSITIONS",
    "TASK_TRANSITIONS",
    "CancelDisposition",
    "Completion",
    "DispatchRequest",
    "DispatchSnapshot",
    "Enqueued",
    "EventKind",
    "IllegalTransition",
    "PlannedTaskLike",
    "QueueNow",
    "RunKeyReservation",
    "RunLock",
    "RunTransition",
    "TaskSnapshot",
    "TaskTransition",
    "add_event",
    "allows",
    "apply_completion",
    "apply_dispatch_request",
    "apply_heartbeat",
    "apply_started",
    "cancel_run",
    "cancel_unstarted_task",
    "fail_attempt",
    "get_task",
    "get_tasks",
    "insert_keyed",
    "keyed_event_fields",
    "load_dispatch",
    "load_dispatches",
    "load_task",
    "lock_run",
    "lock_runs",
    "notify_dispatcher",
    "reap_silent_task",
    "record_enqueued",
    "record_enqueues",
    "record_redispatch",
    "recreate_dispatch",
    "request_dispatch",
    "request_dispatches",
    "reserve_run_key",
    "run_with_task",
    "transition",
    "trigger_run",
]
