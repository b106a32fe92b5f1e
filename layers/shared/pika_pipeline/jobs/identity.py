"""Job identity: one upload (bucket, key, version) is always one job."""

from __future__ import annotations

import hashlib


def job_id_for(*, bucket: str, key: str, version: str) -> str:
    """A stable id for one upload: the same object version always maps to the same job.

    ``version`` is the S3 version id (the input bucket is versioned, so every upload has one);
    for an unversioned bucket the caller passes the event's sequencer or ETag instead.
    """
    identity = "\n".join((bucket, key, version)).encode("utf-8")
    return hashlib.sha256(identity).hexdigest()[:32]
