"""How busy fal's slots were while work waited, from the uploads and the emulator's runs."""

from __future__ import annotations

import pytest

from bench.common import BenchError
from bench.dispatch_drain import busy_share


def test_busy_share_counts_only_the_time_work_waited_from_fals_first_start() -> None:
    # given four uploads at 0 s and two slots; fal starts the first two at 1 s (the pipeline's
    # latency before it is the drain row's), the third at 3 s, the last at 4 s
    uploaded = [0.0, 0.0, 0.0, 0.0]
    runs = [(1.0, 3.0), (1.0, 3.0), (3.0, 5.0), (4.0, 6.0)]

    # when
    share, waiting = busy_share(uploaded, runs, concurrency=2)

    # then work waited from 1 s until the last start at 4 s, with both slots busy until 3 s and
    # one from 3 s to 4 s (a freed slot left idle): 5 of 6 slot-seconds
    assert waiting == pytest.approx(3.0)
    assert share == pytest.approx(5 / 6)
    # and counted from the first upload, the second before fal's first start is idle too
    assert busy_share(uploaded, runs, 2, from_upload=True) == pytest.approx((5 / 8, 4.0))


def test_an_upload_that_arrives_later_makes_work_wait_only_from_its_arrival() -> None:
    uploaded = [0.0, 0.0, 0.0, 10.0]
    runs = [(1.0, 2.0), (1.0, 2.0), (2.0, 3.0), (10.5, 11.5)]

    share, waiting = busy_share(uploaded, runs, concurrency=2)

    # waiting: 1 s to 2 s (the third upload), then 10 s to 10.5 s (the fourth, on its way)
    assert waiting == pytest.approx(1.5)
    assert share == pytest.approx(2 / 3)


def test_a_drop_that_fal_can_hold_at_once_has_no_figure() -> None:
    with pytest.raises(BenchError):
        busy_share([0.0, 0.0], [(1.0, 2.0), (1.0, 2.0)], concurrency=2)
