"""In-process moto with the template's own DynamoDB tables, for unit tests of the table logic."""

from __future__ import annotations

from typing import Any

import pytest

from local.template import load_template


def offline_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process moto only: never the local stack's endpoint, never real credentials."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def template_table(dynamodb: Any, logical: str, name: str | None = None) -> Any:
    """The template's ``logical`` table (keys, indexes, billing), created as ``name``."""
    props = load_template()["Resources"][logical]["Properties"]
    arguments = {
        key: props[key]
        for key in ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode")
        if key in props
    }
    return dynamodb.create_table(TableName=name or logical, **arguments)
