"""An HTTP server that turns requests into Lambda Function URL events (payload format 2.0)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from local.lambda_runtime import http_front
from local.lambda_runtime.http_front import Request, Response
from local.lambda_runtime.pool import WorkerPool

# Function URLs pass these bodies as text; anything else arrives base64-encoded.
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript")
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
URL_ID = "local0webhook0url"


def function_url_event(
    *, method: str, target: str, headers: dict[str, str], body: bytes, source_ip: str
) -> dict[str, Any]:
    parts = urlsplit(target)
    lowered = {name.lower(): value for name, value in headers.items()}
    content_type = lowered.get("content-type", "")
    is_text = content_type.startswith(_TEXT_TYPES)
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": parts.path or "/",
        "rawQueryString": parts.query,
        "headers": lowered,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": URL_ID,
            "domainName": lowered.get("host", f"{URL_ID}.lambda-url.us-east-1.on.aws"),
            "domainPrefix": URL_ID,
            "http": {
                "method": method,
                "path": parts.path or "/",
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": bool(body) and not is_text,
    }
    query: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    if query:
        event["queryStringParameters"] = query
    if body:
        event["body"] = body.decode("utf-8") if is_text else base64.b64encode(body).decode()
    return event


def serve(*, pool: WorkerPool, port: int) -> ThreadingHTTPServer:
    def respond(request: Request) -> Response:
        if len(request.body) > MAX_PAYLOAD_BYTES:
            return Response(413, {}, json.dumps({"Message": "Request Too Long"}).encode())
        event = function_url_event(
            method=request.method,
            target=request.target,
            headers=request.headers,
            body=request.body,
            source_ip=request.source_ip,
        )
        invocation = pool.invoke(event)
        if invocation.error is not None:
            return Response(502, {}, b'{"Message":"Internal Server Error"}')
        return Response(*_response(invocation.result))

    return http_front.serve(port=port, respond=respond)


def _response(result: Any) -> tuple[int, dict[str, str], bytes]:
    """Lambda's rules: a dict with statusCode is a full response; anything else is a JSON body."""
    if isinstance(result, dict) and "statusCode" in result:
        body = result.get("body") or ""
        payload = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
        return int(result["statusCode"]), dict(result.get("headers") or {}), payload
    if isinstance(result, str):
        return 200, {"Content-Type": "application/json"}, result.encode()
    return 200, {"Content-Type": "application/json"}, json.dumps(result).encode()
