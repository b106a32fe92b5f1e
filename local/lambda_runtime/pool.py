"""A function's execution environments: worker processes that each run one invocation at a time.

Lambda gives every concurrent invocation an execution environment of its own and reuses an idle
one when it can; it starts a new one (a cold start) only when all are busy, up to the function's
concurrency, and beyond that the invocation waits here (Lambda would throttle it). So a handler
never sees two invocations at once in one process, locally as on AWS.

One worker is started with the pool, so a broken handler fails the stack's start-up; the others
start when first needed.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class WorkerDied(Exception):
    """The worker process exited before it answered (killed, crashed, or its import failed)."""


@dataclass(frozen=True)
class Invocation:
    """What one invocation gave back: its result, or the error Lambda would report."""

    result: Any = None
    error: dict[str, str] | None = None


class Worker:
    """One execution environment: ``python -m local.lambda_runtime.worker``, talking JSON lines
    over a socket pair (stdout and stderr stay the function's log)."""

    def __init__(self, stack_file: Path, function: str) -> None:
        ours, theirs = socket.socketpair()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "local.lambda_runtime.worker",
                str(stack_file),
                function,
                str(theirs.fileno()),
            ],
            pass_fds=(theirs.fileno(),),
        )
        theirs.close()
        self._socket = ours
        self._reader = ours.makefile("rb")

    def wait_until_ready(self) -> None:
        """Returns once the handler is imported: the cold start is over."""
        self._read()

    def invoke(self, event: Any) -> Invocation:
        self._socket.sendall(json.dumps({"event": event}).encode() + b"\n")
        answer = self._read()
        return Invocation(result=answer.get("result"), error=answer.get("error"))

    def close(self) -> None:
        self._reader.close()
        self._socket.close()
        if self.process.poll() is None:
            self.process.terminate()

    def _read(self) -> dict[str, Any]:
        line = self._reader.readline()
        if not line:
            code = self.process.wait()
            raise WorkerDied(f"the worker exited with {code}")
        answer: dict[str, Any] = json.loads(line)
        return answer


class WorkerPool:
    def __init__(self, stack_file: Path, function: str, concurrency: int) -> None:
        self._stack_file = stack_file
        self._function = function
        self._concurrency = concurrency
        self._idle: list[Worker] = []  # the most recently used last: it is reused first
        self._busy = 0
        self._changed = threading.Condition()

    def start(self) -> Worker:
        """Starts the first worker; the caller waits until it is ready (meanwhile it can set up
        the event source: the cold start runs side by side)."""
        worker = Worker(self._stack_file, self._function)
        self._idle.append(worker)
        return worker

    def reserve(self) -> None:
        """Waits for one of the function's ``concurrency`` slots; ``run`` frees it."""
        with self._changed:
            while self._busy >= self._concurrency:
                self._changed.wait()
            self._busy += 1

    def unreserve(self) -> None:
        """Frees a slot ``reserve`` took that no invocation used."""
        with self._changed:
            self._busy -= 1
            self._changed.notify()

    def run(self, event: Any) -> Invocation:
        """Runs ``event`` in a reserved slot, on an idle worker or a new one."""
        worker: Worker | None = None
        try:
            with self._changed:
                worker = self._idle.pop() if self._idle else None
            if worker is None:
                worker = Worker(self._stack_file, self._function)
                worker.wait_until_ready()
            invocation = worker.invoke(event)
        except WorkerDied as exc:
            if worker is not None:
                worker.close()
            worker = None
            return Invocation(error={"errorType": "Runtime.ExitError", "errorMessage": str(exc)})
        finally:
            with self._changed:
                if worker is not None:
                    self._idle.append(worker)
                self._busy -= 1
                self._changed.notify()
        return invocation

    def invoke(self, event: Any) -> Invocation:
        self.reserve()
        return self.run(event)

    def close(self) -> None:
        with self._changed:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.close()
