"""Which upload a queue message names: EventBridge events and plain S3 notifications."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote_plus

import pytest

from pika_pipeline.errors import MalformedMessage
from pika_pipeline.submit.uploads import Upload, uploads_from_message


def eventbridge_body(
    key: str,
    *,
    bucket: str = "input-bucket",
    detail_type: str = "Object Created",
    obj: dict[str, Any] | None = None,
) -> str:
    """An S3 event as EventBridge delivers it to SQS: the key is NOT URL-encoded."""
    return json.dumps(
        {
            "version": "0",
            "id": "17793124-05d4-b198-2fde-7ededc63b103",
            "detail-type": detail_type,
            "source": "aws.s3",
            "account": "111122223333",
            "time": "2021-11-12T00:00:00Z",
            "region": "ca-central-1",
            "resources": [f"arn:aws:s3:::{bucket}"],
            "detail": {
                "version": "0",
                "bucket": {"name": bucket},
                "object": obj
                if obj is not None
                else {
                    "key": key,
                    "size": 5,
                    "etag": "b1946ac92492d2347c6235b4d2611184",
                    "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
                    "sequencer": "617f08299329d189",
                },
                "request-id": "N4N7GDK58NMKJ12R",
                "requester": "123456789012",
                "reason": "PutObject",
            },
        }
    )


def s3_record(
    encoded_key: str,
    *,
    bucket: str = "input-bucket",
    event_name: str = "ObjectCreated:Put",
    obj: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One record of a plain S3 notification: the key IS URL-encoded (``+`` for spaces)."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2024-06-01T12:00:00.000Z",
        "eventName": event_name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "uploads",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": obj
            if obj is not None
            else {
                "key": encoded_key,
                "size": 1024,
                "eTag": "0123456789abcdef0123456789abcdef",
                "versionId": "3sL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY",
                "sequencer": "0A1B2C3D4E5F678901",
            },
        },
    }


def notification_body(*records: dict[str, Any]) -> str:
    return json.dumps({"Records": list(records)})


# --- EventBridge ------------------------------------------------------------------------------


def test_eventbridge_event_names_one_upload_with_all_its_fields() -> None:
    uploads = uploads_from_message(eventbridge_body("uploads/cat.png"))

    assert uploads == [
        Upload(
            bucket="input-bucket",
            key="uploads/cat.png",
            size=5,
            etag="b1946ac92492d2347c6235b4d2611184",
            version_id="IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
            sequencer="617f08299329d189",
        )
    ]


@pytest.mark.parametrize(
    "key",
    [
        "uploads/my photo.png",
        "uploads/a+b.png",
        "uploads/100%.png",
        "uploads/100%25.png",
        "uploads/café crème.jpg",
        "uploads/写真/猫.webp",
        "uploads/2024/06/01/deep/nested/prefix/image.png",
        "uploads/my+photo%C3%A9.png",
    ],
)
def test_eventbridge_keys_are_taken_literally(key: str) -> None:
    # EventBridge does not URL-encode keys: decoding them would corrupt '+' and '%'.
    [upload] = uploads_from_message(eventbridge_body(key))

    assert upload.key == key


def test_eventbridge_event_without_version_id_or_sequencer_is_accepted() -> None:
    body = eventbridge_body("uploads/x.png", obj={"key": "uploads/x.png", "etag": "abc"})

    [upload] = uploads_from_message(body)

    assert (upload.size, upload.version_id, upload.sequencer, upload.etag) == (
        None,
        None,
        None,
        "abc",
    )


@pytest.mark.parametrize("detail_type", ["Object Deleted", "Object Restore Completed", ""])
def test_eventbridge_events_other_than_object_created_are_malformed(detail_type: str) -> None:
    with pytest.raises(MalformedMessage):
        uploads_from_message(eventbridge_body("uploads/x.png", detail_type=detail_type))


@pytest.mark.parametrize(
    "obj",
    [
        {"size": 5},  # no key
        {"key": "", "size": 5},  # empty key
        {"key": 42},  # key is not text
        {"key": "uploads/x.png", "size": "5"},  # size is not an integer
        {"key": "uploads/x.png", "size": True},
    ],
)
def test_eventbridge_event_with_a_bad_object_is_malformed(obj: dict[str, Any]) -> None:
    with pytest.raises(MalformedMessage):
        uploads_from_message(eventbridge_body("ignored", obj=obj))


def test_eventbridge_event_without_bucket_is_malformed() -> None:
    event = json.loads(eventbridge_body("uploads/x.png"))
    del event["detail"]["bucket"]

    with pytest.raises(MalformedMessage):
        uploads_from_message(json.dumps(event))


def test_eventbridge_event_with_null_detail_is_malformed() -> None:
    event = json.loads(eventbridge_body("uploads/x.png"))
    event["detail"] = None

    with pytest.raises(MalformedMessage):
        uploads_from_message(json.dumps(event))


# --- plain S3 notifications -------------------------------------------------------------------


def test_s3_notification_names_one_upload_with_all_its_fields() -> None:
    uploads = uploads_from_message(notification_body(s3_record("uploads/cat.png")))

    assert uploads == [
        Upload(
            bucket="input-bucket",
            key="uploads/cat.png",
            size=1024,
            etag="0123456789abcdef0123456789abcdef",
            version_id="3sL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY",
            sequencer="0A1B2C3D4E5F678901",
        )
    ]


@pytest.mark.parametrize(
    ("encoded", "key"),
    [
        ("uploads/my+photo%C3%A9.png", "uploads/my photoé.png"),
        ("uploads/a%2Bb.png", "uploads/a+b.png"),
        ("uploads/c%2B%2B+notes.png", "uploads/c++ notes.png"),
        ("uploads/100%25.png", "uploads/100%.png"),
        ("uploads/%E5%86%99%E7%9C%9F/%E7%8C%AB.webp", "uploads/写真/猫.webp"),
        (
            "uploads/2024/06/01/nested/prefix/image.png",
            "uploads/2024/06/01/nested/prefix/image.png",
        ),
        ("uploads/a%3Db%26c%3Fd.png", "uploads/a=b&c?d.png"),
    ],
)
def test_s3_notification_keys_are_url_decoded(encoded: str, key: str) -> None:
    [upload] = uploads_from_message(notification_body(s3_record(encoded)))

    assert upload.key == key


@pytest.mark.parametrize(
    "key",
    [
        "uploads/my photo (1).png",
        "uploads/a+b+c.png",
        "uploads/50% off!.jpg",
        "uploads/naïve façade/émoji 🎉.png",
        "uploads/x/y/z/ spaces  everywhere .webp",
    ],
)
def test_s3_notification_key_encoded_as_s3_does_decodes_back_to_the_original(key: str) -> None:
    # S3 encodes keys application/x-www-form-urlencoded style and leaves '/' alone.
    [upload] = uploads_from_message(notification_body(s3_record(quote_plus(key, safe="/"))))

    assert upload.key == key


def test_s3_notification_with_several_records_names_each_upload_in_order() -> None:
    body = notification_body(
        s3_record("uploads/one.png"),
        s3_record("uploads/two.png", bucket="other-bucket"),
        s3_record("uploads/three+3.png"),
    )

    uploads = uploads_from_message(body)

    assert [(u.bucket, u.key) for u in uploads] == [
        ("input-bucket", "uploads/one.png"),
        ("other-bucket", "uploads/two.png"),
        ("input-bucket", "uploads/three 3.png"),
    ]


@pytest.mark.parametrize(
    "event_name",
    ["ObjectCreated:Put", "ObjectCreated:CompleteMultipartUpload", "ObjectCreated:Copy"],
)
def test_every_kind_of_object_created_record_is_an_upload(event_name: str) -> None:
    body = notification_body(s3_record("uploads/x.png", event_name=event_name))

    assert [u.key for u in uploads_from_message(body)] == ["uploads/x.png"]


@pytest.mark.parametrize(
    "event_name",
    ["ObjectRemoved:Delete", "ObjectRemoved:DeleteMarkerCreated", "ObjectRestore:Post"],
)
def test_records_that_are_not_object_created_are_malformed(event_name: str) -> None:
    body = notification_body(s3_record("uploads/x.png", event_name=event_name))

    with pytest.raises(MalformedMessage):
        uploads_from_message(body)


def test_one_removed_record_among_created_ones_makes_the_message_malformed() -> None:
    body = notification_body(
        s3_record("uploads/a.png"), s3_record("uploads/b.png", event_name="ObjectRemoved:Delete")
    )

    with pytest.raises(MalformedMessage):
        uploads_from_message(body)


@pytest.mark.parametrize(
    "record",
    [
        {"eventName": "ObjectCreated:Put"},  # no s3 section
        {"s3": {"bucket": {"name": "b"}, "object": {"key": "k"}}},  # no eventName
        {"eventName": "ObjectCreated:Put", "s3": {"object": {"key": "k"}}},  # no bucket
        {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {}}},
        {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": ""}, "object": {"key": "k"}}},
        {"eventName": "ObjectCreated:Put", "s3": None},
        "not a record",
        None,
    ],
)
def test_s3_record_missing_what_names_the_object_is_malformed(record: object) -> None:
    with pytest.raises(MalformedMessage):
        uploads_from_message(json.dumps({"Records": [record]}))


def test_s3_record_with_non_integer_size_is_malformed() -> None:
    body = notification_body(s3_record("ignored", obj={"key": "uploads/x.png", "size": "12"}))

    with pytest.raises(MalformedMessage):
        uploads_from_message(body)


# --- test events and garbage ------------------------------------------------------------------


def test_s3_test_event_names_no_upload() -> None:
    body = json.dumps(
        {
            "Service": "Amazon S3",
            "Event": "s3:TestEvent",
            "Time": "2024-06-01T12:00:00.000Z",
            "Bucket": "input-bucket",
            "RequestId": "5582815E1AEA5ADF",
            "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
        }
    )

    assert uploads_from_message(body) == []


@pytest.mark.parametrize(
    "body",
    [
        "",
        "not json",
        "{'Records': []}",  # Python repr, not JSON
        "[]",
        '[{"Records": []}]',
        '"a string"',
        "42",
        "null",
        "{}",
        '{"Records": "uploads/x.png"}',
        '{"source": "aws.s3"}',  # EventBridge-like without detail
        '{"source": "aws.sqs", "detail": {}}',
    ],
)
def test_bodies_that_are_not_upload_events_are_malformed(body: str) -> None:
    with pytest.raises(MalformedMessage):
        uploads_from_message(body)


# --- Upload.version ---------------------------------------------------------------------------


def upload(
    *, version_id: str | None = None, sequencer: str | None = None, etag: str | None = None
) -> Upload:
    return Upload(
        bucket="b",
        key="k",
        size=1,
        etag=etag,
        version_id=version_id,
        sequencer=sequencer,
    )


@pytest.mark.parametrize(
    ("version_id", "sequencer", "etag", "expected"),
    [
        ("v1", "seq", "etag", "v1"),
        (None, "seq", "etag", "seq"),
        ("", "seq", "etag", "seq"),
        ("null", "seq", "etag", "seq"),  # an unversioned bucket reports version id "null"
        ("null", None, "etag", "etag"),
        (None, None, "etag", "etag"),
        (None, "", "etag", "etag"),
    ],
)
def test_upload_version_prefers_version_id_then_sequencer_then_etag(
    version_id: str | None, sequencer: str | None, etag: str | None, expected: str
) -> None:
    assert upload(version_id=version_id, sequencer=sequencer, etag=etag).version == expected


def test_two_puts_of_one_key_in_an_unversioned_bucket_have_different_versions() -> None:
    first = upload(version_id="null", sequencer="0055AED6DCD90281E5", etag="same")
    second = upload(version_id="null", sequencer="0055AED6DCD90281E6", etag="same")

    assert first.version != second.version


def test_version_of_an_s3_notification_from_an_unversioned_bucket_is_its_sequencer() -> None:
    body = notification_body(
        s3_record(
            "ignored",
            obj={"key": "uploads/x.png", "versionId": "null", "sequencer": "0A1B", "eTag": "e"},
        )
    )

    [upload_] = uploads_from_message(body)

    assert upload_.version == "0A1B"
