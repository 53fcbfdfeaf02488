"""The sweep: upstream scenarios 56-66 of arco-orchestration 8 (adapted where a
transactional database has no lag) and the fixes of design D7."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from services.sweeper.tests.conftest import MakeSweeper
from sqlalchemy import delete

from arco_dispatch.adapters import make_sender
from arco_dispatch.cloudtasks_provider import CloudTasksProvider
from arco_dispatch.http_provider import HttpQueueProvider
from arco_dispatch.memory_provider import MemoryProvider
from arco_dispatch.provider import EnqueueResult, Provider
from arco_dispatch.summary import CycleError
from arco_envelope import WorkerDispatchEnvelope, attempt_id, cloud_task_name
from arco_orchestration.db import Database
from arco_orchestration.delivery import claim_due_deliveries
from arco_orchestration.facts import EventKind, record_redispatch, request_dispatch
from arco_orchestration.models import DispatchOutbox, Run, Task
from arco_orchestration.states import DeliveryState, OutboxStatus, TaskState
from arco_sweeper.rules import Repair, SweepSummary, redispatch_name
from arco_testkit.clock import T0, FakeClock
from arco_testkit.dispatching import FakeCloudTasksTransport, client_with, flow_settings, names_of
from arco_testkit.facts import (
    complete,
    heartbeat,
    load_run,
    load_task,
    outbox_by_dispatch_id,
    outbox_row,
    planned,
    start,
    task_events,
    trigger,
)
from arco_testkit.values import SCOPE

MINUTE = timedelta(minutes=1)


def dispatch(
    database: Database, key: str, *, at: datetime, provider: Provider, run_id: str = "run1"
) -> str:
    """DispatchRequested and the provider's acknowledgement of ``key`` at ``at``."""
    with database.transaction() as session:
        request = request_dispatch(session, SCOPE, run_id, key, now=at)
    assert request is not None
    make_sender(flow_settings(), database, provider).enqueue_pending(request.dispatch_id, now=at)
    return request.dispatch_id


def sweep(make_sweeper: MakeSweeper, provider: Provider | None = None) -> SweepSummary:
    return make_sweeper(provider).sweeper.run()


def test_r1_a_ready_task_nobody_dispatched_gets_its_dispatch(
    database: Database, make_sweeper: MakeSweeper
) -> None:
    """56: READY for over 5 min with no dispatch -> DispatchRequested attempt 1, reason
    stuck_ready_*; READY for a short time -> nothing; a pending dispatch -> nothing."""
    trigger(database, "run1", [planned("old"), planned("pending")], now=T0 - 6 * MINUTE)
    trigger(database, "run2", [planned("young")], now=T0 - MINUTE)
    with database.transaction() as session:
        request_dispatch(session, SCOPE, "run1", "pending", now=T0 - 6 * MINUTE)
        forced = session.get(Task, ("run1", "pending"))
        assert forced is not None
        forced.state = TaskState.READY  # upstream's READY-with-outbox-row snapshot
    summary = sweep(make_sweeper)
    assert summary == SweepSummary(
        repairs_created=1,
        repairs=[Repair("create_dispatch", "dispatch:run1:old:1", "R1", "stuck_ready_360s")],
    )
    old = load_task(database, "run1", "old")
    assert (old.state, old.attempt) == (TaskState.DISPATCHED, 1)
    assert outbox_row(database, "dispatch:run1:old:1") is not None
    assert load_task(database, "run2", "young").state == TaskState.READY
    assert len(outbox_by_dispatch_id(database, "run1")) == 2


