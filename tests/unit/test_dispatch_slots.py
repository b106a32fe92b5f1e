"""The dispatch gate's slot transaction and order, with the real repository, slots, fair share and
submit service against moto in-process (the template's JobsTable and ControlTable); only fal is a
stand-in that records what it was sent, or dies mid-dispatch like a SIGKILLed function.
"""

from __future__ import annotations

import threading
import zlib
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from moto import mock_aws

from pika_pipeline.config.submit import SubmitServiceSettings
from pika_pipeline.dispatch.control import DISPATCH_ITEM, PauseSwitch
from pika_pipeline.dispatch.dispatcher import OTHERS_FILL_SECONDS, Dispatcher
from pika_pipeline.dispatch.order import FairShare, WaitingJobs, rank_of
from pika_pipeline.dispatch.slots import JobLost, Slot, SlotLost, Slots
from pika_pipeline.jobs.events import JobEvents
from pika_pipeline.jobs.identity import job_id_for
from pika_pipeline.jobs.repository import JobRepository
from pika_pipeline.jobs.statuses import JobStatus
from pika_pipeline.observability import metrics
from pika_pipeline.submit.input_objects import InputObjects
from pika_pipeline.submit.service import SubmitOutcome, SubmitService
from pika_pipeline.submit.uploads import Upload
from tests.unit.moto_tables import offline_aws, template_table

INPUT = "pika-input"
NOW = 1_800_000_000.0
JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 64
CLAIM_SECONDS = 300


def settings(**overrides: str) -> SubmitServiceSettings:
    return SubmitServiceSettings.from_environment(
        overrides
        | {
            "JOBS_TABLE": "jobs",
            "OUTPUT_BUCKET": "pika-output",
            "WEBHOOK_TOKEN_SECRET": "token-secret",
            "EVENT_BUS_NAME": "default",
            "INPUT_PREFIX": "uploads/",
            "FAL_KEY_SECRET_NAME": "fal-key",
            "WEBHOOK_URL": "https://hook.example/",
            "DEFAULT_RESOLUTION": "720p",
            "DEFAULT_DURATION": "5",
            "PRESIGN_EXPIRES_SECONDS": "3600",
            "JOB_DEADLINE_SECONDS": "3000",
            "RECONCILE_AFTER_SECONDS": "60",
            "CONTROL_TABLE": "control",
            "FAL_CONCURRENCY": "1",
            "FAL_QUEUE_HEADROOM": "0",
        }
        | overrides
    )


class Crash(BaseException):
    """SIGKILL between the slot transaction and fal: nothing after it runs, no handler sees it."""


class Fal:
    """Records each submit; ``crash_next`` kills the dispatching process before fal hears it."""

    def __init__(self) -> None:
        self.submitted: list[str] = []
        self.endpoints: list[tuple[str, str]] = []  # (job id, the endpoint it was sent to)
        self.crash_next = False

    def submit(self, arguments: dict[str, Any], *, webhook_url: str, endpoint: str) -> str:
        if self.crash_next:
            self.crash_next = False
            raise Crash
        self.submitted.append(webhook_url)
        (job_id,) = parse_qs(urlsplit(webhook_url).query)["job_id"]
        self.endpoints.append((job_id, endpoint))
        return f"req-{len(self.submitted)}"

    def submits_for(self, job_id: str) -> int:
        return sum(f"job_id={job_id}" in url for url in self.submitted)


@dataclass
class Clock:
    now: float = NOW

    def __call__(self) -> float:
        return self.now


