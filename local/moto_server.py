"""moto's server with three fidelity fixes and three savings of CPU.

The fixes: DynamoDB writes are atomic per item, as they are on AWS; S3 refuses user metadata
over 2 KB with ``400 MetadataTooLarge``, as S3 does (moto stores any size, so a pipeline that
wrote too much metadata would pass every local test and fail every copy in AWS); and S3's
conditional writes hold: CopyObject honours ``If-Match``, ``If-None-Match`` and
``x-amz-copy-source-if-match`` (moto ignores all three, so a race for a readable video key would
pass locally and lose in AWS), and every conditional write checks and writes as one step.

moto evaluates a ConditionExpression and then writes, with no lock in between, while its server
handles requests on many threads: two concurrent conditional writes could both succeed, which
DynamoDB never allows. Requests that name one item (GetItem, UpdateItem, DeleteItem) are
serialised per item, so writes to different items still run side by side, as on DynamoDB (one
global lock made a batch of ten claims queue behind each other). Everything else that reaches
DynamoDB (PutItem, whose key moto alone knows, queries, scans, transactions, table calls) runs
alone. Every other service keeps moto's concurrency.

The savings make every AWS call of the local stack cheaper, for the tests, the demo and chaos
runs alike: moto shares the machine's few cores with the functions it serves, so each
millisecond it spends is one a function waits for. moto's dispatcher lists its package directory
and tries some 180 URL patterns on every request, under a lock all requests share: ``HostMemo``
remembers the answer per host. werkzeug writes a line per request, which fills moto's log with
noise: only server errors are written now, with their tracebacks. And moto backs up every table a
transaction touches, whole, in case it must roll back: each TransactWriteItems copied the entire
jobs table, so a transaction cost more the more jobs a stack had seen (a slot transaction took
three UpdateItems' time on a small table, and grew with every chaos upload). ``ItemRollback``
keeps a copy of the transaction's own items instead, and puts those back.

Run as ``python -m local.moto_server HOST PORT``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import unquote

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

# DynamoDB operations that name exactly one item in their "Key".
SINGLE_ITEM = frozenset({"GetItem", "UpdateItem", "DeleteItem"})


class SharedOrAlone:
    """A readers-writer lock: many holders share it, or one holds it alone.

    One waiting to be alone goes first: holders keep coming to share it while a batch of
    uploads runs, and the transaction waiting behind them would wait for the whole batch."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._sharing = 0
        self._alone = False
        self._waiting_alone = 0

    @property
    def someone_waits_to_be_alone(self) -> bool:
        with self._changed:
            return self._waiting_alone > 0

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: not self._alone and not self._waiting_alone)
            self._sharing += 1
        try:
            yield
        finally:
            with self._changed:
                self._sharing -= 1
                self._changed.notify_all()

    @contextlib.contextmanager
    def alone(self) -> Iterator[None]:
        with self._changed:
            self._waiting_alone += 1
            self._changed.wait_for(lambda: not self._alone and self._sharing == 0)
            self._waiting_alone -= 1
            self._alone = True
        try:
            yield
        finally:
            with self._changed:
                self._alone = False
                self._changed.notify_all()


class AtomicDynamoDB:
    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self._table_calls = SharedOrAlone()
        self._item_locks: defaultdict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)
        self._item_locks_guard = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith("DynamoDB_"):
            return self._app(environ, start_response)
        item = self._item_of(target.rpartition(".")[2], environ)
        if item is None:
            with self._table_calls.alone():
                return list(self._app(environ, start_response))
        with self._item_locks_guard:
            lock = self._item_locks[item]
        with self._table_calls.shared(), lock:
            return list(self._app(environ, start_response))

    @staticmethod
    def _item_of(operation: str, environ: dict[str, Any]) -> tuple[str, str] | None:
        """(table, key) of a single-item request; the body is read and put back for moto."""
        if operation not in SINGLE_ITEM:
            return None
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        try:
            request = json.loads(body)
            return str(request["TableName"]), json.dumps(request["Key"], sort_keys=True)
        except (ValueError, KeyError, TypeError):
            return None  # moto answers the malformed request; it runs alone meanwhile


# S3's limit: the UTF-8 bytes of every user metadata name (without x-amz-meta-) and value.
METADATA_LIMIT_BYTES = 2048
_META_PREFIX = "HTTP_X_AMZ_META_"


