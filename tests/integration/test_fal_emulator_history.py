"""The fal emulator serves fal's request history (Platform API ``GET /v1/models/requests/
by-endpoint``) from the requests it recorded, and the pipeline's client reads it: the requests an
endpoint received since a time, with their input, queued or finished, page after page."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from local.aws import free_port
from local.template import REPO_ROOT
from pika_pipeline.errors import FalHistoryUnavailable
from pika_pipeline.fal.request_history import FalRequestHistory

KEY = "history-test-key"
V2_1 = "fal-ai/pika/v2.1/image-to-video"
V2_2 = "fal-ai/pika/v2.2/image-to-video"


class Emulator:
    def __init__(self, url: str, ca_file: str) -> None:
        self.url = url
        self.ca_file = ca_file
        self._tls = ssl.create_default_context(cafile=ca_file)

    def call(
        self, method: str, path: str, body: Any = None, *, key: str | None = KEY
    ) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(  # noqa: S310 - the local emulator
            f"{self.url}{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Key {key}"} if key else {},
        )
        try:
            with urllib.request.urlopen(request, context=self._tls, timeout=10) as response:  # noqa: S310
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def submit(self, endpoint: str, image_url: str) -> str:
        status, answer = self.call(
            "POST", f"/{endpoint}", {"image_url": image_url, "prompt": "history", "duration": 5}
        )
        assert status == 200, answer
        return str(answer["request_id"])


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    state: Path = tmp_path_factory.mktemp("fal-history")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "local.fal_emulator",
            "--port",
            str(free_port()),
            "--state-dir",
            str(state),
            "--fal-key",
            KEY,
            # No runner: every request stays queued, as requests waiting for the account's limit.
            "--concurrency",
            "0",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ready = state / "fal-emulator.json"
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert process.poll() is None, "the emulator exited during start-up"
            assert time.monotonic() < deadline, "the emulator did not start"
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        yield Emulator(info["url"], info["ca_file"])
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def history(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> FalRequestHistory:
    monkeypatch.setenv("SSL_CERT_FILE", emulator.ca_file)  # as the local stack's functions
    emulator.call("POST", "/_emulator/reset")
    return FalRequestHistory(key=KEY, base_url=f"{emulator.url}/v1", timeout_seconds=5)


def test_the_requests_an_endpoint_received_are_listed_with_their_input(
    emulator: Emulator, history: FalRequestHistory
) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    first = emulator.submit(V2_1, "https://images.example/a.png?versionId=1&X-Amz-Signature=s")
    emulator.submit(V2_2, "https://images.example/b.png")  # another endpoint
    second = emulator.submit(V2_1, "https://images.example/c.png")

    listed = history.since(V2_1, before)

    assert {(past.request_id, past.image_url) for past in listed} == {
        (first, "https://images.example/a.png?versionId=1&X-Amz-Signature=s"),
        (second, "https://images.example/c.png"),
    }
    assert all(past.sent_at.endswith("Z") for past in listed)
    # Nothing the endpoint received after the window's start is left out; nothing before it in.
    assert history.since(V2_1, datetime.now(UTC) + timedelta(seconds=5)) == []


def test_a_long_history_comes_in_pages_the_client_follows(
    emulator: Emulator, history: FalRequestHistory
) -> None:
    submitted = {emulator.submit(V2_1, f"https://images.example/{n}.png") for n in range(3)}

    status, page = emulator.call(
        "GET", f"/v1/models/requests/by-endpoint?endpoint_id={V2_1}&limit=2&expand=payloads"
    )
    assert (status, len(page["items"]), page["has_more"]) == (200, 2, True)
    assert page["items"][0]["json_input"]["prompt"] == "history"
    assert page["items"][0]["ended_at"] is None  # still queued: listed all the same
    status, rest = emulator.call(
        "GET",
        f"/v1/models/requests/by-endpoint?endpoint_id={V2_1}&limit=2&cursor={page['next_cursor']}",
    )
    assert (status, len(rest["items"]), rest["has_more"]) == (200, 1, False)
    assert "json_input" not in rest["items"][0]  # payloads only when expanded

    since = datetime.now(UTC) - timedelta(minutes=1)
    assert {past.request_id for past in history.since(V2_1, since)} == submitted


def test_the_history_wants_the_accounts_key(emulator: Emulator) -> None:
    path = f"/v1/models/requests/by-endpoint?endpoint_id={V2_1}"

    assert emulator.call("GET", path, key=None)[0] == 401
    assert emulator.call("GET", path, key="someone-elses")[0] == 401


def test_a_history_fal_cannot_serve_is_an_unknown_not_an_empty_list(
    emulator: Emulator, history: FalRequestHistory
) -> None:
    emulator.submit(V2_1, "https://images.example/a.png")
    emulator.call("POST", "/_emulator/faults", {"history_errors": [503]})

    with pytest.raises(FalHistoryUnavailable, match="503"):
        history.since(V2_1, datetime.now(UTC) - timedelta(minutes=1))

    unreachable = FalRequestHistory(
        key=KEY, base_url=f"https://127.0.0.1:{free_port()}/v1", timeout_seconds=2
    )
    with pytest.raises(FalHistoryUnavailable):
        unreachable.since(V2_1, datetime.now(UTC) - timedelta(minutes=1))


def test_a_request_fal_has_not_indexed_yet_is_not_listed(
    emulator: Emulator, history: FalRequestHistory
) -> None:
    emulator.call("POST", "/_emulator/faults", {"history": ["hidden"]})
    emulator.submit(V2_1, "https://images.example/hidden.png")
    shown = emulator.submit(V2_1, "https://images.example/shown.png")

    listed = history.since(V2_1, datetime.now(UTC) - timedelta(minutes=1))

    assert [past.request_id for past in listed] == [shown]