@dataclass
class Gate:
    """One pipeline's dispatch gate over moto; ``dispatcher()`` is one more process running it."""

    jobs_table: Any
    control_table: Any
    slot_count: int
    fal: Fal = field(default_factory=Fal)
    clock: Clock = field(default_factory=Clock)

    def __post_init__(self) -> None:
        self.s3 = boto3.client("s3")
        self.s3.create_bucket(Bucket=INPUT)
        self.repository = JobRepository(lambda: self.jobs_table, retention_days=30)
        self.slots = Slots(
            control=lambda: self.control_table, jobs=lambda: self.jobs_table, count=self.slot_count
        )
        self.waiting = WaitingJobs(lambda: self.jobs_table)
        self.service = self.service_with()

    def service_with(self, **setting_overrides: str) -> SubmitService:
        return SubmitService(
            settings=settings(**setting_overrides),
            repository=self.repository,
            images=InputObjects(self.s3, presign_expires_seconds=3600),
            fal=lambda: self.fal,  # type: ignore[arg-type, return-value]
            token_key=lambda: "token-key",
            events=JobEvents(boto3.client("events"), "default"),
            fair_share=FairShare(lambda: self.control_table),
            clock=self.clock,
        )

    def dispatcher(
        self,
        executor: Executor | None = None,
        pause: PauseSwitch | None = None,
        slots: Slots | None = None,
    ) -> Dispatcher:
        return Dispatcher(
            slots=slots or self.slots,
            waiting=self.waiting,
            pause=pause or PauseSwitch(lambda: self.control_table, cache_seconds=0),
            repository=self.repository,
            submit=self.service,
            claim_seconds=CLAIM_SECONDS,
            reconcile_after_seconds=60,
            clock=self.clock,
            executor=executor,
        )

    def upload(self, key: str, **metadata: str) -> str:
        """An upload event for a new image: the job waits QUEUED."""
        self.s3.put_object(
            Bucket=INPUT, Key=key, Body=JPEG, Metadata={"prompt": "a slow pan", **metadata}
        )
        upload = Upload(
            bucket=INPUT, key=key, size=len(JPEG), etag="e", version_id=None, sequencer=key
        )
        assert self.service.process_upload(upload) is SubmitOutcome.QUEUED
        self.clock.now += 0.01  # uploads arrive one after another
        return job_id_for(bucket=INPUT, key=key, version=key)

    def job(self, job_id: str) -> dict[str, Any]:
        item: dict[str, Any] = self.jobs_table.get_item(
            Key={"job_id": job_id}, ConsistentRead=True
        )["Item"]
        return item

    def holder(self, slot: int) -> str | None:
        item = self.control_table.get_item(Key={"pk": f"slot#{slot}"}, ConsistentRead=True)
        holder = item.get("Item", {}).get("holder")
        return str(holder) if holder else None

    def lane_clock(self, lane: str) -> int:
        return FairShare(lambda: self.control_table).lane_clock(lane)

    def finish(self, job_id: str) -> None:
        """fal's webhook: the job ends, and by ending frees its slot."""
        self.repository.transition(job_id, JobStatus.COMPLETED)


@pytest.fixture(autouse=True)
def _offline_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    offline_aws(monkeypatch)
    yield
    metrics.clear_metrics()


def gate(slot_count: int) -> Iterator[Gate]:
    with mock_aws():
        dynamodb = boto3.resource("dynamodb")
        yield Gate(
            jobs_table=template_table(dynamodb, "JobsTable", "jobs"),
            control_table=template_table(dynamodb, "ControlTable", "control"),
            slot_count=slot_count,
        )


@pytest.fixture
def one_slot() -> Iterator[Gate]:
    yield from gate(1)


@pytest.fixture
def two_slots() -> Iterator[Gate]:
    yield from gate(2)


# --- the slot transaction -----------------------------------------------------------------------


def test_a_slot_held_by_an_open_job_is_not_taken(one_slot: Gate) -> None:
    first = one_slot.upload("uploads/a.jpg")
    second = one_slot.upload("uploads/b.jpg")

    assert one_slot.dispatcher().fill() == 1
    assert one_slot.dispatcher().fill() == 0  # the slot's holder is at fal

    # Even a dispatcher that believes the slot is free loses it to the open holder.
    with pytest.raises(SlotLost):
        one_slot.slots.take(
            Slot(number=0, holder=first, freed_at=None),
            next(iter(one_slot.waiting.all())),
            attempt="x",
            now_epoch=NOW,
            claim_seconds=CLAIM_SECONDS,
            reconcile_after_seconds=60,
        )
    assert one_slot.job(first)["status"] == JobStatus.SUBMITTED
    assert one_slot.job(second)["status"] == JobStatus.QUEUED
    assert one_slot.holder(0) == first
    assert one_slot.fal.submitted
    assert one_slot.fal.submits_for(second) == 0