def test_r2_a_stuck_dispatch_is_resent_and_a_missing_row_recreated(
    database: Database, make_sweeper: MakeSweeper
) -> None:
    """57: DISPATCHED with its row enqueued 15 min ago -> re-sent (same dispatch id,
    attempt and attempt id; fresh token; a new provider name), reason stuck_dispatched_*;
    DISPATCHED with no row -> the PENDING row is recreated (missing_dispatch_outbox)."""
    queue = MemoryProvider()
    trigger(database, "run1", [planned("stuck"), planned("lost")], now=T0 - 20 * MINUTE)
    stuck = dispatch(database, "stuck", at=T0 - 15 * MINUTE, provider=queue)
    lost = dispatch(database, "lost", at=T0 - 15 * MINUTE, provider=queue)
    with database.transaction() as session:
        session.execute(delete(DispatchOutbox).where(DispatchOutbox.dispatch_id == lost))
    queue.drain()
    summary = sweep(make_sweeper, queue)
    assert (
        summary.repairs_created,
        summary.redispatch_attempted,
        summary.redispatch_enqueued,
        summary.errors,
    ) == (1, 1, 1, [])
    assert sorted(summary.repairs, key=lambda r: r.action) == [
        Repair("create_dispatch", lost, "R2", "missing_dispatch_outbox"),
        Repair("redispatch", stuck, "R2", "stuck_dispatched_900s"),
    ]
    [message] = queue.peek()
    assert message.name == redispatch_name(stuck, 1)
    envelope = WorkerDispatchEnvelope.from_json(message.body)
    assert (envelope.dispatch_id, envelope.attempt, envelope.attempt_id) == (
        stuck,
        1,
        attempt_id(stuck),
    )
    assert envelope.token_expires_at == T0 + timedelta(hours=1)  # minted now
    row = outbox_row(database, stuck)
    assert row is not None
    assert (row.redispatch_count, row.created_at, row.cloud_task_id) == (1, T0, message.name)
    [redispatched] = task_events(database, "run1", "stuck", EventKind.REDISPATCHED)
    assert redispatched.detail == {"dispatchId": stuck, "redispatch": 1}
    recreated = outbox_row(database, lost)
    assert recreated is not None
    assert (recreated.status, recreated.attempt_id) == (OutboxStatus.PENDING, attempt_id(lost))


def test_r2_re_sends_back_off_and_are_bounded_then_the_attempt_fails(
    database: Database, make_sweeper: MakeSweeper, clock: FakeClock
) -> None:
    """D7: re-send n waits 10 min x 2^n after the previous one; after
    ARCO_FLOW_MAX_REDISPATCHES (3) re-sends the attempt fails with dispatch_timeout and,
    attempts remaining, waits for its retry."""
    queue = MemoryProvider()
    trigger(database, "run1", [planned("stuck")], now=T0)
    stuck = dispatch(database, "stuck", at=T0, provider=queue)
    sweeper = make_sweeper(queue).sweeper
    resent_at = []
    for waited in (10, 20, 40):
        clock.advance(waited * MINUTE)
        assert sweeper.run().repairs == []  # exactly at the limit: not yet stuck
        clock.advance(timedelta(seconds=1))
        assert [r.action for r in sweeper.run().repairs] == ["redispatch"]
        resent_at.append(clock())
    row = outbox_row(database, stuck)
    assert row is not None
    assert row.redispatch_count == 3
    assert len({m.name for m in queue.peek()}) == 4  # the original and three repairs
    clock.advance(80 * MINUTE + timedelta(seconds=1))
    summary = sweeper.run()
    assert summary.repairs == [Repair("fail_attempt", stuck, "R2", "dispatch_timeout")]
    assert summary.redispatch_exhausted == 1
    task = load_task(database, "run1", "stuck")
    assert (task.state, task.error_message) == (TaskState.RETRY_WAIT, "dispatch_timeout")
    assert outbox_row(database, stuck) is None
    assert resent_at[1] - resent_at[0] == 20 * MINUTE + timedelta(seconds=1)


def test_r3_a_due_retry_is_bootstrapped(database: Database, make_sweeper: MakeSweeper) -> None:
    """58: RETRY_WAIT past its deadline -> attempt + 1 (retry_wait_bootstrap); before the
    deadline -> nothing; no deadline -> due at once."""
    queue = MemoryProvider()
    trigger(database, "run1", [planned("due"), planned("early"), planned("legacy")], now=T0)
    for key, failed_at in (("due", T0 - MINUTE), ("early", T0), ("legacy", T0)):
        dispatch(database, key, at=failed_at, provider=queue)
        start(database, "run1", key, now=failed_at)
        complete(database, "run1", key, now=failed_at, outcome="FAILED")
    with database.transaction() as session:
        legacy = session.get(Task, ("run1", "legacy"))
        assert legacy is not None
        legacy.retry_not_before = None
    summary = sweep(make_sweeper, queue)
    assert sorted(summary.repairs, key=lambda r: r.id) == [
        Repair("create_dispatch", "dispatch:run1:due:2", "R3", "retry_wait_bootstrap"),
        Repair("create_dispatch", "dispatch:run1:legacy:2", "R3", "retry_wait_bootstrap"),
    ]
    assert load_task(database, "run1", "early").state == TaskState.RETRY_WAIT


