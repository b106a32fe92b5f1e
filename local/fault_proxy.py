"""A proxy between the functions and moto that injects AWS errors on demand.

The functions' AWS_ENDPOINT_URL points here; everything is forwarded to moto unchanged unless a
fault rule matches, in which case the request gets the error AWS itself would send (S3's XML,
DynamoDB's JSON). Tests arm rules to prove that a failure half-way (an S3 part upload, a
DynamoDB write) loses nothing.

  POST /_faults        {"service": "s3", "operation": "UploadPart", "times": 5, "status": 500}
                       ("rate": 0.1 instead of "times" fails a fraction of matching calls;
                       "delay_seconds": 0.01 with "rate": 1 forwards every matching call after
                       that long instead of failing it: network latency;
                       "reply_delay_seconds": 30 forwards the call at once and holds its answer:
                       the write is done, and its caller is caught waiting for the reply;
                       "hold_seconds": 30 holds the call that long, then fails it without
                       forwarding it: its caller is caught waiting before the call took effect;
                       "contains": "videos/abc/" matches only calls whose path, copy source or
                       body holds that text, to aim at one object or one item)
  POST /_faults/reset  forget every rule, and zero the call counts
  GET  /_faults        the rules and how often each fired
  GET  /_faults/calls  how many calls of each service.operation went through
  GET  /_faults/scans  what each DynamoDB Scan read: "table" or "table/index" (a sparse index
                       may be scanned; a table never should)
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from local.lambda_runtime.http_reply import reply

_TARGET_SERVICES = {
    "DynamoDB": "dynamodb",
    "AmazonSQS": "sqs",
    "secretsmanager": "secretsmanager",
    "AWSEvents": "events",
}
# Hop-by-hop headers are the proxy's own business, not the upstream's.
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


@dataclass
class FaultRule:
    service: str
    operation: str
    status: int = 500
    times: int | None = None
    rate: float | None = None
    delay_seconds: float | None = None
    reply_delay_seconds: float | None = None
    hold_seconds: float | None = None
    contains: str | None = None
    fired: int = 0

    def aims_at(self, service: str, operation: str, texts: tuple[bytes, ...]) -> bool:
        return (
            self.service == service
            and self.operation in ("*", operation)
            and (self.contains is None or any(self.contains.encode() in t for t in texts))
        )

    def fires(self) -> bool:
        if self.times is not None:
            if self.fired >= self.times:
                return False
        elif self.rate is None or random.random() >= self.rate:
            return False
        self.fired += 1
        return True


def operation_of(method: str, path: str, headers: dict[str, str]) -> tuple[str, str]:
    """(service, operation) of an AWS request, as far as the rules need to tell."""
    target = headers.get("x-amz-target", "")
    if target:  # the JSON protocols name the operation in a header
        prefix, _, operation = target.rpartition(".")
        return _TARGET_SERVICES.get(prefix.split("_")[0], prefix.lower()), operation
    query = parse_qs(urlsplit(path).query, keep_blank_values=True)
    if method == "PUT" and "partNumber" in query:
        return "s3", "UploadPart"
    if method == "POST" and "uploads" in query:
        return "s3", "CreateMultipartUpload"
    if method == "POST" and "uploadId" in query:
        return "s3", "CompleteMultipartUpload"
    if method == "DELETE" and "uploadId" in query:
        return "s3", "AbortMultipartUpload"
    names = {"PUT": "PutObject", "GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}
    return "s3", names.get(method, method)


def error_body(service: str, status: int) -> tuple[bytes, str]:
    if service == "dynamodb":
        kind = "InternalServerError" if status >= 500 else "ThrottlingException"
        body = {"__type": f"com.amazonaws.dynamodb.v20120810#{kind}", "message": "injected fault"}
        return json.dumps(body).encode(), "application/x-amz-json-1.0"
    code = "InternalError" if status >= 500 else "SlowDown"
    xml = f"<Error><Code>{code}</Code><Message>injected fault</Message></Error>"
    return xml.encode(), "application/xml"


def _app_id(user_agent: str) -> str:
    return next((t[4:] for t in user_agent.split() if t.startswith("app/")), "")


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.rules: list[FaultRule] = []
        self.calls: Counter[str] = Counter()
        # The same calls by the caller's SDK app id (``app/<id>`` in botocore's User-Agent, from
        # AWS_SDK_UA_APP_ID): the benchmark tells which function made a call at the wire.
        self.calls_by_app: dict[str, Counter[str]] = {}
        self.scans: Counter[str] = Counter()
        self.lock = threading.Lock()

    def saw_scan(self, body: bytes) -> None:
        request = json.loads(body or b"{}")
        target = "/".join(filter(None, (request.get("TableName"), request.get("IndexName"))))
        with self.lock:
            self.scans[target] += 1

    def match(
        self, service: str, operation: str, app: str = "", texts: tuple[bytes, ...] = ()
    ) -> FaultRule | None:
        """The rule that fires for this call, if any; ``texts``: where ``contains`` looks."""
        with self.lock:
            self.calls[f"{service}.{operation}"] += 1
            self.calls_by_app.setdefault(app, Counter())[f"{service}.{operation}"] += 1
            for rule in self.rules:
                if rule.aims_at(service, operation, texts) and rule.fires():
                    return rule
        return None


def make_handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # The reply's headers and body are two writes: with Nagle's algorithm on, the body
        # waits for the client's delayed ACK of the headers, about 40 ms on every AWS call.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.startswith("/_faults"):
                return self._control(body)
            headers = {k.lower(): v for k, v in self.headers.items()}
            service, operation = operation_of(self.command, self.path, headers)
            texts = (self.path.encode(), headers.get("x-amz-copy-source", "").encode(), body)
            rule = proxy.match(
                service, operation, _app_id(self.headers.get("User-Agent", "")), texts
            )
            if (service, operation) == ("dynamodb", "Scan"):
                proxy.saw_scan(body)
            if rule is not None and rule.delay_seconds is not None:
                time.sleep(rule.delay_seconds)
            elif rule is not None and rule.reply_delay_seconds is None:
                if rule.hold_seconds is not None:
                    time.sleep(rule.hold_seconds)
                payload, content_type = error_body(service, rule.status)
                return self._reply(rule.status, {"Content-Type": content_type}, payload)
            connection = http.client.HTTPConnection(
                proxy.upstream_host, proxy.upstream_port, timeout=60
            )
            try:
                forwarded = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                connection.request(self.command, self.path, body=body, headers=forwarded)
                response = connection.getresponse()
                payload = response.read()
                if rule is not None and rule.reply_delay_seconds is not None:
                    time.sleep(rule.reply_delay_seconds)
                reply_headers = {
                    k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP
                }
                self._reply(response.status, reply_headers, payload)
            finally:
                connection.close()
            return None

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _handle

        def _control(self, body: bytes) -> None:
            with proxy.lock:
                state: Any
                if self.path == "/_faults/calls":
                    state = dict(proxy.calls)
                elif self.path == "/_faults/scans":
                    state = dict(proxy.scans)
                elif self.path == "/_faults/calls/by-app":
                    state = {app: dict(calls) for app, calls in proxy.calls_by_app.items()}
                elif self.command == "POST" and self.path == "/_faults/reset":
                    proxy.rules.clear()
                    proxy.calls.clear()
                    proxy.calls_by_app.clear()
                    proxy.scans.clear()
                    state = []
                elif self.command == "POST":
                    proxy.rules.append(FaultRule(**json.loads(body)))
                    state = [asdict(rule) for rule in proxy.rules]
                else:
                    state = [asdict(rule) for rule in proxy.rules]
            self._reply(200, {"Content-Type": "application/json"}, json.dumps(state).encode())

        def _reply(self, status: int, headers: dict[str, str], payload: bytes) -> None:
            reply(self, status, headers, payload)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(FaultProxy(args.upstream)))
    server.daemon_threads = True
    print(json.dumps({"fault_proxy": f"http://127.0.0.1:{args.port}"}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