@pytest.mark.parametrize("ended", ["final", "deleted"])
def test_a_slot_whose_holder_ended_is_taken(one_slot: Gate, ended: str) -> None:
    first = one_slot.upload("uploads/a.jpg")
    second = one_slot.upload("uploads/b.jpg")
    one_slot.dispatcher().fill()

    if ended == "final":
        one_slot.finish(first)
    else:  # DynamoDB's TTL, or by hand
        one_slot.jobs_table.delete_item(Key={"job_id": first})
    assert [slot.holder for slot in one_slot.slots.view().free] == [first]
    assert one_slot.dispatcher().fill() == 1

    job = one_slot.job(second)
    assert (job["status"], job["slot"], job["request_id"]) == (JobStatus.SUBMITTED, 0, "req-2")
    assert job["dispatched_at"]
    assert "queue_lane" not in job
    assert "queue_order" not in job
    assert one_slot.holder(0) == second


def test_two_dispatchers_racing_for_the_last_slot_dispatch_exactly_one_job(one_slot: Gate) -> None:
    first = one_slot.upload("uploads/a.jpg")
    second = one_slot.upload("uploads/b.jpg")
    # Both read the free slot before either writes: the race's worst interleaving.
    seen_by_one, seen_by_other = one_slot.slots.view(), one_slot.slots.view()
    one, other = list(one_slot.waiting.all())

    def take(view_slot: Slot, job: Any) -> None:
        one_slot.slots.take(
            view_slot,
            job,
            attempt=f"a-{job.job_id}",
            now_epoch=NOW,
            claim_seconds=CLAIM_SECONDS,
            reconcile_after_seconds=60,
        )

    take(seen_by_one.free[0], one)
    with pytest.raises(SlotLost):
        take(seen_by_other.free[0], other)

    statuses = {one_slot.job(j)["status"] for j in (first, second)}
    assert statuses == {JobStatus.PENDING, JobStatus.QUEUED}
    assert one_slot.holder(0) == one.job_id
    assert one_slot.slots.view().free == []


def test_two_dispatchers_racing_for_the_same_job_take_one_slot(two_slots: Gate) -> None:
    only = two_slots.upload("uploads/a.jpg")
    job = next(iter(two_slots.waiting.all()))
    free = two_slots.slots.view().free

    arguments: dict[str, Any] = {
        "now_epoch": NOW,
        "claim_seconds": CLAIM_SECONDS,
        "reconcile_after_seconds": 60,
    }
    two_slots.slots.take(free[0], job, attempt="a1", **arguments)
    with pytest.raises(JobLost):
        two_slots.slots.take(free[1], job, attempt="a2", **arguments)

    assert two_slots.job(only)["open_attempts"] == {"a1"}
    assert [slot.number for slot in two_slots.slots.view().free] == [1]  # not leaked


@pytest.mark.parametrize("nudge", [False, True], ids=["uploads", "nudge"])
def test_a_paused_gate_dispatches_nothing(one_slot: Gate, nudge: bool) -> None:
    waiting = one_slot.upload("uploads/a.jpg")
    one_slot.control_table.put_item(Item={"pk": DISPATCH_ITEM, "paused": True})

    assert one_slot.dispatcher().fill(waiting_first=nudge) == 0

    assert one_slot.job(waiting)["status"] == JobStatus.QUEUED
    one_slot.control_table.put_item(Item={"pk": DISPATCH_ITEM, "paused": False})
    assert one_slot.dispatcher().fill(waiting_first=nudge) == 1
    assert one_slot.fal.submits_for(waiting) == 1