def test_r4_a_silent_running_task_is_reaped_after_timeout_plus_grace(
    database: Database, make_sweeper: MakeSweeper
) -> None:
    """59 + 60 + 64: silent for 331 s with a 300 s timeout -> TaskFinished FAILED by
    anti-entropy, heartbeat_timeout_anti_entropy, retryable; 330 s and 329 s -> nothing.
    Upstream's lag gate (scenario 60's stale watermark) has no counterpart: nothing is
    ever skipped for lag."""
    queue = MemoryProvider()
    trigger(database, "run1", [planned("zombie"), planned("edge"), planned("alive")], now=T0)
    for key, silent in (("zombie", 331), ("edge", 330), ("alive", 329)):
        dispatch(database, key, at=T0 - timedelta(seconds=400), provider=queue)
        start(database, "run1", key, now=T0 - timedelta(seconds=silent))
    summary = sweep(make_sweeper, queue)
    assert summary == SweepSummary(
        repairs_created=1,
        repairs=[
            Repair("fail_attempt", "dispatch:run1:zombie:1", "R4", "heartbeat_timeout_anti_entropy")
        ],
    )
    assert summary.skipped_due_to_lag == 0
    zombie = load_task(database, "run1", "zombie")
    assert (zombie.state, zombie.error_message) == (
        TaskState.RETRY_WAIT,
        "heartbeat_timeout_anti_entropy",
    )
    assert zombie.retry_not_before == T0 + timedelta(seconds=30)
    [reaped] = task_events(database, "run1", "zombie", EventKind.REAPED)
    assert reaped.detail is not None
    assert (
        reaped.detail["outcome"],
        reaped.detail["workerId"],
        reaped.detail["errorMessage"],
    ) == ("FAILED", "anti-entropy", "heartbeat_timeout_anti_entropy")
    for key in ("edge", "alive"):
        assert load_task(database, "run1", key).state == TaskState.RUNNING


def test_the_failures_a_sweep_records_retry_after_the_configured_backoff(
    database: Database, make_sweeper: MakeSweeper
) -> None:
    """ARCO_RETRY_BACKOFF_BASE_SECS reaches the facts as an argument: an R4 reap and an R2
    dispatch_timeout both wait the sweeper's configured base, not upstream's 30 s."""
    queue = MemoryProvider()
    trigger(database, "run1", [planned("zombie"), planned("stuck")], now=T0 - 3 * MINUTE)
    dispatch(database, "zombie", at=T0 - 3 * MINUTE, provider=queue)
    start(database, "run1", "zombie", now=T0 - timedelta(seconds=331))
    dispatch(database, "stuck", at=T0 - 3 * MINUTE, provider=queue)
    summary = make_sweeper(
        queue,
        retry_backoff_base_secs=5,
        stuck_dispatched_secs=60,
        max_redispatches=0,
    ).sweeper.run()
    assert sorted((r.rule, r.reason) for r in summary.repairs) == [
        ("R2", "dispatch_timeout"),
        ("R4", "heartbeat_timeout_anti_entropy"),
    ]
    for key in ("zombie", "stuck"):
        task = load_task(database, "run1", key)
        assert (task.state, task.retry_not_before) == (
            TaskState.RETRY_WAIT,
            T0 + timedelta(seconds=5),
        )


