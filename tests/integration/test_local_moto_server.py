"""The local moto server's savings change nothing a client sees (local/moto_server.py).

HostMemo must route every host exactly as moto's own dispatcher does, the quiet log must
still show every server error, and a cancelled transaction must leave every item as it was
(ItemRollback). Where moto is laxer than S3 in a way the pipeline depends on (the 2 KB of user
metadata), the local server refuses as S3 does.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from local.aws import REGION, MotoServer, free_port
from local.moto_server import HostMemo
from tests.support.pipeline import Pipeline

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import KeySchemaElementTypeDef

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


@pytest.mark.stack
def test_metadata_over_two_kilobytes_is_refused_as_s3_refuses_it(pipeline: Pipeline) -> None:
    # S3 counts the UTF-8 bytes of each metadata name and value: 2 KB in all.
    bucket = pipeline.own_bucket()
    fits = {"source-key": "a" * (2048 - len("source-key"))}
    too_large = {"source-key": "a" * (2049 - len("source-key"))}
    pipeline.s3.put_object(Bucket=bucket, Key="fits", Body=b"x", Metadata=fits)

    calls: dict[str, Callable[[], object]] = {
        "PutObject": lambda: pipeline.s3.put_object(
            Bucket=bucket, Key="big", Body=b"x", Metadata=too_large
        ),
        "CreateMultipartUpload": lambda: pipeline.s3.create_multipart_upload(
            Bucket=bucket, Key="big", Metadata=too_large
        ),
        "CopyObject": lambda: pipeline.s3.copy_object(
            Bucket=bucket,
            Key="big",
            CopySource={"Bucket": bucket, "Key": "fits"},
            Metadata=too_large,
            MetadataDirective="REPLACE",
        ),
    }
    for operation, call in calls.items():
        with pytest.raises(ClientError) as refused:
            call()
        error = refused.value.response
        assert error["Error"]["Code"] == "MetadataTooLarge", operation
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 400, operation
    assert pipeline.s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1


def _code(call: Callable[[], object]) -> str:
    with pytest.raises(ClientError) as refused:
        call()
    return str(refused.value.response["Error"]["Code"])


def test_conditional_writes_hold_as_on_s3(pipeline: Pipeline) -> None:
    # The readable video keys rely on these (results/video_placement.py).
    s3, bucket = pipeline.s3, pipeline.own_bucket()
    held = s3.put_object(Bucket=bucket, Key="held", Body=b"first", IfNoneMatch="*")["ETag"]
    staged = s3.put_object(Bucket=bucket, Key="staged", Body=b"second")["ETag"]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="held")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="held", UploadId=upload, PartNumber=1, Body=b"p")

    refusals = {
        "PutObject If-None-Match": lambda: s3.put_object(
            Bucket=bucket, Key="held", Body=b"x", IfNoneMatch="*"
        ),
        "CompleteMultipartUpload If-None-Match": lambda: s3.complete_multipart_upload(
            Bucket=bucket,
            Key="held",
            UploadId=upload,
            MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
            IfNoneMatch="*",
        ),
        "CopyObject If-None-Match": lambda: s3.copy_object(
            Bucket=bucket,
            Key="held",
            CopySource={"Bucket": bucket, "Key": "staged"},
            IfNoneMatch="*",
        ),
        "CopyObject If-Match": lambda: s3.copy_object(
            Bucket=bucket,
            Key="held",
            CopySource={"Bucket": bucket, "Key": "staged"},
            IfMatch=staged,
        ),
        "CopyObject x-amz-copy-source-if-match": lambda: s3.copy_object(
            Bucket=bucket,
            Key="aside",
            CopySource={"Bucket": bucket, "Key": "held"},
            CopySourceIfMatch=staged,
        ),
    }
    for name, refused in refusals.items():
        assert _code(refused) == "PreconditionFailed", name
    assert s3.get_object(Bucket=bucket, Key="held")["Body"].read() == b"first"
    assert "aside" not in [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]

    # and each write whose condition holds goes through
    s3.copy_object(
        Bucket=bucket,
        Key="aside",
        CopySource={"Bucket": bucket, "Key": "held"},
        CopySourceIfMatch=held,
    )
    s3.copy_object(
        Bucket=bucket, Key="held", CopySource={"Bucket": bucket, "Key": "staged"}, IfMatch=held
    )
    s3.copy_object(
        Bucket=bucket, Key="new", CopySource={"Bucket": bucket, "Key": "staged"}, IfNoneMatch="*"
    )
    assert s3.get_object(Bucket=bucket, Key="held")["Body"].read() == b"second"
    assert s3.get_object(Bucket=bucket, Key="aside")["Body"].read() == b"first"


def _scratch_table(pipeline: Pipeline, *, range_key: bool) -> tuple[Any, str]:
    """A table of its own (the resource's client: plain values in and out), and its name."""
    name = f"rollback-{uuid.uuid4().hex[:8]}"
    schema: list[KeySchemaElementTypeDef] = [{"AttributeName": "pk", "KeyType": "HASH"}]
    if range_key:
        schema.append({"AttributeName": "sk", "KeyType": "RANGE"})
    pipeline.table.meta.client.create_table(
        TableName=name,
        KeySchema=schema,
        AttributeDefinitions=[
            {"AttributeName": key["AttributeName"], "AttributeType": "S"} for key in schema
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return pipeline.table.meta.client, name


@pytest.mark.parametrize("range_key", [False, True], ids=["hash key", "hash and range key"])
def test_a_cancelled_transaction_leaves_every_item_as_it_was(
    pipeline: Pipeline, range_key: bool
) -> None:
    # The local server rolls a transaction back item by item, not from a copy of the whole
    # table (ItemRollback): what a client reads afterwards must be exactly what was there.
    client, table = _scratch_table(pipeline, range_key=range_key)

    def key(name: str) -> dict[str, Any]:
        return {"pk": name, "sk": "s"} if range_key else {"pk": name}

    client.put_item(TableName=table, Item={**key("kept"), "n": 1, "tags": {"a", "b"}})
    client.put_item(TableName=table, Item={**key("guard"), "open": False})
    before = client.scan(TableName=table, ConsistentRead=True)["Items"]

    def transaction(guard_open: bool) -> None:
        client.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": table,
                        "Key": key("kept"),
                        "UpdateExpression": "SET n = n + :one ADD tags :c REMOVE gone",
                        "ExpressionAttributeValues": {":one": 1, ":c": {"c"}},
                    }
                },
                {"Put": {"TableName": table, "Item": {**key("new"), "n": 7}}},
                {"Delete": {"TableName": table, "Key": key("guard")}}
                if guard_open
                else {
                    "ConditionCheck": {
                        "TableName": table,
                        "Key": key("guard"),
                        "ConditionExpression": "#o = :yes",
                        "ExpressionAttributeNames": {"#o": "open"},
                        "ExpressionAttributeValues": {":yes": True},
                    }
                },
            ]
        )

    assert _code(lambda: transaction(False)) == "TransactionCanceledException"
    assert client.scan(TableName=table, ConsistentRead=True)["Items"] == before

    transaction(True)
    after = {item["pk"]: item for item in client.scan(TableName=table)["Items"]}
    assert set(after) == {"kept", "new"}
    assert after["kept"]["n"] == 2
    assert after["kept"]["tags"] == {"a", "b", "c"}
