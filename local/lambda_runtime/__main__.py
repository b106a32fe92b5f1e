"""Runs one function of the local stack: ``python -m local.lambda_runtime STACK_FILE FUNCTION``.

The process environment is already the function's (set by the stack). This process is the
function's event source (its Function URL, Invoke API, schedule or SQS poller); the handler runs
in a pool of worker processes (``pool.py``), one invocation at a time each, as on Lambda.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from local.lambda_runtime.pool import WorkerPool


def main() -> None:
    stack_file, function = Path(sys.argv[1]), sys.argv[2]
    spec = json.loads(stack_file.read_text())["functions"][function]
    pool = WorkerPool(stack_file, function, spec["concurrency"])
    first = pool.start()  # its cold start runs while this process imports the event source

    from local.lambda_runtime import function_url, invoke_api, sqs_poller

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        pool.close()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    first.wait_until_ready()  # a handler that fails to import fails the stack's start-up
    ready = stack_file.parent / f"{function}.ready"
    if spec.get("function_url_port"):
        server = function_url.serve(pool=pool, port=spec["function_url_port"])
        ready.write_text("ready")
        server.serve_forever()
    elif spec.get("schedule"):
        schedule = spec["schedule"]
        if schedule["enabled"]:
            threading.Thread(
                target=_every,
                args=(schedule["every_seconds"], schedule["event"], stop, pool),
                daemon=True,
            ).start()
        server = invoke_api.serve(pool=pool, port=spec["invoke_port"])
        ready.write_text("ready")
        server.serve_forever()
    elif spec.get("sqs"):
        ready.write_text("ready")
        sqs_poller.poll_forever(
            pool=pool,
            queue_url=spec["sqs"]["queue_url"],
            batch_size=spec["sqs"]["batch_size"],
            report_failures=spec["sqs"]["report_batch_item_failures"],
            stop=stop,
        )
    else:
        raise SystemExit(f"{function} has no event source the local runtime knows")


def _every(seconds: int, event: dict[str, Any], stop: threading.Event, pool: WorkerPool) -> None:
    """EventBridge's schedule: the handler runs every ``seconds`` with a Scheduled Event (a
    failed run is in the function's log; the next one comes anyway)."""
    while not stop.wait(seconds):
        pool.invoke(event)


if __name__ == "__main__":
    main()
