"""The uploaded images in S3, as the submit path reads them: one ranged GET, a presigned URL.

The one place that knows S3's side of an upload: which version to ask for, how a ranged GET
answers for an empty or deleted object, and where the object's total size is found.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NotRequired, TypedDict

from botocore.exceptions import ClientError

from pika_pipeline.aws.errors import error_code
from pika_pipeline.errors import UploadRejected
from pika_pipeline.jobs.error_codes import ErrorCode
from pika_pipeline.submit.image_check import SNIFF_BYTES

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

    from pika_pipeline.submit.uploads import Upload

# S3 names the only version of an object in a bucket without versioning (or with versioning
# suspended) "null": not an id GetObject accepts.
_NO_VERSION = "null"
# A range starting past the end of an object: S3's answer for an empty one.
_EMPTY = "InvalidRange"
# An error answered without a body has only its HTTP status as its code.
_NOT_FOUND = frozenset({"NoSuchKey", "NoSuchVersion", "404"})


def s3_version_id(reported: str | None) -> str | None:
    """The S3 version id an event reports, or None when there is no version to ask for."""
    if reported and reported != _NO_VERSION:
        return reported
    return None


@dataclass(frozen=True)
class InputObject:
    """What one ranged GET tells about an upload."""

    metadata: dict[str, str]  # the user metadata, keys as S3 returns them (lower case)
    size: int  # of the whole object, not of the range read
    head: bytes  # the first bytes, for the file signature


class InputObjects:
    def __init__(self, s3: S3Client, *, presign_expires_seconds: int) -> None:
        self._s3 = s3
        self._presign_expires_seconds = presign_expires_seconds

    def inspect(self, upload: Upload) -> InputObject:
        """The metadata, total size and first bytes of the upload, from one ranged GET.

        Raises UploadRejected ``empty_object`` or ``object_not_found``; any other S3 error is
        raised as it is (the message is retried).
        """
        if upload.size == 0:  # the event says so: no need to ask S3
            raise _empty()
        try:
            response = self._s3.get_object(
                **_object_params(upload), Range=f"bytes=0-{SNIFF_BYTES - 1}"
            )
        except ClientError as exc:
            code = error_code(exc)
            if code == _EMPTY:
                raise _empty() from exc
            if code in _NOT_FOUND:
                raise UploadRejected(
                    ErrorCode.OBJECT_NOT_FOUND, "The object was deleted before it could be read."
                ) from exc
            raise
        with response["Body"] as body:
            head = body.read(SNIFF_BYTES)
        # "bytes 0-15/12345": the total follows the slash. Without it the range was the object.
        content_range = str(response.get("ContentRange", ""))
        size = int(content_range.rsplit("/", 1)[1]) if "/" in content_range else len(head)
        if size == 0:
            raise _empty()
        return InputObject(metadata=dict(response.get("Metadata", {})), size=size, head=head)

    def presigned_url(self, upload: Upload) -> str:
        """A URL fal can download the image from, without AWS credentials, for a while."""
        url: str = self._s3.generate_presigned_url(
            "get_object", Params=_object_params(upload), ExpiresIn=self._presign_expires_seconds
        )
        return url


class ObjectRef(TypedDict):
    """The upload's object as S3 request parameters (GetObject's, and the presigned URL's)."""

    Bucket: str
    Key: str
    VersionId: NotRequired[str]


def _object_params(upload: Upload) -> ObjectRef:
    params: ObjectRef = {"Bucket": upload.bucket, "Key": upload.key}
    if upload.s3_version_id:
        params["VersionId"] = upload.s3_version_id
    return params


def _empty() -> UploadRejected:
    return UploadRejected(ErrorCode.EMPTY_OBJECT, "The uploaded object is empty.")
