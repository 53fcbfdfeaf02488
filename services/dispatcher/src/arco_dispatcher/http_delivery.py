"""The http provider's delivery pump: POSTs queued outbox rows to the worker.

- Claims due rows with a lease (``arco_orchestration.delivery``), only as many as it has
  free delivery slots (``ARCO_FLOW_DISPATCH_CONCURRENCY``, narrowed by backpressure below).
- Each delivery is an asyncio task with its own deadline (``ARCO_FLOW_TASK_TIMEOUT_SECS``),
  so a synchronous worker holding its request until the task ends takes one slot and
  delays nothing else.
- No transaction is open while a request is in flight: the claim and the outcome are two
  short transactions, run in worker threads. Successful outcomes that arrive while one is
  being recorded are recorded together in the next transaction (one per batch, not per row).
- The envelope is rendered at delivery time with a freshly minted token (never stored).
- Failures are retried with exponential backoff and jitter, or after the worker's
  ``Retry-After``; after ``ARCO_FLOW_DELIVERY_MAX_ATTEMPTS`` the row is given up and left
  to the sweeper's bounded re-dispatch.

Leases. A claim holds its row for a short lease (``ARCO_FLOW_DELIVERY_LEASE_GRACE_SECS``,
at least :data:`MIN_LEASE`), and while the pump runs it renews the leases of all its
deliveries in flight every third of the lease, in one statement. A delivery may thus
last its whole deadline, yet the rows of a pump that dies (SIGKILL, lost host) come due
again about one lease later, for any pump. A delivery whose lease was not renewed (its
row consumed by ``/started``, or taken over after the lease ran out) carries on: as
before, its outcome is recorded only if the claim still holds the row, so a late answer
changes nothing. A renewal that fails (database down) is logged and tried again at the
next interval; it never stops the pump.

Backpressure. A worker that is full answers 429 (its ``Retry-After`` says when to try
again). That answer is about the worker, not about the row: the row is queued again
without spending one of its ``ARCO_FLOW_DELIVERY_MAX_ATTEMPTS`` (a worker that stays busy
for good is still bounded by the sweeper's re-dispatch limit), and the pump learns how
many tasks the worker takes.

The reference worker (and upstream's) answers 202 once its ``/started`` is acknowledged
and keeps a handler slot until the task's attempt ends, so the pump's in-flight requests
say little about the worker's load. The pump therefore also counts the attempts it
delivered that may still hold a slot (*held*: the task is still on that attempt and
DISPATCHED or RUNNING, which only the database knows), and after a 429 it keeps in flight
plus held within a learned *capacity*, as TCP and queue consumers do:

- a 429 while the pump holds attempts: the capacity becomes the number held (re-read from
  the database first) plus the deliveries still waiting for their answer (the worker takes
  a slot for each one it accepts before it answers), and the row is due again at once; the
  pump delivers it as soon as one of its held attempts ends (it re-reads them, about every
  :data:`MIN_HELD_CHECK` at first, less often while none ends);
- a 429 while it holds none (the worker is full with others' work): the row waits the
  worker's ``Retry-After`` (``ARCO_FLOW_DELIVERY_BACKOFF_MIN_MS`` when absent) and the pump
  stops claiming for that long (at most :data:`MAX_BUSY_PAUSE`), then starts again at a
  capacity of one that grows by one per 2xx, up to the last known capacity;
- while the capacity holds the pump back, it grows by one each :data:`PROBE_EVERY`, so the
  pump finds slots that were added (more replicas) or freed without the database knowing
  (a worker that lost its tasks: their attempts stay DISPATCHED until the sweeper acts).

Before this, a 429 paused the pump for the whole ``Retry-After`` (one second at least), so
a worker with four slots ran at most four short tasks a second. Other failures (5xx,
timeouts) leave the capacity alone: they are the row's backoff. One pump sees one target;
with several worker replicas behind it, the capacity is theirs together.

This is the home-made part of the stack's dispatch. On GCP the ``cloudtasks`` provider
replaces it: Cloud Tasks then owns delivery, retries, rate limits and deadlines, and the
outbox row only records the enqueue.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from http import HTTPStatus

import aiohttp
import httpx
import structlog
from yarl import URL

from arco_dispatch.backoff import delivery_backoff, retry_after
from arco_dispatch.clock import Clock, utc_now, wait_event
from arco_dispatch.message import EnvelopeFactory, MissingTaskRow, envelope_body
from arco_dispatch.settings import FlowSettings
from arco_orchestration.db import Database
from arco_orchestration.delivery import (
    AttemptRef,
    Delivered,
    DeliveryClaim,
    claim_due_deliveries,
    next_delivery_due,
    open_attempts,
    record_delivered,
    record_deliveries,
    record_delivery_failure,
    release_claim,
    renew_leases,
)
from arco_orchestration.scope import Scope

log = structlog.get_logger("arco.dispatch.delivery")

CONNECT_TIMEOUT_SECS = 10.0
KEEPALIVE_SECS = 4.0
# Shortest pause when rows are due but none could be claimed (another pump holds them).
MIN_IDLE_WAIT_SECS = 0.05
# Shortest lease, whatever the grace setting says (0 is allowed there): a renewal must
# commit within two thirds of it, even on a loaded database, or another pump may deliver
# the row a second time while this one is still waiting for the worker.
MIN_LEASE = timedelta(seconds=5)
# Longest claiming pause after a 429: the refused row honours a longer Retry-After, but
# the pump probes the worker again with one delivery at least this often.
MAX_BUSY_PAUSE = timedelta(seconds=30)
# How soon a pump held back by its capacity first re-reads whether its held attempts ended
# (the wait doubles, up to the poll interval, while none does): a short task frees its slot
# a few milliseconds after it starts.
MIN_HELD_CHECK = timedelta(milliseconds=10)
# While the capacity holds the pump back, it grows by one this often (module doc).
PROBE_EVERY = timedelta(seconds=1)


@dataclass(frozen=True)
class DeliveryPolicy:
    """The pump's knobs (defaults are the settings' defaults)."""

    concurrency: int = 64
    deadline: timedelta = timedelta(seconds=1800)
    lease_grace: timedelta = timedelta(seconds=30)
    max_attempts: int = 10
    backoff_min: timedelta = timedelta(seconds=1)
    backoff_max: timedelta = timedelta(seconds=300)
    poll: timedelta = timedelta(seconds=1)

    @property
    def lease(self) -> timedelta:
        """How long a claim holds its row unless renewed (see the module doc)."""
        return max(self.lease_grace, MIN_LEASE)

    @property
    def renew_every(self) -> timedelta:
        """How often the leases of deliveries in flight are renewed: two renewals may
        fail before a lease runs out."""
        return self.lease / 3

    @classmethod
    def from_settings(cls, settings: FlowSettings, *, poll: timedelta) -> DeliveryPolicy:
        """The policy of ``settings``; ``poll`` is the longest idle wait."""
        return cls(
            concurrency=settings.dispatch_concurrency,
            deadline=settings.task_timeout,
            lease_grace=timedelta(seconds=settings.delivery_lease_grace_secs),
            max_attempts=settings.delivery_max_attempts,
            backoff_min=timedelta(milliseconds=settings.delivery_backoff_min_ms),
            backoff_max=timedelta(seconds=settings.delivery_backoff_max_secs),
            poll=poll,
        )


class DeliveryOutcome(StrEnum):
    """How one delivery ended."""

    DELIVERED = "delivered"  # the worker answered 2xx
    BUSY = "busy"  # the worker answered 429; queued again, no attempt spent
    RETRY = "retry"  # failed; queued again
    GAVE_UP = "gave_up"  # failed for the last time
    SUPERSEDED = "superseded"  # failed, but the claim no longer held the row (consumed)
    RELEASED = "released"  # the pump stopped mid-delivery and gave the row back


@dataclass(frozen=True)
class _Answer:
    status: int | None
    error: str | None = None
    retry_after: timedelta | None = None
    final: bool = False  # retrying cannot help

    @property
    def ok(self) -> bool:
        """The worker took the dispatch (2xx)."""
        return self.status is not None and 200 <= self.status < 300


Observer = Callable[[DeliveryOutcome, DeliveryClaim], None]


def default_owner() -> str:
    """A lease owner id unique to this process."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class DeliveryPump:
    """Delivers the queued rows of one scope to one target (see the module doc). Run it
    with :meth:`run` in the service's event loop; tests drive :meth:`fill` and
    :meth:`drain`."""

    def __init__(
        self,
        db: Database,
        scope: Scope,
        envelopes: EnvelopeFactory,
        *,
        target: str,
        headers: Mapping[str, str],
        policy: DeliveryPolicy,
        clock: Clock = utc_now,
        owner: str | None = None,
        rng: random.Random | None = None,
        observe: Observer | None = None,
    ) -> None:
        self._db = db
        self._scope = scope
        self._envelopes = envelopes
        self._target = URL(target)  # parsed once, not at every delivery
        self._headers = dict(headers)
        self.policy = policy
        self._clock = clock
        self.owner = owner or default_owner()
        # Jitter only spreads retries out; it needs no cryptographic randomness.
        self._rng = rng or random.Random()  # noqa: S311
        self._observe = observe
        # Opened in the event loop at the first delivery (an aiohttp session belongs to one).
        self._session: aiohttp.ClientSession | None = None
        self._in_flight: dict[asyncio.Task[DeliveryOutcome], DeliveryClaim] = {}
        # Successful deliveries waiting to be recorded, and the task recording them.
        self._delivered: list[tuple[Delivered, asyncio.Future[None]]] = []
        self._recorder: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        # Backpressure (module doc): attempts delivered that may still hold a worker slot,
        # the capacity learned from 429s (None: no 429 yet), the capacity to grow back to
        # one per 2xx after a pause, and no claims before _busy_until (a 429, none held).
        self._held: set[AttemptRef] = set()
        self._unanswered = 0  # deliveries in flight still waiting for the worker's answer
        self._checking: asyncio.Future[int] | None = None
        self._capacity: int | None = None
        self._regrow_to = 0
        self._probe_at: datetime | None = None
        self._held_check = MIN_HELD_CHECK
        self._busy_until: datetime | None = None
        # Whether due rows may be left unclaimed: the last pass had no room for all of them.
        self._backlog = True

    @property
    def in_flight(self) -> int:
        """Deliveries in progress."""
        return len(self._in_flight)

    @property
    def limit(self) -> int:
        """Deliveries allowed outstanding now (in flight plus held): the capacity learned
        from 429s, else the concurrency."""
        return self.policy.concurrency if self._capacity is None else self._capacity

    @property
    def held(self) -> int:
        """Delivered attempts that may still hold a worker slot (as last read)."""
        return len(self._held)

    @property
    def busy_until(self) -> datetime | None:
        """No claims before this time (a worker answered 429), if set."""
        return self._busy_until

    def wake(self) -> None:
        """Look for due rows now; safe to call from any thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        """Deliver until cancelled, renewing the leases of deliveries in flight meanwhile.
        A pass that fails (the database down or restarting) is logged and retried after one
        poll interval: the pump never stops on its own."""
        renewer = asyncio.create_task(self._renew_periodically())
        try:
            while True:
                self._wake.clear()
                try:
                    claimed = await self.fill()
                    # A pass that found fewer due rows than it had room for leaves none due
                    # behind: wait for a wake-up or the next due row instead of claiming again.
                    if not claimed or not self._backlog:
                        await self._idle()
                except Exception:  # logged; the next pass may succeed (database back)
                    log.exception("pump_pass_failed")
                    await asyncio.sleep(self.policy.poll.total_seconds())
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)

    async def fill(self) -> int:
        """Claim due rows for every free slot and start delivering them; returns how many."""
        self._loop = asyncio.get_running_loop()
        self._probe()
        free = self._free()
        if free <= 0 or self._closing or self._paused():
            self._backlog = True  # rows may be waiting for a slot or for the pause to end
            return 0
        claims = await asyncio.to_thread(self._claim, free)
        # Every free slot taken: more rows may be due.
        self._backlog = len(claims) >= free
        for claim in claims:
            self._unanswered += 1
            task = asyncio.create_task(self._deliver(claim))
            self._in_flight[task] = claim
            task.add_done_callback(self._finished)
        return len(claims)

    async def renew(self) -> int:
        """Renew the leases of every delivery in flight, in one statement; returns how many
        still held their rows. The others go on (see the module doc)."""
        claims = list(self._in_flight.values())
        if not claims:
            return 0
        renewed = await asyncio.to_thread(self._renew, claims)
        if len(renewed) < len(claims):
            log.debug("leases_not_renewed", count=len(claims) - len(renewed))
        return len(renewed)

    async def drain(self) -> None:
        """Wait until every delivery in flight has ended."""
        while self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def close(self, *, grace: float) -> None:
        """Stop claiming; give deliveries in flight ``grace`` seconds, then cancel the rest
        and give their rows back at once. Closes the HTTP client."""
        self._closing = True
        if self._in_flight:
            _, pending = await asyncio.wait(list(self._in_flight), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._recorder is not None:  # outcomes already answered are still recorded
            await asyncio.gather(self._recorder, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def _finished(self, task: asyncio.Task[DeliveryOutcome]) -> None:
        self._in_flight.pop(task, None)
        delivered = (
            not task.cancelled()
            and task.exception() is None
            and task.result() is DeliveryOutcome.DELIVERED
        )
        # A freed slot is worth a pass only when rows may be waiting for one; a delivery
        # that did not succeed has changed when its row is due (or the pump's pace).
        # Otherwise a pass would find nothing and cost two transactions per delivery.
        if self._backlog or not delivered:
            self._wake.set()

    async def _renew_periodically(self) -> None:
        interval = self.policy.renew_every.total_seconds()
        while True:
            await asyncio.sleep(interval)
            try:
                await self.renew()
            except Exception:  # logged; the lease outlives two failed renewals
                log.exception("lease_renewal_failed", in_flight=len(self._in_flight))
            try:  # forget ended attempts even while the capacity does not hold the pump back
                await self.release_ended()
            except Exception:  # logged; tried again at the next interval
                log.exception("held_check_failed", held=len(self._held))

    def _paused(self) -> bool:
        return self._busy_until is not None and self._clock() < self._busy_until

    async def release_ended(self) -> int:
        """Re-read which held attempts may still hold a worker slot; returns how many
        ended since the last read. Callers that ask while a read is under way share it
        (a burst of 429s makes one query, not one each)."""
        if self._checking is None or self._checking.done():
            self._checking = asyncio.ensure_future(self._release_ended())
        return await asyncio.shield(self._checking)

    async def _release_ended(self) -> int:
        if not self._held:
            return 0
        held = set(self._held)
        still_open = await asyncio.to_thread(self._open_attempts, held)
        ended = held - still_open
        self._held -= ended
        return len(ended)

    def _free(self) -> int:
        """Deliveries that may start now: within the concurrency, and within the capacity
        once a 429 taught one."""
        free = self.policy.concurrency - len(self._in_flight)
        if self._capacity is None:
            return free
        return min(free, self._capacity - self._unanswered - len(self._held))

    def _probe(self) -> None:
        """One slot more each :data:`PROBE_EVERY` while the capacity holds the pump back."""
        now = self._clock()
        if self._capacity is None or self._probe_at is None or now < self._probe_at:
            return
        if self._free() <= 0:
            self._capacity += 1
            self._probe_at = now + PROBE_EVERY

    def _capacity_bound(self) -> bool:
        return self._capacity is not None and self._free() <= 0 < len(self._held)

    async def _adapt(self, answer: _Answer) -> timedelta | None:
        """Learn from the worker's answer (module doc); for a 429, returns how long the
        refused row waits."""
        if answer.status == HTTPStatus.TOO_MANY_REQUESTS:
            await self.release_ended()
            now = self._clock()
            self._probe_at = now + PROBE_EVERY
            if self._held:
                # Full with our own attempts: those it holds and the deliveries still waiting
                # for its answer (it takes a slot for each one it accepts before it answers).
                # Deliver again as soon as one of them ends.
                self._capacity = self._regrow_to = len(self._held) + self._unanswered
                return timedelta(0)
            self._regrow_to = max(self._regrow_to, self._capacity or self.policy.concurrency)
            self._capacity = 1
            pause = (
                answer.retry_after if answer.retry_after is not None else self.policy.backoff_min
            )
            until = now + min(pause, MAX_BUSY_PAUSE)
            if self._busy_until is None or until > self._busy_until:
                self._busy_until = until
            return pause
        if answer.ok and self._capacity is not None and self._capacity < self._regrow_to:
            self._capacity += 1
        return None

    async def _idle(self) -> None:
        timeout = self.policy.poll.total_seconds()
        if self._paused() and self._busy_until is not None:
            # Nothing may be claimed before the pause ends: no need to look for due rows.
            until_resume = (self._busy_until - self._clock()).total_seconds()
            timeout = min(timeout, max(until_resume, MIN_IDLE_WAIT_SECS))
        elif self._backlog and self._capacity_bound():
            # Rows wait for a worker slot, and ours free up when held attempts end, which
            # only the database tells: look again soon, then less often while none ends.
            woken = await wait_event(self._wake, self._held_check.total_seconds())
            if await self.release_ended():
                self._held_check = MIN_HELD_CHECK
            elif not woken:
                self._held_check = min(self._held_check * 2, self.policy.poll)
            return
        elif len(self._in_flight) < self.limit:
            due = await asyncio.to_thread(self._next_due)
            if due is not None:
                until_due = (due - self._clock()).total_seconds()
                timeout = min(timeout, max(until_due, MIN_IDLE_WAIT_SECS))
        await wait_event(self._wake, timeout)

    # Claims, held-attempt reads and due-time reads are Core statements: a bare connection
    # (Database.connection) spares each the ORM session's cost.
    def _claim(self, limit: int) -> list[DeliveryClaim]:
        with self._db.connection() as connection:
            return claim_due_deliveries(
                connection,
                self._scope,
                owner=self.owner,
                now=self._clock(),
                lease=self.policy.lease,
                limit=limit,
            )

    def _renew(self, claims: list[DeliveryClaim]) -> set[str]:
        with self._db.transaction() as session:
            return renew_leases(
                session, self._scope, claims, now=self._clock(), lease=self.policy.lease
            )

    def _open_attempts(self, attempts: set[AttemptRef]) -> set[AttemptRef]:
        with self._db.connection() as connection:
            return open_attempts(connection, self._scope, attempts)

    def _next_due(self) -> datetime | None:
        with self._db.connection() as connection:
            return next_delivery_due(connection, self._scope)

    async def _deliver(self, claim: DeliveryClaim) -> DeliveryOutcome:
        try:
            answer = await self._post(claim)
        except asyncio.CancelledError:
            await asyncio.to_thread(self._release, claim)
            self._report(DeliveryOutcome.RELEASED, claim, None)
            raise
        finally:
            self._unanswered -= 1
        if answer.ok:
            dispatch = claim.dispatch
            self._held.add((dispatch.run_id, dispatch.task_key, dispatch.attempt))
        busy_wait = await self._adapt(answer)
        if answer.status is not None and answer.ok:
            await self._record_delivered(Delivered(claim, answer.status))
            outcome = DeliveryOutcome.DELIVERED
        else:
            outcome = await asyncio.to_thread(self._record, claim, answer, busy_wait)
        self._report(outcome, claim, answer)
        return outcome

    async def _record_delivered(self, delivered: Delivered) -> None:
        """Record a 2xx answer with the others that arrive while a batch is being recorded:
        at low load that is one row at once, under load one transaction per batch."""
        done = asyncio.get_running_loop().create_future()
        self._delivered.append((delivered, done))
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._record_batches())
        await done

    async def _record_batches(self) -> None:
        while self._delivered:
            batch, self._delivered = self._delivered, []
            try:
                await asyncio.to_thread(self._record_all, [item for item, _ in batch])
            except Exception as exc:  # noqa: BLE001 - handed to each waiting delivery
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)

    def _record_all(self, batch: list[Delivered]) -> None:
        """One transaction for the batch; when it fails, one per row, as :meth:`_record`
        (a claim that no longer holds its row changes nothing either way)."""
        try:
            with self._db.transaction() as session:
                record_deliveries(session, self._scope, batch, now=self._clock())
            return
        except Exception as exc:
            if len(batch) == 1:
                raise
            log.warning("delivered_batch_failed", rows=len(batch), error=str(exc))
        for item in batch:
            self._record(item.claim, _Answer(status=item.status))

    async def _post(self, claim: DeliveryClaim) -> _Answer:
        try:
            envelope = self._envelopes.build(claim.dispatch, now=self._clock())
        except MissingTaskRow as exc:
            return _Answer(status=None, error=str(exc), final=True)
        deadline = self.policy.deadline.total_seconds()
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=min(deadline, CONNECT_TIMEOUT_SECS), sock_read=deadline
        )
        try:
            async with (
                asyncio.timeout(deadline),
                self._http().post(
                    self._target,
                    data=envelope_body(envelope),
                    headers=self._headers,
                    timeout=timeout,
                ) as response,
            ):
                # Read to the end, so that the connection can serve the next delivery.
                await response.read()
        except TimeoutError:  # also aiohttp's connect and read timeouts
            return _Answer(status=None, error=f"no answer within the {deadline:g}s deadline")
        except aiohttp.ClientError as exc:
            return _Answer(status=None, error=f"{type(exc).__name__}: {exc}")
        if 200 <= response.status < 300:
            return _Answer(status=response.status)
        return _Answer(
            status=response.status,
            error=f"worker answered HTTP {response.status}",
            retry_after=retry_after(response.headers.get("Retry-After"), now=self._clock()),
        )

    def _http(self) -> aiohttp.ClientSession:
        """The pump's HTTP session: up to ``concurrency`` connections to the worker.

        aiohttp rather than httpx: httpcore's pool walks all of its connections at every
        request and every response, and its anyio layer checks the current task several
        times per request, which cost more CPU than the rest of a delivery. aiohttp's pool
        hands out a connection without looking at the others."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self.policy.concurrency,
                    # Below uvicorn's 5 s keep-alive: a connection is seldom reused just as
                    # the worker closes it (that delivery would fail and be retried).
                    keepalive_timeout=KEEPALIVE_SECS,
                    # The CA bundle httpx verifies with (certifi), for an https target.
                    ssl=httpx.create_ssl_context(trust_env=False),
                ),
                # Worker URLs are internal and must not go through a proxy.
                trust_env=False,
            )
        return self._session

    def _record(
        self, claim: DeliveryClaim, answer: _Answer, busy_wait: timedelta | None = None
    ) -> DeliveryOutcome:
        now = self._clock()
        with self._db.transaction() as session:
            if answer.status is not None and answer.ok:
                record_delivered(session, self._scope, claim, now=now, status=answer.status)
                # Not holding the row any more is fine here: the worker's /started
                # callback usually consumes the attempt before the worker answers.
                return DeliveryOutcome.DELIVERED
            if answer.status == HTTPStatus.TOO_MANY_REQUESTS and not answer.final:
                held = record_delivery_failure(
                    session,
                    self._scope,
                    claim,
                    status=answer.status,
                    error=answer.error or "worker busy",
                    retry_at=now + (busy_wait or timedelta(0)),
                    counted=False,
                )
                return DeliveryOutcome.BUSY if held else DeliveryOutcome.SUPERSEDED
            retry_at = None
            if not answer.final and claim.delivery_attempt < self.policy.max_attempts:
                pause = answer.retry_after
                if pause is None:
                    pause = delivery_backoff(
                        claim.delivery_attempt,
                        minimum=self.policy.backoff_min,
                        maximum=self.policy.backoff_max,
                        rng=self._rng,
                    )
                retry_at = now + pause
            held = record_delivery_failure(
                session,
                self._scope,
                claim,
                status=answer.status,
                error=answer.error or "delivery failed",
                retry_at=retry_at,
            )
        if not held:
            return DeliveryOutcome.SUPERSEDED
        return DeliveryOutcome.RETRY if retry_at is not None else DeliveryOutcome.GAVE_UP

    def _release(self, claim: DeliveryClaim) -> None:
        with self._db.transaction() as session:
            release_claim(session, self._scope, claim, now=self._clock())

    def _report(
        self, outcome: DeliveryOutcome, claim: DeliveryClaim, answer: _Answer | None
    ) -> None:
        dispatch = claim.dispatch
        log.info(
            "delivery",
            outcome=outcome.value,
            dispatch_id=dispatch.dispatch_id,
            run_id=dispatch.run_id,
            task_key=dispatch.task_key,
            attempt=dispatch.attempt,
            delivery_attempt=claim.delivery_attempt,
            status=answer.status if answer else None,
            error=answer.error if answer else None,
        )
        if self._observe is not None:
            self._observe(outcome, claim)
