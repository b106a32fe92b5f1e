"""One execution environment of a function: imports its handler (the cold start), then runs
the invocations its pool sends, one at a time, until the pool goes away.

``python -m local.lambda_runtime.worker STACK_FILE FUNCTION FD``: FD is this worker's end of
a socket pair; each line on it is ``{"event": ...}`` in and ``{"result": ...}`` or
``{"error": {...}}`` out. What the handler prints goes to the function's log, as on Lambda.
"""

from __future__ import annotations

import importlib
import json
import socket
import sys
import traceback
from pathlib import Path

from local.lambda_runtime.context import LocalLambdaContext


def main() -> None:
    stack_file, function, fd = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    spec = json.loads(stack_file.read_text())["functions"][function]
    module_name, handler_name = spec["handler"].rsplit(".", 1)
    handler = getattr(importlib.import_module(module_name), handler_name)
    channel = socket.socket(fileno=fd)
    requests = channel.makefile("rb")
    channel.sendall(b'{"ready": true}\n')
    for line in requests:  # ends when the pool closes its end or its process dies
        context = LocalLambdaContext(spec["function_name"], spec["memory"], spec["timeout"])
        try:
            answer = {"result": handler(json.loads(line)["event"], context)}
            reply = json.dumps(answer).encode()
        except Exception as exc:
            traceback.print_exc()
            error = {"errorMessage": str(exc), "errorType": type(exc).__name__}
            reply = json.dumps({"error": error}).encode()
        channel.sendall(reply + b"\n")


if __name__ == "__main__":
    main()