def test_redrive_and_reaper_run_in_one_sweep_and_healthy_tasks_are_left_alone(
    database: Database, make_sweeper: MakeSweeper
) -> None:
    """61 + 62 (adapted): with no lag, the R1 re-drive and the reaper both run; terminal
    tasks and RUNNING tasks that heartbeat are ignored."""
    queue = MemoryProvider()
    trigger(
        database,
        "run1",
        [planned("ready"), planned("zombie"), planned("beating"), planned("done")],
        now=T0 - 10 * MINUTE,
    )
    for key in ("zombie", "beating", "done"):
        dispatch(database, key, at=T0 - 10 * MINUTE, provider=queue)
        start(database, "run1", key, now=T0 - 10 * MINUTE)
    heartbeat(database, "run1", "beating", now=T0 - timedelta(seconds=10))
    complete(database, "run1", "done", now=T0 - 9 * MINUTE)
    summary = sweep(make_sweeper, queue)
    assert sorted((r.rule, r.id) for r in summary.repairs) == [
        ("R1", "dispatch:run1:ready:1"),
        ("R4", "dispatch:run1:zombie:1"),
    ]
    assert summary.skipped_due_to_lag == 0
    assert load_task(database, "run1", "beating").state == TaskState.RUNNING
    assert load_task(database, "run1", "done").state == TaskState.SUCCEEDED


def test_redispatch_names_are_unique_per_repair_and_not_the_original() -> None:
    """65: deterministic per (dispatch, repair number), so two sweepers re-sending the same
    row at once collapse into one provider message."""
    original = "dispatch:run1:extract:1"
    names = {redispatch_name(original, n) for n in (1, 2, 3)}
    assert len(names) == 3
    assert cloud_task_name(original) not in names
    assert redispatch_name(original, 1) == redispatch_name(original, 1)
    assert all(name.startswith("d_") and len(name) == 28 for name in names)


def test_an_exhausted_attempt_fails_for_good(database: Database, make_sweeper: MakeSweeper) -> None:
    """66: a reaped attempt with no attempts left (max 1) is FAILED with no deadline."""
    queue = MemoryProvider()
    trigger(database, "run1", [planned("once", max_attempts=1)], now=T0)
    dispatch(database, "once", at=T0 - 10 * MINUTE, provider=queue)
    start(database, "run1", "once", now=T0 - 10 * MINUTE)
    sweep(make_sweeper, queue)
    task = load_task(database, "run1", "once")
    assert (task.state, task.retry_not_before) == (TaskState.FAILED, None)
    assert load_run(database, "run1").state == "FAILED"


def test_unstarted_tasks_of_a_cancel_requested_run_are_cancelled(
    database: Database, make_sweeper: MakeSweeper
) -> None:
    """D7 (upstream 4.6 gap): a RETRY_WAIT or DISPATCHED task of a cancel-requested run is
    CANCELLED instead of being dispatched forever; RUNNING tasks are left to shouldCancel."""
    queue = MemoryProvider()
    trigger(database, "run1", [planned("waiting"), planned("sent"), planned("running")], now=T0)
    dispatch(database, "waiting", at=T0, provider=queue)
    start(database, "run1", "waiting", now=T0)
    complete(database, "run1", "waiting", now=T0, outcome="FAILED")
    dispatch(database, "sent", at=T0, provider=queue)
    dispatch(database, "running", at=T0, provider=queue)
    start(database, "run1", "running", now=T0)
    with database.transaction() as session:  # the legacy state upstream leaves behind
        run = session.get(Run, "run1")
        assert run is not None
        run.cancel_requested = True
    summary = sweep(make_sweeper, queue)
    assert summary.tasks_cancelled == 2
    assert sorted(r.id for r in summary.repairs) == ["run1:sent", "run1:waiting"]
    assert load_task(database, "run1", "waiting").state == TaskState.CANCELLED
    assert load_task(database, "run1", "sent").state == TaskState.CANCELLED
    assert load_task(database, "run1", "running").state == TaskState.RUNNING


class FailingFor:
    """A provider that raises for one dispatch and accepts the others."""

    kind = "memory"
    push_delivery = False

    def __init__(self, bad_name: str) -> None:
        self.bad_name = bad_name
        self.inner = MemoryProvider()

    def enqueue(
        self,
        name: str,
        target: str,
        body: bytes,
        headers: Mapping[str, str],
        deadline: timedelta,
    ) -> EnqueueResult:
        if name == self.bad_name:
            raise RuntimeError("provider exploded")
        return self.inner.enqueue(name, target, body, headers, deadline)

    def close(self) -> None:
        """Nothing to close."""


