"""Talking to a running local stack: the fault proxy's call counter and the fal emulator."""

from __future__ import annotations

import json
import ssl
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.call_meter import calls_dir, calls_file, fal_call_name, read_calls
from bench.common import BenchError
from local.stack import StackInfo


class StackClient:
    def __init__(self, info: StackInfo) -> None:
        self.info = info
        self._tls = ssl.create_default_context(cafile=info.fal_ca_file)
        self.emulator_log = Path(info.state_dir) / "logs" / "fal-emulator.log"

    # --- AWS calls the functions made (local/fault_proxy.py) ----------------------------------

    def reset_aws_calls(self) -> None:
        self._proxy("POST", "/_faults/reset")

    def aws_calls(self) -> Counter[str]:
        calls = self._proxy("GET", "/_faults/calls")
        assert isinstance(calls, dict)
        return Counter({str(k): int(v) for k, v in calls.items()})

    def aws_calls_by_app(self) -> dict[str, Counter[str]]:
        """The same, by the calling process's SDK app id (the call meter sets it to the
        function's name; "" for callers without one, e.g. a presigned URL's GET)."""
        calls = self._proxy("GET", "/_faults/calls/by-app")
        assert isinstance(calls, dict)
        return {str(a): Counter({str(k): int(v) for k, v in c.items()}) for a, c in calls.items()}

    def add_aws_latency(self, service: str, seconds: float) -> None:
        """Every call to ``service`` reaches moto ``seconds`` late (until the next reset)."""
        rule = {"service": service, "operation": "*", "rate": 1.0, "delay_seconds": seconds}
        self._proxy("POST", "/_faults", rule)

    def _proxy(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else b""
        request = urllib.request.Request(  # noqa: S310 - the local fault proxy
            f"{self.info.aws_fault_proxy}{path}",
            method=method,
            data=data if method == "POST" else None,
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.loads(response.read())

    # --- what each function counted from inside its process (bench/call_meter.py) -------------

    def function_calls(self, function: str, *, since: float, until: float) -> Counter[str]:
        directory = calls_dir(Path(self.info.state_dir))
        if not directory.is_dir():
            raise BenchError("the local stack was started without the call meter")
        meter = calls_file(directory, self.info.functions[function]["function_name"])
        return Counter(read_calls(meter, since=since, until=until))

    # --- the fal emulator ------------------------------------------------------------------------

    def fal_faults(self, **faults: Any) -> None:
        self._emulator("POST", "/_emulator/faults", faults)

    def fal_concurrency(self) -> int:
        """The emulated fal account's concurrency limit (the stack's FalConcurrency)."""
        return int(self._emulator("GET", "/_emulator/requests")["concurrency"])

    def set_fal_concurrency(self, concurrency: int) -> None:
        """At most ``concurrency`` requests run at once; 0 holds every request IN_QUEUE."""
        self._emulator("POST", "/_emulator/account", {"concurrency": concurrency})

    def fal_requests(self) -> list[dict[str, Any]]:
        requests: list[dict[str, Any]] = self._emulator("GET", "/_emulator/requests")["requests"]
        return requests

    def fal_requests_for(self, job_ids: set[str]) -> dict[str, dict[str, Any]]:
        """The emulator's record of each job's submission, by job id (from the webhook URL)."""
        found = {}
        for request in self.fal_requests():
            for job_id in job_ids:
                if f"job_id={job_id}" in (request.get("webhook_url") or ""):
                    found[job_id] = request
        return found

    def emulator_log_offset(self) -> int:
        return self.emulator_log.stat().st_size

    def emulator_calls(self, start: int, end: int | None = None) -> Counter[str]:
        """What the emulator served between two log offsets, by kind of call.

        The emulator logs one line per request it answers: ``fal-emulator METHOD PATH STATUS``.
        """
        with self.emulator_log.open("rb") as handle:
            handle.seek(start)
            text = handle.read(None if end is None else end - start).decode("utf-8", "replace")
        calls: Counter[str] = Counter()
        for line in text.splitlines():
            parts = line.split()
            if len(parts) < 3 or parts[0] != "fal-emulator":
                continue
            method, path = parts[1], parts[2]
            if path.startswith("/_emulator/"):
                continue  # the benchmark's own control calls
            calls[fal_call_name(method, path)] += 1
        return calls

    def _emulator(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - the local emulator
            f"{self.info.fal_url}{path}", data=data, method=method
        )
        with urllib.request.urlopen(request, context=self._tls, timeout=10) as response:  # noqa: S310
            return json.loads(response.read())


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)
