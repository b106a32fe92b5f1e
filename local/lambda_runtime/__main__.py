"""Runs one function of the local stack: ``python -m local.lambda_runtime STACK_FILE FUNCTION``.

The process environment is already the function's (set by the stack); this imports the
handler as Lambda would and feeds it events from its SQS queue or its Function URL.
"""

from __future__ import annotations

import importlib
import json
import signal
import sys
import threading
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from local.lambda_runtime import function_url, invoke_api, sqs_poller
from local.lambda_runtime.call_meter import CallMeter
from local.lambda_runtime.context import LocalLambdaContext


def main() -> None:
    stack_file, function = Path(sys.argv[1]), sys.argv[2]
    spec = json.loads(stack_file.read_text())["functions"][function]
    if spec.get("call_meter"):  # the benchmark's count of network calls; before any client exists
        CallMeter(Path(spec["call_meter"])).install()
    module_name, handler_name = spec["handler"].rsplit(".", 1)
    handler = getattr(importlib.import_module(module_name), handler_name)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    ready = stack_file.parent / f"{function}.ready"
    common = {
        "handler": handler,
        "function_name": spec["function_name"],
        "memory": spec["memory"],
        "timeout": spec["timeout"],
    }
    if spec.get("function_url_port"):
        server = function_url.serve(port=spec["function_url_port"], **common)
        ready.write_text("ready")
        server.serve_forever()
    elif spec.get("schedule"):
        schedule = spec["schedule"]
        if schedule["enabled"]:
            threading.Thread(
                target=_every,
                args=(schedule["every_seconds"], schedule["event"], stop, common),
                daemon=True,
            ).start()
        server = invoke_api.serve(port=spec["invoke_port"], **common)
        ready.write_text("ready")
        server.serve_forever()
    elif spec.get("sqs"):
        ready.write_text("ready")
        sqs_poller.poll_forever(
            queue_url=spec["sqs"]["queue_url"],
            batch_size=spec["sqs"]["batch_size"],
            report_failures=spec["sqs"]["report_batch_item_failures"],
            stop=stop,
            **common,
        )
    else:
        raise SystemExit(f"{function} has no event source the local runtime knows")


def _every(seconds: int, event: dict[str, Any], stop: threading.Event, f: dict[str, Any]) -> None:
    """EventBridge's schedule: the handler runs every ``seconds`` with a Scheduled Event."""
    while not stop.wait(seconds):
        try:
            f["handler"](event, LocalLambdaContext(f["function_name"], f["memory"], f["timeout"]))
        except Exception:
            traceback.print_exc()


if __name__ == "__main__":
    main()
