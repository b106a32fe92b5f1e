"""The local moto server's savings change nothing a client sees (local/moto_server.py).

HostMemo must route every host exactly as moto's own dispatcher does, and the quiet log must
still show every server error.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from local.aws import REGION, MotoServer, free_port
from local.moto_server import HostMemo

HOSTS = [
    None,
    "moto_api",
    "dynamodb",  # a moto module's own name
    f"dynamodb.{REGION}.amazonaws.com",
    "s3.amazonaws.com",
    f"pika-input.s3.{REGION}.amazonaws.com",
    f"sqs.{REGION}.amazonaws.com",
    f"events.{REGION}.amazonaws.com",
    f"secretsmanager.{REGION}.amazonaws.com",
    "nothing.example.com",
]


def test_the_memo_routes_every_host_as_moto_does() -> None:
    moto = DomainDispatcherApplication(create_backend_app)
    memo = HostMemo(create_backend_app)
    for host in HOSTS:
        expected = moto.get_backend_for_host(host)
        assert memo.get_backend_for_host(host) == expected, host
        assert memo.get_backend_for_host(host) == expected, f"{host}, from the memo"


def test_the_memo_asks_moto_once_per_host(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str | None] = []
    original = DomainDispatcherApplication.get_backend_for_host

    def counting(self: DomainDispatcherApplication, host: str | None) -> object:
        asked.append(host)
        return original(self, host)

    monkeypatch.setattr(DomainDispatcherApplication, "get_backend_for_host", counting)
    memo = HostMemo(create_backend_app)
    for _ in range(3):
        for host in HOSTS:
            memo.get_backend_for_host(host)
    assert sorted(map(str, asked)) == sorted(map(str, HOSTS))


def _post_dynamodb(endpoint: str, operation: str, body: bytes) -> int:
    request = urllib.request.Request(  # noqa: S310 - a loopback URL
        endpoint,
        data=body,
        method="POST",
        headers={
            "X-Amz-Target": f"DynamoDB_20120810.{operation}",
            "Content-Type": "application/x-amz-json-1.0",
            "Authorization": (
                f"AWS4-HMAC-SHA256 Credential=testing/20261203/{REGION}/dynamodb/aws4_request, "
                "SignedHeaders=host, Signature=0"
            ),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.stack  # starts a moto server of its own
def test_the_log_keeps_server_errors_and_drops_successes(tmp_path: Path) -> None:
    log = tmp_path / "moto.log"
    server = MotoServer(free_port(), log)
    server.start()
    try:
        assert _post_dynamodb(server.endpoint, "ListTables", json.dumps({}).encode()) == 200
        # No TableName: moto raises, and werkzeug answers 500.
        assert _post_dynamodb(server.endpoint, "UpdateItem", b"{}") == 500
        # werkzeug writes the traceback after it has answered.
        deadline = time.monotonic() + 10
        while "KeyError: 'TableName'" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.stop()
    text = log.read_text()
    assert "KeyError: 'TableName'" in text  # the traceback says what went wrong
    request_lines = [line for line in text.splitlines() if "HTTP/1.1" in line]
    assert len(request_lines) == 1, request_lines
    assert '" 500 ' in request_lines[0]