def test_every_fill_sees_the_pause_switch_as_it_is_now(one_slot: Gate) -> None:
    # A switch whose cache would trust "running" for a minute: the fill reads it with the slots.
    switch = PauseSwitch(lambda: one_slot.control_table, cache_seconds=60)
    dispatcher = one_slot.dispatcher(pause=switch)
    assert dispatcher.fill() == 0  # nothing waits yet; the switch was read as running
    waiting = one_slot.upload("uploads/a.jpg")

    one_slot.control_table.put_item(Item={"pk": DISPATCH_ITEM, "paused": True})

    assert dispatcher.fill() == 0
    assert one_slot.fal.submits_for(waiting) == 0
    one_slot.control_table.put_item(Item={"pk": DISPATCH_ITEM, "paused": False})
    assert dispatcher.fill() == 1


# --- a burst of single uploads: each function's fill takes its own job ---------------------------


class MeetingSlots(Slots):
    """Slots whose readers all meet after reading them: fills that run at once, every one having
    seen the same free slots and the same queue before any takes a slot."""

    def __init__(self, gate_: Gate, fills: int) -> None:
        super().__init__(
            control=lambda: gate_.control_table,
            jobs=lambda: gate_.jobs_table,
            count=gate_.slot_count,
        )
        self.meeting = threading.Barrier(fills, timeout=5)

    def view(self, *, also: tuple[str, ...] = ()) -> Any:
        seen = super().view(also=also)
        self.meeting.wait()
        return seen


def test_fills_running_at_once_each_take_their_own_new_job_without_a_race() -> None:
    for gate_ in gate(8):
        # Three functions have each just queued one upload, and fill at the same moment. (Their
        # ids point at slots 0, 7 and 5: two jobs pointing at one slot would race for it.)
        jobs = [gate_.upload(f"uploads/{name}.jpg") for name in ("a", "b", "c")]
        assert sorted(zlib.crc32(job.encode()) % 8 for job in jobs) == [0, 5, 7]
        slots = MeetingSlots(gate_, fills=3)
        calls = Calls(gate_.jobs_table)
        dispatchers = [gate_.dispatcher(slots=slots) for _ in jobs]
        with ThreadPoolExecutor(max_workers=3) as fills:
            taken = list(fills.map(lambda d, job: d.fill(own=frozenset({job})), dispatchers, jobs))

        assert taken == [1, 1, 1]  # each its own job
        assert [gate_.fal.submits_for(job) for job in jobs] == [1, 1, 1]
        # One slot transaction per job: no fill raced another for a job or a slot.
        assert calls.take()["TransactWriteItems"] == 3
        assert len({int(gate_.job(job)["slot"]) for job in jobs}) == 3
        assert gate_.lane_clock("normal") == 3  # moved once, by the highest rank's own fill


def test_a_new_job_whose_own_fill_missed_it_is_taken_by_the_next_fill() -> None:
    for three_slots in gate(3):
        missed = three_slots.upload("uploads/a.jpg")  # its function's fill failed, say
        own = three_slots.upload("uploads/b.jpg")

        assert three_slots.dispatcher().fill(own=frozenset({own})) == 1
        assert three_slots.job(missed)["status"] == JobStatus.QUEUED  # left to its own fill

        # when another function fills a moment later (a nudge would take everything)
        three_slots.clock.now += OTHERS_FILL_SECONDS
        later = three_slots.upload("uploads/c.jpg")

        assert three_slots.dispatcher().fill(own=frozenset({later})) == 2
        assert three_slots.fal.submits_for(missed) == 1


def test_when_more_waits_than_fits_the_queue_order_wins_over_a_fills_own_job(
    one_slot: Gate,
) -> None:
    first = one_slot.upload("uploads/a.jpg")
    own = one_slot.upload("uploads/b.jpg")

    assert one_slot.dispatcher().fill(own=frozenset({own})) == 1

    assert one_slot.fal.submits_for(first) == 1
    assert one_slot.job(own)["status"] == JobStatus.QUEUED


# --- crash safety -------------------------------------------------------------------------------