def test_one_bad_row_is_reported_and_the_sweep_goes_on(
    database: Database, make_sweeper: MakeSweeper
) -> None:
    """D7: per-item errors never abort the sweep."""
    queue = MemoryProvider()
    trigger(database, "run1", [planned("bad"), planned("good")], now=T0)
    bad = dispatch(database, "bad", at=T0 - 15 * MINUTE, provider=queue)
    good = dispatch(database, "good", at=T0 - 15 * MINUTE, provider=queue)
    provider = FailingFor(redispatch_name(bad, 1))
    summary = sweep(make_sweeper, provider)
    assert summary.errors == [
        CycleError("repair_failed", "run1:bad", "RuntimeError: provider exploded")
    ]
    assert [r.id for r in summary.repairs] == [good]
    assert [m.name for m in provider.inner.peek()] == [redispatch_name(good, 1)]


def test_cloud_tasks_re_sends_under_the_repair_name(
    database: Database, make_sweeper: MakeSweeper
) -> None:
    transport = FakeCloudTasksTransport()
    provider = CloudTasksProvider(client_with(transport), queue="projects/p/locations/l/queues/q")
    trigger(database, "run1", [planned("stuck")], now=T0)
    stuck = dispatch(database, "stuck", at=T0 - 11 * MINUTE, provider=provider)
    summary = sweep(make_sweeper, provider)
    assert (summary.redispatch_attempted, summary.redispatch_enqueued) == (1, 1)
    assert names_of(transport.requests) == [cloud_task_name(stuck), redispatch_name(stuck, 1)]


def test_the_push_queue_re_queues_a_delivered_but_never_started_attempt(
    database: Database, make_sweeper: MakeSweeper
) -> None:
    """With the http provider a re-send queues the row for delivery again, unless a
    delivery of it is in flight."""
    provider = HttpQueueProvider()
    trigger(database, "run1", [planned("delivered"), planned("inflight")], now=T0)
    delivered = dispatch(database, "delivered", at=T0 - 11 * MINUTE, provider=provider)
    inflight = dispatch(database, "inflight", at=T0 - 11 * MINUTE, provider=provider)
    with database.transaction() as session:
        row = session.get(DispatchOutbox, delivered)
        assert row is not None
        row.delivery_state = DeliveryState.DELIVERED
        row.next_delivery_at = None
        row.delivery_attempts = 1
    with database.transaction() as session:
        [claim] = claim_due_deliveries(
            session, SCOPE, owner="busy", now=T0 - MINUTE, lease=5 * MINUTE, limit=5
        )
    assert claim.dispatch.dispatch_id == inflight
    summary = sweep(make_sweeper, provider)
    assert [r.id for r in summary.repairs] == [delivered]
    row = outbox_row(database, delivered)
    assert row is not None
    assert (row.delivery_state, row.next_delivery_at, row.delivery_attempts) == (
        DeliveryState.QUEUED,
        T0,
        0,
    )
    assert row.redispatch_count == 1
    busy = outbox_row(database, inflight)
    assert busy is not None
    assert (busy.lease_owner is not None, busy.redispatch_count) == (True, 0)


def test_a_re_send_is_recorded_once_when_two_sweepers_race(
    database: Database,
) -> None:
    """The second sweeper's record finds the count moved on and changes nothing."""
    queue = MemoryProvider()
    trigger(database, "run1", [planned("stuck")], now=T0)
    stuck = dispatch(database, "stuck", at=T0 - 11 * MINUTE, provider=queue)

    def record() -> bool:
        with database.transaction() as session:
            return record_redispatch(
                session,
                SCOPE,
                "run1",
                stuck,
                expected_redispatch_count=0,
                cloud_task_id=redispatch_name(stuck, 1),
                envelope_keys=[],
                push_delivery=False,
                deduplicated=False,
                now=T0,
            )

    assert record()
    assert not record()
    row = outbox_row(database, stuck)
    assert row is not None
    assert row.redispatch_count == 1
