"""Lambda's Invoke API for scheduled functions, so anyone can run one now with the real client:
``boto3.client("lambda", endpoint_url=...).invoke(FunctionName=..., Payload=...)``."""

from __future__ import annotations

import json
from http.server import ThreadingHTTPServer
from typing import Any

from local.lambda_runtime import http_front
from local.lambda_runtime.http_front import Request, Response
from local.lambda_runtime.pool import WorkerPool


def serve(*, pool: WorkerPool, port: int) -> ThreadingHTTPServer:
    def respond(request: Request) -> Response:
        if request.method != "POST" or not request.target.endswith("/invocations"):
            return _json(404, {"Message": "unknown route"}, {})
        invocation = pool.invoke(json.loads(request.body or b"{}"))
        headers = {"X-Amz-Executed-Version": "$LATEST"}
        if invocation.error is not None:
            headers["X-Amz-Function-Error"] = "Unhandled"
            return _json(200, invocation.error, headers)
        return _json(200, invocation.result, headers)

    return http_front.serve(port=port, respond=respond)


def _json(status: int, payload: Any, headers: dict[str, str]) -> Response:
    headers = {**headers, "Content-Type": "application/json"}
    return Response(status, headers, json.dumps(payload).encode())