def test_a_dispatch_killed_before_fal_leaks_no_slot_and_is_submitted_exactly_once(
    one_slot: Gate,
) -> None:
    crashed = one_slot.upload("uploads/a.jpg")
    behind = one_slot.upload("uploads/b.jpg")

    # The slot transaction commits, then the process dies before fal hears of the job.
    one_slot.fal.crash_next = True
    with pytest.raises(Crash):
        one_slot.dispatcher().fill()

    job = one_slot.job(crashed)
    assert (job["status"], job["slot"]) == (JobStatus.PENDING, 0)
    assert "request_id" not in job
    # The slot stays with the crashed job (it may yet reach fal): nobody else is sent meanwhile.
    assert one_slot.dispatcher().fill() == 0
    assert one_slot.job(behind)["status"] == JobStatus.QUEUED

    # The reconciler takes over the claim once it has run out, exactly as for a crashed submit.
    upload = Upload.of_job(job)
    assert one_slot.service.resubmit(upload) is SubmitOutcome.DUPLICATE  # claim still live
    one_slot.clock.now += CLAIM_SECONDS + 1
    assert one_slot.service.resubmit(upload) is SubmitOutcome.SUBMITTED
    assert one_slot.service.resubmit(upload) is SubmitOutcome.DUPLICATE  # answered: never again

    assert one_slot.fal.submits_for(crashed) == 1
    assert one_slot.job(crashed)["status"] == JobStatus.SUBMITTED
    assert one_slot.holder(0) == crashed

    # And when it ends, its slot goes to the next job.
    one_slot.finish(crashed)
    assert one_slot.dispatcher().fill() == 1
    assert one_slot.fal.submits_for(behind) == 1


# --- order --------------------------------------------------------------------------------------


def test_high_priority_first_then_batches_share_round_robin(one_slot: Gate) -> None:
    bulk = [one_slot.upload(f"uploads/catalog/{n}.jpg") for n in range(6)]
    single = one_slot.upload("uploads/alice/portrait.jpg")
    urgent = one_slot.upload("uploads/catalog/hero.jpg", priority="high")

    order: list[str] = []
    while len(order) < 8:
        assert one_slot.dispatcher().fill() == 1
        holder = one_slot.holder(0)
        assert holder is not None
        order.append(holder)
        one_slot.finish(holder)

    assert order[0] == urgent  # uploaded last, dispatched first
    # The single image waits behind one job of the batch at most, not behind all six.
    assert order.index(single) <= 2
    assert [job for job in order if job in bulk] == bulk  # FIFO within the batch


def test_a_job_is_ranked_in_one_write_unless_its_batch_fell_behind_the_lane(one_slot: Gate) -> None:
    fair_share = FairShare(lambda: one_slot.control_table)
    one_slot.control_table.put_item(Item={"pk": "clock#normal", "rank": 5})
    calls = Calls(one_slot.control_table)

    # A new batch (every single image is one) starts just past the lane's clock...
    assert fair_share.next_rank("normal", "alice") == 6
    # ...and a batch at or ahead of the clock takes its next rank: the clock read and one write.
    assert fair_share.next_rank("normal", "alice") == 7
    assert calls.take() == Counter({"GetItem": 2, "UpdateItem": 2})

    # A batch left behind while others ran joins the clock: one write more.
    one_slot.control_table.put_item(Item={"pk": "clock#normal", "rank": 20})
    calls.take()
    assert fair_share.next_rank("normal", "alice") == 21
    assert calls.take() == Counter({"GetItem": 1, "UpdateItem": 2})
    assert fair_share.next_rank("normal", "alice") == 22


def test_a_pause_takes_effect_within_the_cache_and_a_resume_at_once(one_slot: Gate) -> None:
    clock = Clock(now=0.0)
    switch = PauseSwitch(lambda: one_slot.control_table, cache_seconds=5, clock=clock)
    assert switch.paused() is False

    one_slot.control_table.put_item(Item={"pk": DISPATCH_ITEM, "paused": True})
    clock.now = 4.9
    assert switch.paused() is False  # a running function trusts what it read for 5 s
    clock.now = 5.0
    assert switch.paused() is True

    one_slot.control_table.put_item(Item={"pk": DISPATCH_ITEM, "paused": False})
    clock.now = 5.1
    assert switch.paused() is False  # a paused one reads again: resume's nudge dispatches


