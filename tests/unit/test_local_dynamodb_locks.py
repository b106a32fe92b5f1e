"""The lock that makes the local stack's DynamoDB atomic per item (local/moto_server.py).

moto checks a condition and then writes, with a window in between: the stand-in below widens
that window, so an unguarded pair of writes would both win.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from local.moto_server import AtomicDynamoDB, SharedOrAlone

WINDOW_SECONDS = 0.02


class CheckThenWrite:
    """A WSGI app that, like moto, checks whether an item exists, then writes it."""

    def __init__(self) -> None:
        self.items: dict[str, str] = {}
        self._guard = threading.Lock()
        self.running: set[str] = set()
        self.overlapped: set[str] = set()  # operations that ran beside another request

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        operation = environ["HTTP_X_AMZ_TARGET"].rpartition(".")[2]
        body = json.loads(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))
        me = f"{operation}:{body.get('Writer', '')}"
        with self._guard:
            if self.running:
                self.overlapped |= {me, *self.running}
            self.running.add(me)
        key = json.dumps(body.get("Key"))
        exists = key in self.items
        time.sleep(WINDOW_SECONDS)
        won = operation == "UpdateItem" and not exists
        if won:
            self.items[key] = body["Writer"]
        with self._guard:
            self.running.discard(me)
        start_response("200 OK" if won else "400 Bad Request", [])
        return [b"won" if won else b"lost"]


def _request(app: AtomicDynamoDB, operation: str, body: dict[str, Any]) -> bytes:
    data = json.dumps({"TableName": "Jobs", **body}).encode()
    environ = {
        "HTTP_X_AMZ_TARGET": f"DynamoDB_20120810.{operation}",
        "CONTENT_LENGTH": str(len(data)),
        "wsgi.input": io.BytesIO(data),
    }
    return b"".join(app(environ, lambda *_: None))


def _update(app: AtomicDynamoDB, job_id: str, writer: int) -> Callable[[], bytes]:
    return lambda: _request(app, "UpdateItem", {"Key": {"job_id": {"S": job_id}}, "Writer": writer})


def _all_at_once(calls: list[Callable[[], bytes]]) -> list[bytes]:
    answers: list[bytes] = [b""] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(index: int) -> None:
        barrier.wait()
        answers[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_concurrent_conditional_writes_to_one_item_have_one_winner() -> None:
    moto = CheckThenWrite()
    app = AtomicDynamoDB(moto)

    answers = _all_at_once([_update(app, "a", writer) for writer in range(8)])

    assert answers.count(b"won") == 1
    assert moto.overlapped == set()


def test_writes_to_different_items_run_side_by_side() -> None:
    moto = CheckThenWrite()
    app = AtomicDynamoDB(moto)

    answers = _all_at_once([_update(app, f"job-{writer}", writer) for writer in range(8)])

    assert answers == [b"won"] * 8
    assert len(moto.overlapped) > 1  # not queued behind each other, as on DynamoDB


def test_a_query_runs_alone() -> None:
    moto = CheckThenWrite()
    app = AtomicDynamoDB(moto)
    writes = [_update(app, f"job-{writer}", writer) for writer in range(6)]

    _all_at_once([*writes, lambda: _request(app, "Query", {"Writer": "q"})])

    assert "Query:q" not in moto.overlapped


def test_a_request_waiting_to_run_alone_goes_before_later_arrivals() -> None:
    # Without this, the requests of a batch of uploads keep sharing the lock and a transaction
    # waits for all of them (the submit batch benchmark saw 300 ms).
    lock = SharedOrAlone()
    entered: list[str] = []
    release_first = threading.Event()
    later_trying = threading.Event()

    def hold_shared() -> None:
        with lock.shared():
            entered.append("first")
            release_first.wait()

    def alone() -> None:
        with lock.alone():
            entered.append("alone")

    def later_shared() -> None:
        later_trying.set()
        with lock.shared():
            entered.append("later")

    first = threading.Thread(target=hold_shared)
    first.start()
    while not entered:
        time.sleep(0.001)
    waiting_alone = threading.Thread(target=alone)
    waiting_alone.start()
    while not lock.someone_waits_to_be_alone:
        time.sleep(0.001)
    later = threading.Thread(target=later_shared)
    later.start()
    later_trying.wait()
    later.join(timeout=0.2)  # the old lock let it in at once, beside the first holder
    release_first.set()
    for thread in (first, waiting_alone, later):
        thread.join()

    assert entered == ["first", "alone", "later"]
