"""boto3 clients, made once per container and shared by every invocation."""

from __future__ import annotations

import functools
from typing import Any

import boto3
from botocore.config import Config

# SigV4 is required for presigned URLs on every region and for KMS-encrypted objects.
_S3_CONFIG = Config(signature_version="s3v4", retries={"mode": "standard"})


@functools.cache
def s3_client() -> Any:
    return boto3.client("s3", config=_S3_CONFIG)


@functools.cache
def jobs_table(name: str) -> Any:
    return boto3.resource("dynamodb").Table(name)
