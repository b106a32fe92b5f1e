"""The S3 adapter of the submit path, against moto in-process: a stand-in S3 would only repeat
what the adapter assumes about S3's answers (ranges, error codes, versions)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws

from pika_pipeline.errors import UploadRejected
from pika_pipeline.jobs.error_codes import ErrorCode
from pika_pipeline.submit.image_check import SNIFF_BYTES
from pika_pipeline.submit.input_objects import InputObjects, s3_version_id
from pika_pipeline.submit.uploads import Upload

BUCKET = "pika-input"
IMAGE = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        # SigV4, as the functions' client (aws/clients.py) signs.
        client = boto3.client(
            "s3", region_name="us-east-1", config=Config(signature_version="s3v4")
        )
        client.create_bucket(Bucket=BUCKET)
        yield client


def _upload(key: str, version_id: str | None = None, size: int | None = None) -> Upload:
    return Upload(
        bucket=BUCKET, key=key, size=size, etag="etag", version_id=version_id, sequencer="seq"
    )


def _rejection(images: InputObjects, upload: Upload) -> ErrorCode:
    with pytest.raises(UploadRejected) as info:
        images.inspect(upload)
    return info.value.code


def test_one_ranged_get_gives_the_metadata_the_whole_size_and_the_first_bytes(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="uploads/cat.jpg", Body=IMAGE, Metadata={"prompt": "a cat"})

    found = InputObjects(s3, presign_expires_seconds=3600).inspect(_upload("uploads/cat.jpg"))

    assert found.metadata == {"prompt": "a cat"}
    assert found.size == len(IMAGE)
    assert found.head == IMAGE[:SNIFF_BYTES]


def test_an_object_smaller_than_the_range_is_read_whole(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="uploads/tiny.jpg", Body=b"\xff\xd8\xff")

    found = InputObjects(s3, presign_expires_seconds=3600).inspect(_upload("uploads/tiny.jpg"))

    assert (found.size, found.head) == (3, b"\xff\xd8\xff")


def test_an_empty_object_is_rejected_empty(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="uploads/empty.jpg", Body=b"")
    images = InputObjects(s3, presign_expires_seconds=3600)

    assert _rejection(images, _upload("uploads/empty.jpg")) == ErrorCode.EMPTY_OBJECT
    # The event may say so already: then S3 is not asked.
    assert _rejection(images, _upload("uploads/gone.jpg", size=0)) == ErrorCode.EMPTY_OBJECT


def test_a_deleted_object_or_version_is_rejected_not_found(s3: Any) -> None:
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    version = s3.put_object(Bucket=BUCKET, Key="uploads/cat.jpg", Body=IMAGE)["VersionId"]
    s3.delete_object(Bucket=BUCKET, Key="uploads/cat.jpg", VersionId=version)
    images = InputObjects(s3, presign_expires_seconds=3600)

    assert _rejection(images, _upload("uploads/never.jpg")) == ErrorCode.OBJECT_NOT_FOUND
    assert _rejection(images, _upload("uploads/cat.jpg", version)) == ErrorCode.OBJECT_NOT_FOUND


def test_the_uploaded_version_is_read_not_the_newest(s3: Any) -> None:
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket=BUCKET, Key="uploads/cat.jpg", Body=IMAGE, Metadata={"n": "1"})
    s3.put_object(Bucket=BUCKET, Key="uploads/cat.jpg", Body=IMAGE, Metadata={"n": "2"})
    images = InputObjects(s3, presign_expires_seconds=3600)

    found = images.inspect(_upload("uploads/cat.jpg", first["VersionId"]))

    assert found.metadata == {"n": "1"}
    assert f"versionId={first['VersionId']}" in images.presigned_url(
        _upload("uploads/cat.jpg", first["VersionId"])
    )


def test_s3s_null_version_is_no_version_to_ask_for(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="uploads/cat.jpg", Body=IMAGE, Metadata={"prompt": "x"})
    images = InputObjects(s3, presign_expires_seconds=3600)
    unversioned = _upload("uploads/cat.jpg", "null")

    assert images.inspect(unversioned).metadata == {"prompt": "x"}
    assert "versionId" not in images.presigned_url(unversioned)
    assert (s3_version_id("null"), s3_version_id(None), s3_version_id("v1")) == (None, None, "v1")


def test_the_presigned_url_lives_as_long_as_configured(s3: Any) -> None:
    url = InputObjects(s3, presign_expires_seconds=900).presigned_url(_upload("uploads/cat.jpg"))

    assert "X-Amz-Expires=900" in url
    assert url.startswith(f"https://{BUCKET}.s3.amazonaws.com/uploads/cat.jpg?")
