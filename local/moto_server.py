"""moto's server with one fidelity fix: DynamoDB writes are atomic, as they are on AWS.

moto evaluates a ConditionExpression and then writes, with no lock in between, while its server
handles requests on many threads: two concurrent conditional writes could both succeed, which
DynamoDB never allows. Serialising DynamoDB requests restores the guarantee the pipeline's
exactly-once claim relies on. Every other service keeps moto's concurrency.

Run as ``python -m local.moto_server HOST PORT``.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

_DYNAMODB = threading.Lock()


class AtomicDynamoDB:
    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            with _DYNAMODB:
                return list(self._app(environ, start_response))
        return self._app(environ, start_response)


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, AtomicDynamoDB(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
