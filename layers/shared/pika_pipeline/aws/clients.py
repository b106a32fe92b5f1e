"""boto3 clients, made once per container and shared by every invocation."""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:  # the stubs are a dev dependency only: nothing here is loaded in Lambda
    from mypy_boto3_dynamodb.service_resource import Table
    from mypy_boto3_events.client import EventBridgeClient
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_sqs.client import SQSClient

# SigV4 is required for presigned URLs on every region and for KMS-encrypted objects.
_S3_CONFIG = Config(signature_version="s3v4", retries={"mode": "standard"})


@functools.cache
def s3_client() -> S3Client:
    return boto3.client("s3", config=_S3_CONFIG)


_local = threading.local()


def jobs_table(name: str) -> Table:
    """One Table per thread: boto3 resources, unlike clients, are not thread-safe."""
    tables: dict[str, Table] = _local.__dict__.setdefault("tables", {})
    if name not in tables:
        tables[name] = boto3.resource("dynamodb").Table(name)
    return tables[name]


@functools.cache
def sqs_client() -> SQSClient:
    return boto3.client("sqs")


@functools.cache
def events_client() -> EventBridgeClient:
    return boto3.client("events")