# --- what a fill costs --------------------------------------------------------------------------


class Calls:
    """Counts the DynamoDB operations the gate sends (botocore's before-call event)."""

    def __init__(self, table: Any) -> None:
        self.seen: Counter[str] = Counter()
        table.meta.client.meta.events.register("before-call.dynamodb", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.seen[model.name] += 1

    def take(self) -> Counter[str]:
        seen, self.seen = self.seen, Counter()
        return seen


def test_a_nudge_that_finds_nothing_waiting_costs_one_read(two_slots: Gate) -> None:
    calls = Calls(two_slots.jobs_table)
    dispatcher = two_slots.dispatcher()

    assert dispatcher.fill(waiting_first=True) == 0

    # One Scan of the empty queue; the pause switch is read only when there is work to pause.
    assert calls.take() == Counter({"Scan": 1})


def test_a_fill_that_finds_no_free_slot_reads_the_slots_only(one_slot: Gate) -> None:
    one_slot.upload("uploads/a.jpg")
    one_slot.upload("uploads/b.jpg")
    one_slot.dispatcher().fill()
    calls = Calls(one_slot.jobs_table)

    assert one_slot.dispatcher().fill() == 0

    # The slot items (the pause switch with them) and their holders; the queue is not read.
    assert calls.take() == Counter({"BatchGetItem": 2})


def test_a_fill_reads_slots_and_queue_once_and_no_job_twice() -> None:
    for gate_ in gate(3):
        jobs = [gate_.upload(f"uploads/shop/{n}.jpg") for n in range(3)]
        calls = Calls(gate_.jobs_table)

        assert gate_.dispatcher().fill() == 3

        # Per fill: the slots with the pause switch (no holder yet: one read), the queue's head
        # (one Scan). Per job: the slot transaction (which also moves the lane's clock and counts
        # the dispatch) and fal's request id. No job read, no other write.
        assert calls.take() == Counter(
            {"BatchGetItem": 1, "Scan": 1, "TransactWriteItems": 3, "UpdateItem": 3}
        )
        assert [gate_.fal.submits_for(job) for job in jobs] == [1, 1, 1]
        # The lane's clock is at the highest rank dispatched; the dispatch rate counts all three.
        assert gate_.lane_clock("normal") == 3
        assert gate_.slots.dispatched_total() == 3


def test_a_lane_clock_already_past_the_job_does_not_stop_its_dispatch(one_slot: Gate) -> None:
    waiting = one_slot.upload("uploads/a.jpg")  # rank 1
    # Another dispatcher moved the clock further meanwhile (a later batch's job).
    one_slot.control_table.put_item(Item={"pk": "clock#normal", "rank": 7})
    calls = Calls(one_slot.jobs_table)

    assert one_slot.dispatcher().fill() == 1

    assert one_slot.fal.submits_for(waiting) == 1
    assert one_slot.lane_clock("normal") == 7  # never moved back
    assert one_slot.slots.dispatched_total() == 1
    # The transaction again without the clock: a stale clock only shifts fairness a little.
    assert calls.take()["TransactWriteItems"] == 2


def test_new_batches_arriving_together_are_dispatched_one_transaction_each(
    one_slot: Gate,
) -> None:
    # Two single images in folders of their own: two new batches, ranked at the same clock.
    first = one_slot.upload("uploads/a/1.jpg")
    second = one_slot.upload("uploads/b/1.jpg")
    ranks = [rank_of(str(one_slot.job(job)["queue_order"])) for job in (first, second)]
    assert ranks == [1, 1]
    calls = Calls(one_slot.jobs_table)

    # when each is dispatched by a fill of its own (the slot frees in between)
    assert one_slot.dispatcher().fill() == 1
    one_slot.finish(first)
    assert one_slot.dispatcher().fill() == 1

    # then both are at fal, the clock is at their rank, and no slot transaction was sent twice
    assert [one_slot.fal.submits_for(job) for job in (first, second)] == [1, 1]
    assert one_slot.lane_clock("normal") == 1
    assert calls.take()["TransactWriteItems"] == 2


def test_a_long_queue_is_read_by_its_lanes_in_dispatch_order(one_slot: Gate) -> None:
    bulk = [one_slot.upload(f"uploads/catalog/{n}.jpg") for n in range(3)]
    waiting = one_slot.waiting

    assert [job.job_id for job in waiting.head(1)] == bulk[:1]  # a Scan found it too long
    calls = Calls(one_slot.jobs_table)
    assert [job.job_id for job in waiting.head(2)] == bulk[:2]
    # Known to be long now: no Scan first; the high lane is empty, the normal one has enough.
    assert calls.take() == Counter({"Query": 2})
    assert waiting.head(2, skip=frozenset(bulk[:1]))[0].item["source_key"].endswith("/1.jpg")


class MeetingFal(Fal):
    """Each submit waits until ``in_flight`` are under way at once: only concurrent ones pass."""

    def __init__(self, in_flight: int) -> None:
        super().__init__()
        self.barrier = threading.Barrier(in_flight, timeout=5)
        self.lock = threading.Lock()

    def submit(self, arguments: dict[str, Any], *, webhook_url: str, endpoint: str) -> str:
        self.barrier.wait()
        with self.lock:
            return super().submit(arguments, webhook_url=webhook_url, endpoint=endpoint)


def test_the_jobs_a_fill_dispatches_are_submitted_to_fal_concurrently() -> None:
    for gate_ in gate(3):
        jobs = [gate_.upload(f"uploads/shop/{n}.jpg") for n in range(3)]
        gate_.fal = MeetingFal(in_flight=3)
        with ThreadPoolExecutor(max_workers=3) as pool:
            dispatcher = gate_.dispatcher(executor=pool)

            assert dispatcher.fill() == 3

        assert [gate_.job(job)["status"] for job in jobs] == [JobStatus.SUBMITTED] * 3
        assert sorted(gate_.job(job)["request_id"] for job in jobs) == ["req-1", "req-2", "req-3"]


class MeetingTransactions:
    """Each slot transaction waits until ``in_flight`` are under way at once (botocore's
    before-call event on the client): only a fill that takes its slots side by side passes."""

    def __init__(self, table: Any, in_flight: int) -> None:
        self.barrier = threading.Barrier(in_flight, timeout=5)
        table.meta.client.meta.events.register("before-call.dynamodb", self._meet)

    def _meet(self, model: Any, **_: Any) -> None:
        if model.name == "TransactWriteItems":
            self.barrier.wait()


def test_the_slot_transactions_of_a_fill_run_side_by_side_each_on_its_own_slot() -> None:
    for gate_ in gate(3):
        jobs = [gate_.upload(f"uploads/shop/{n}.jpg") for n in range(3)]
        MeetingTransactions(gate_.control_table, in_flight=3)
        with ThreadPoolExecutor(max_workers=3) as pool:
            assert gate_.dispatcher(executor=pool).fill() == 3

        assert sorted(int(gate_.job(job)["slot"]) for job in jobs) == [0, 1, 2]
        assert sorted(str(gate_.holder(n)) for n in range(3)) == sorted(jobs)
        assert [gate_.fal.submits_for(job) for job in jobs] == [1, 1, 1]


def test_a_job_is_sent_to_the_fal_endpoint_it_was_queued_for(one_slot: Gate) -> None:
    queued_before = one_slot.upload("uploads/a.jpg")
    assert one_slot.job(queued_before)["fal_endpoint"] == "fal-ai/pika/v2.1/image-to-video"

    # The operator changes FalEndpoint; the functions restart with the new setting.
    one_slot.service = one_slot.service_with(FAL_ENDPOINT="fal-ai/pika/v2.2/image-to-video")
    queued_after = one_slot.upload("uploads/b.jpg")
    one_slot.dispatcher().fill()
    one_slot.finish(queued_before)
    one_slot.dispatcher().fill()

    assert one_slot.fal.endpoints == [
        (queued_before, "fal-ai/pika/v2.1/image-to-video"),
        (queued_after, "fal-ai/pika/v2.2/image-to-video"),
    ]
