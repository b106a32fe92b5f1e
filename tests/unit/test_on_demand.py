"""fal's clients are built when first needed, once, however many threads ask at once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from pika_pipeline.fal.on_demand import built_once


def test_threads_asking_at_once_share_one_build() -> None:
    builds: list[object] = []
    lock = threading.Lock()

    def make() -> object:
        time.sleep(0.05)  # long enough for every thread to ask while the first builds
        with lock:
            builds.append(object())
            return builds[-1]

    get = built_once(make)
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda _: get(), range(8)))

    assert len(builds) == 1
    assert all(item is builds[0] for item in got)
    assert get() is builds[0]
