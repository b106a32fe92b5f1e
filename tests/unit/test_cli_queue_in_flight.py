"""`pika-pipeline queue` counts requests at fal as the dispatcher counts taken slots."""

from __future__ import annotations

from decimal import Decimal

from pika_pipeline_cli.queue_control import taken_slots


def test_only_a_holder_at_fal_with_its_slot_takes_it() -> None:
    slots = [{"pk": f"slot#{n}", "holder": f"job-{n}"} for n in range(5)]
    jobs = [
        {"job_id": "job-0", "status": "SUBMITTED", "slot": Decimal(0)},  # at fal: taken
        {"job_id": "job-1", "status": "PENDING", "slot": Decimal(1)},  # being sent: taken
        {"job_id": "job-2", "status": "QUEUED", "slot": Decimal(2)},  # waiting again: free
        {"job_id": "job-3", "status": "SUBMITTED", "slot": Decimal(7)},  # at fal with another
        {"job_id": "job-4", "status": "COMPLETED", "slot": Decimal(4)},  # ended: free
    ]

    assert taken_slots(slots, jobs, capacity=5) == 2


def test_a_slot_without_a_holder_or_whose_holder_is_gone_is_free() -> None:
    slots = [{"pk": "slot#0"}, {"pk": "slot#1", "holder": "gone"}]

    assert taken_slots(slots, [], capacity=2) == 0