class S3MetadataLimit:
    """Refuses a PutObject, CreateMultipartUpload or CopyObject whose metadata S3 would refuse."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("REQUEST_METHOD") in ("PUT", "POST"):
            size = sum(
                len(name[len(_META_PREFIX) :].encode()) + len(str(value).encode("latin-1"))
                for name, value in environ.items()
                if name.startswith(_META_PREFIX)
            )
            if size > METADATA_LIMIT_BYTES:
                body = (
                    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>MetadataTooLarge</Code>'
                    "<Message>Your metadata headers exceed the maximum allowed metadata size."
                    f"</Message><Size>{size}</Size>"
                    f"<MaxSizeAllowed>{METADATA_LIMIT_BYTES}</MaxSizeAllowed></Error>"
                ).encode()
                start_response(
                    "400 Bad Request",
                    [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))],
                )
                return [body]
        return self._app(environ, start_response)


_PRECONDITION_FAILED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>PreconditionFailed</Code>'
    b"<Message>At least one of the pre-conditions you specified did not hold</Message></Error>"
)
_CONDITIONS = ("HTTP_IF_MATCH", "HTTP_IF_NONE_MATCH", "HTTP_X_AMZ_COPY_SOURCE_IF_MATCH")


class S3ConditionalWrites:
    """Conditional S3 writes, one at a time; CopyObject's conditions checked here."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("REQUEST_METHOD") not in ("PUT", "POST") or not any(
            environ.get(name) for name in _CONDITIONS
        ):
            return self._app(environ, start_response)
        with self._lock:  # check and write as one step, as S3 does
            copy_source = environ.get("HTTP_X_AMZ_COPY_SOURCE")
            if copy_source and not self._copy_conditions_hold(environ, copy_source):
                start_response(
                    "412 Precondition Failed",
                    [
                        ("Content-Type", "application/xml"),
                        ("Content-Length", str(len(_PRECONDITION_FAILED))),
                    ],
                )
                return [_PRECONDITION_FAILED]
            if copy_source:
                for name in _CONDITIONS:  # checked: moto reads x-amz-copy-source-* itself
                    environ.pop(name, None)
            return list(self._app(environ, start_response))

    @staticmethod
    def _copy_conditions_hold(environ: dict[str, Any], copy_source: str) -> bool:
        from moto.s3.models import s3_backends

        from local.aws import ACCOUNT_ID

        backend = s3_backends[ACCOUNT_ID]["aws"]
        bucket, key = _bucket_and_key(environ)
        source_bucket, _, source_key = (
            unquote(copy_source.split("?", 1)[0]).lstrip("/").partition("/")
        )
        current = backend.get_object(bucket, key) if bucket in backend.buckets else None
        source = (
            backend.get_object(source_bucket, source_key)
            if source_bucket in backend.buckets
            else None
        )
        if_match = environ.get("HTTP_IF_MATCH")
        if_none_match = environ.get("HTTP_IF_NONE_MATCH")
        source_if_match = environ.get("HTTP_X_AMZ_COPY_SOURCE_IF_MATCH")
        if if_match is not None and (current is None or _etag(current.etag) != _etag(if_match)):
            return False
        if if_none_match == "*" and current is not None:
            return False
        return source_if_match is None or (
            source is not None and _etag(source.etag) == _etag(source_if_match)
        )


def _etag(value: str) -> str:
    return value.strip().strip('"')


def _bucket_and_key(environ: dict[str, Any]) -> tuple[str, str]:
    """Path-style (``/bucket/key``) or virtual-hosted (``bucket.host/key``) addressing."""
    path = unquote(environ.get("PATH_INFO", "")).lstrip("/")
    host = environ.get("HTTP_HOST", "").split(":", 1)[0]
    if ".s3." in f".{host}" or host.endswith(".localhost"):
        return host.split(".", 1)[0], path
    bucket, _, key = path.partition("/")
    return bucket, key


class ItemRollback:
    """moto's TransactWriteItems, rolled back item by item instead of from whole-table copies.

    moto copies each table with ``copy.deepcopy`` through its models module's ``copy``: this
    stands in for that module there, hands the live table back instead of a copy (so moto's own
    rollback restores nothing), and ``transact_write_items`` restores the transaction's items from
    copies of them taken first. Transactions run alone (AtomicDynamoDB), so nothing else writes
    those items in between.
    """

    def __init__(self) -> None:
        from moto.dynamodb.models.table import Table

        self._table_type = Table

    def deepcopy(self, value: Any, memo: dict[int, Any] | None = None) -> Any:
        if isinstance(value, self._table_type):
            return value
        return copy.deepcopy(value, memo)

    @classmethod
    def install(cls) -> None:
        from moto.dynamodb import models

        models.copy = cls()  # type: ignore[attr-defined,assignment]
        transact = models.DynamoDBBackend.transact_write_items

        def transact_write_items(backend: Any, transact_items: list[dict[str, Any]]) -> None:
            before = [_item_as_it_was(backend, op) for op in transact_items]
            try:
                transact(backend, transact_items)
            except Exception:
                for restore in reversed(before):
                    if restore is not None:
                        restore()
                raise

        models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign,assignment]


def _item_as_it_was(backend: Any, transact_item: dict[str, Any]) -> Callable[[], None] | None:
    """What puts the item a transaction's operation names back as it is now (None: moto will
    refuse the operation before writing anything)."""
    try:
        _, operation = next(iter(transact_item.items()))
        table = backend.get_table(operation["TableName"])
        key = operation.get("Key") or {
            name: operation["Item"][name]
            for name in (table.hash_key_attr, table.range_key_attr)
            if name is not None
        }
        hash_key, range_key = backend.get_keys_value(table, key)
    except Exception:
        return None
    was = copy.deepcopy(table.get_item(hash_key, range_key))

    def restore() -> None:
        if range_key is None:
            if was is None:
                table.items.pop(hash_key, None)
            else:
                table.items[hash_key] = was
        elif was is None:
            table.items[hash_key].pop(range_key, None)
        else:
            table.items[hash_key][range_key] = was

    return restore


class HostMemo(DomainDispatcherApplication):
    """moto's dispatcher, remembering which backend serves each host (its answer never changes)."""

    def __init__(self, create_app: Callable[..., Any]) -> None:
        super().__init__(create_app)
        self._backends: dict[str | None, Any] = {}

    def get_backend_for_host(self, host: str | None) -> Any:
        # moto calls this under its dispatcher lock, so the memo needs no lock of its own.
        if host not in self._backends:
            self._backends[host] = super().get_backend_for_host(host)
        return self._backends[host]


class QuietRequestHandler(MotoRequestHandler):
    """Writes a request line only for a server error (its traceback is written regardless)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if str(code).startswith("5"):
            super().log_request(code, size)


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MOTO_PORT", str(port))
    ItemRollback.install()
    app = HostMemo(create_backend_app)
    run_simple(
        host,
        port,
        S3ConditionalWrites(S3MetadataLimit(AtomicDynamoDB(app))),
        threaded=True,
        request_handler=QuietRequestHandler,
    )


if __name__ == "__main__":
    main()
