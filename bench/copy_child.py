"""Child process of the video copy benchmark: one copy, its memory and its time, in a fresh process.

``python -m bench.copy_child MODE URL SIZE BUCKET KEY`` with AWS_ENDPOINT_URL (moto) and
SSL_CERT_FILE (the media host's CA) in the environment. MODE is ``videostore`` (the webhook's
``VideoStore.copy``, with the webhook's own S3 client) or ``upload_fileobj`` (the baseline: the
same HTTPS response handed to boto3's ``upload_fileobj`` with its default transfer settings).

Memory: VmRSS just before the copy is the baseline; the peak is the highest of a 1 ms sampler
thread's VmRSS readings and the kernel's VmHWM (reset to the current RSS just before the copy
through /proc/self/clear_refs); ``ru_maxrss`` before and after is reported as well. Prints one
JSON line.
"""

from __future__ import annotations

import gc
import json
import resource
import sys
import threading
import time
from pathlib import Path
from typing import BinaryIO, cast

STATUS = Path("/proc/self/status")


def _status_kib(field: str) -> int:
    for line in STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class PeakSampler(threading.Thread):
    def __init__(self, interval: float = 0.001) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak_kib = _status_kib("VmRSS")
        self.samples = 0
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, _status_kib("VmRSS"))
            self.samples += 1
            time.sleep(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self.join()


def main() -> None:
    mode, url, size_text, bucket, key = sys.argv[1:6]
    size = int(size_text)
    import urllib3

    from pika_pipeline.aws.clients import s3_client
    from pika_pipeline.results.video_store import VideoStore

    s3 = s3_client()
    store = VideoStore(s3=s3, bucket=bucket, allowed_hosts=("127.0.0.1",), max_bytes=2 * 1024**3)
    http = urllib3.PoolManager(retries=False)
    gc.collect()
    rss_before = _status_kib("VmRSS")
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    hwm_reset = True
    try:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    except OSError:
        hwm_reset = False
    sampler = PeakSampler()
    sampler.start()
    started = time.perf_counter()
    if mode == "videostore":
        stored = store.copy(url, key=key, expected_size=size, metadata={"job-id": "benchmark"})
        copied = stored.size
    elif mode == "upload_fileobj":
        response = http.request("GET", url, preload_content=False, redirect=False)
        try:
            # upload_fileobj needs only read(); the stub's IO[Any] is stricter than that.
            s3.upload_fileobj(
                cast("BinaryIO", response), bucket, key, ExtraArgs={"ContentType": "video/mp4"}
            )
        finally:
            response.release_conn()
        copied = size
    else:
        raise SystemExit(f"unknown mode {mode}")
    elapsed = time.perf_counter() - started
    sampler.stop()
    hwm_kib = _status_kib("VmHWM")
    maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stored_size = int(s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
    if stored_size != size or copied != size:
        raise SystemExit(f"copied {copied} bytes, stored {stored_size}, expected {size}")
    peak = max(sampler.peak_kib, hwm_kib if hwm_reset else 0)
    print(
        json.dumps(
            {
                "mode": mode,
                "bytes": size,
                "seconds": elapsed,
                "rss_before_kib": rss_before,
                "peak_rss_kib": peak,
                "sampled_peak_kib": sampler.peak_kib,
                "samples": sampler.samples,
                "hwm_kib": hwm_kib if hwm_reset else None,
                "ru_maxrss_before_kib": maxrss_before,
                "ru_maxrss_after_kib": maxrss_after,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
