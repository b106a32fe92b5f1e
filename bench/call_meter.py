"""Counts a function's network calls from inside its process, for the benchmark.

Each HTTP request the function sends is one line, ``<epoch seconds>\t<service.operation>``,
appended to ``<calls dir>/<function name>.tsv``. AWS calls are counted with botocore's
``before-send`` event (every attempt, retries included), fal_client's with an httpx ``request``
event hook. urllib3, which the webhook uses for fal's media and keys, has no hooks: its pools'
``urlopen`` is wrapped instead, skipping the AWS endpoint's requests that botocore already
counted. The benchmark installs it in the local stack's function processes (their event source
and their workers) through ``call_meter_site/sitecustomize.py``, which Python runs at start-up
when that directory is on the path: the local stack knows nothing of it, and no deployed
function has it.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# Where the function processes write their counts; unset, the meter stays out.
CALLS_DIR_VARIABLE = "PIKA_BENCH_CALLS_DIR"
SITE_DIR = Path(__file__).parent / "call_meter_site"

# botocore names services by their hyphenated service id; the wire (fault proxy) by endpoint.
_AWS_NAMES = {"eventbridge": "events", "secrets-manager": "secretsmanager"}


def fal_call_name(method: str, path: str) -> str:
    """The kind of fal call a request is, as the benchmark tables name it."""
    if path.startswith("/files/"):
        return "fal.GET video"
    if path == "/.well-known/jwks.json":
        return "fal.GET jwks"
    if method == "POST":
        return "fal.POST submit"
    return f"fal.{method} {path.split('/requests/')[0]}"


def function_environment(state_dir: Path) -> dict[str, str]:
    """What the function processes of a stack in ``state_dir`` need, with ``SITE_DIR`` on their
    path, to count their calls (into ``calls_dir(state_dir)``)."""
    calls_dir(state_dir).mkdir(parents=True, exist_ok=True)
    return {CALLS_DIR_VARIABLE: str(calls_dir(state_dir))}


def calls_dir(state_dir: Path) -> Path:
    return state_dir / "calls"


def calls_file(directory: Path, function_name: str) -> Path:
    """Where the function named ``function_name`` (its physical name) counts its calls."""
    return directory / f"{function_name}.tsv"


def install_from_environment() -> None:
    """Installs the meter in this process if the benchmark asked for it (sitecustomize)."""
    calls_dir, function_name = (
        os.environ.get(CALLS_DIR_VARIABLE),
        os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
    )
    if calls_dir and function_name:
        # Marks every AWS call of this function at the wire (the fault proxy counts by it).
        os.environ.setdefault("AWS_SDK_UA_APP_ID", function_name)
        CallMeter(calls_file(Path(calls_dir), function_name)).install()


def read_calls(path: Path, *, since: float = 0.0, until: float = float("inf")) -> list[str]:
    """The operations a meter file recorded between two epoch times."""
    if not path.is_file():
        return []
    calls = []
    for line in path.read_text(encoding="utf-8").splitlines():
        stamp, _, operation = line.partition("\t")
        if operation and since <= float(stamp) < until:
            calls.append(operation)
    return calls


class CallMeter:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        aws = os.environ.get("AWS_ENDPOINT_URL", "")
        self._aws_endpoint = urlsplit(aws).netloc if aws else None

    def record(self, operation: str) -> None:
        line = f"{time.time():.6f}\t{operation}\n"
        with self._lock, self._path.open("a", encoding="utf-8") as handle:
            handle.write(line)

    def install(self) -> None:
        self._hook_botocore()
        self._hook_httpx()
        self._hook_urllib3()

    def _hook_botocore(self) -> None:
        from botocore import handlers

        def before_send(event_name: str, **_: Any) -> None:
            service, operation = event_name.split(".", 2)[1:]
            self.record(f"{_AWS_NAMES.get(service, service)}.{operation}")

        # Every botocore session registers these when it is created: the functions' default
        # session and the ones Powertools' parameter providers make.
        handlers.BUILTIN_HANDLERS.append(("before-send", before_send))

    def _hook_httpx(self) -> None:
        try:
            import httpx
        except ImportError:  # a function that does not ship it
            return

        def on_request(request: httpx.Request) -> None:
            self.record(fal_call_name(request.method, request.url.path))

        original = httpx.Client.__init__

        @functools.wraps(original)
        def with_hook(client: httpx.Client, *args: Any, **kwargs: Any) -> None:
            transport = kwargs.get("transport")
            if transport is not None and not isinstance(transport, httpx.HTTPTransport):
                # fal_client's client sends through a transport that wraps a client of its own
                # (BackupDomainTransport): only the one that reaches the network counts.
                original(client, *args, **kwargs)
                return
            hooks = dict(kwargs.pop("event_hooks", None) or {})
            hooks["request"] = [*hooks.get("request", []), on_request]
            original(client, *args, event_hooks=hooks, **kwargs)

        httpx.Client.__init__ = with_hook  # type: ignore[assignment]

    def _hook_urllib3(self) -> None:
        from urllib3 import connectionpool

        original = connectionpool.HTTPConnectionPool.urlopen

        @functools.wraps(original)
        def counted(pool: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            endpoint = f"{pool.host}:{pool.port}"
            if endpoint != self._aws_endpoint:
                self.record(fal_call_name(method, urlsplit(url).path))
            return original(pool, method, url, *args, **kwargs)

        connectionpool.HTTPConnectionPool.urlopen = counted  # type: ignore[assignment]
