"""Secrets Manager reads through Powertools Parameters, cached across warm invocations.

The values returned here are never logged, stored or put in an error message.
"""

from __future__ import annotations

import json

from aws_lambda_powertools.utilities import parameters

# Long enough to spare Secrets Manager on every invocation, short enough to pick up a rotation.
CACHE_SECONDS = 300


def read_secret(name: str) -> str:
    value = parameters.get_secret(name, max_age=CACHE_SECONDS)
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    return str(value).strip()


def read_fal_key(name: str) -> str:
    """The fal key secret holds the key itself, or JSON with a ``FAL_KEY`` or ``key`` field."""
    raw = read_secret(name)
    if raw.startswith("{"):
        try:
            document = json.loads(raw)
        except json.JSONDecodeError:
            return raw
        for field in ("FAL_KEY", "fal_key", "key"):
            if isinstance(document.get(field), str):
                return str(document[field]).strip()
    return raw
