"""Lambda's Invoke API for scheduled functions, so anyone can run one now with the real client:
``boto3.client("lambda", endpoint_url=...).invoke(FunctionName=..., Payload=...)``."""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from local.lambda_runtime.context import LocalLambdaContext
from local.lambda_runtime.http_reply import reply


def serve(
    *,
    handler: Callable[[dict[str, Any], Any], Any],
    function_name: str,
    memory: int,
    timeout: int,
    port: int,
) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # no delayed-ACK stall: see local/fault_proxy.py

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if not self.path.endswith("/invocations"):
                return self._reply(404, {"Message": "unknown route"}, {})
            event = json.loads(body or b"{}")
            headers = {"X-Amz-Executed-Version": "$LATEST"}
            try:
                result = handler(event, LocalLambdaContext(function_name, memory, timeout))
            except Exception as exc:
                traceback.print_exc()
                headers["X-Amz-Function-Error"] = "Unhandled"
                result = {"errorMessage": str(exc), "errorType": type(exc).__name__}
            return self._reply(200, result, headers)

        def _reply(self, status: int, payload: Any, headers: dict[str, str]) -> None:
            data = json.dumps(payload).encode()
            reply(self, status, {**headers, "Content-Type": "application/json"}, data)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    return server
