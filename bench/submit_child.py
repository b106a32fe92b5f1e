"""Child process of the submit batch benchmark: times the real handler on prepared SQS events.

Reads a JSON spec on stdin (the function's code and layer directories, the batches to run in
order, and which are warm-up); its environment is already the function's. Prints one JSON line:
the wall and CPU time (all threads) of each timed ``lambda_handler`` call, the failures the
handler reported, and how long each outside call took (every AWS call through botocore's
before-call/after-call events, and the fal submit), keyed by the size of the batch it was in.
"""

from __future__ import annotations

import functools
import importlib
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

# Outside-call latencies: "service.Operation" -> batch size -> seconds of each call.
LATENCIES: defaultdict[str, defaultdict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
CURRENT_BATCH = [0]


def _instrument() -> None:
    """Times every AWS call (botocore events) and the fal submit, without changing them."""
    import boto3

    boto3.setup_default_session()  # the session aws_clients' boto3.client() calls will use
    session = boto3.DEFAULT_SESSION
    assert session is not None

    def before(context: dict[str, Any], **_: Any) -> None:
        context["bench_started"] = time.perf_counter()

    def after(context: dict[str, Any], model: Any, **_: Any) -> None:
        started = context.get("bench_started")
        if started is not None:
            name = f"{model.service_model.service_name}.{model.name}"
            LATENCIES[name][CURRENT_BATCH[0]].append(time.perf_counter() - started)

    session.events.register("before-call.*.*", before)
    session.events.register("after-call.*.*", after)

    from pika_pipeline.fal import gateway as fal_gateway

    submit: Callable[..., str] = fal_gateway.FalGateway.submit

    @functools.wraps(submit)
    def timed_submit(*args: Any, **kwargs: Any) -> str:
        started = time.perf_counter()
        try:
            return submit(*args, **kwargs)
        finally:
            LATENCIES["fal.submit"][CURRENT_BATCH[0]].append(time.perf_counter() - started)

    fal_gateway.FalGateway.submit = timed_submit  # type: ignore[method-assign]


def main() -> None:
    spec: dict[str, Any] = json.loads(sys.stdin.read())
    # Lambda's order: the function's code (/var/task), then the layer (/opt/python).
    sys.path[:0] = [spec["code_dir"], spec["layer_dir"]]
    from local.lambda_runtime.context import LocalLambdaContext

    _instrument()
    module_name, handler_name = spec["handler"].rsplit(".", 1)
    handler = getattr(importlib.import_module(module_name), handler_name)
    timings: list[dict[str, Any]] = []
    failures = 0
    for batch in spec["batches"]:
        size = len(batch["records"])
        CURRENT_BATCH[0] = 0 if batch["warmup"] else size
        context = LocalLambdaContext(spec["function_name"], spec["memory"], spec["timeout"])
        cpu_started = time.process_time()
        started = time.perf_counter()
        result = handler({"Records": batch["records"]}, context)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        failed = len(result.get("batchItemFailures", [])) if isinstance(result, dict) else -1
        failures += failed
        if not batch["warmup"]:
            timings.append({"records": size, "seconds": elapsed, "cpu_seconds": cpu})
    latencies = {
        name: {str(size): values for size, values in by_size.items() if size}
        for name, by_size in LATENCIES.items()
    }
    print(
        json.dumps({"timings": timings, "failures": failures, "latencies": latencies}),
        flush=True,
    )


if __name__ == "__main__":
    main()
