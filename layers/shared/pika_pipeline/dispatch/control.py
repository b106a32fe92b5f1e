"""The control table: dispatch slots, the pause switch and the fair-share counters, one item each.

Operators change what lives here (``pika-pipeline pause``) without a redeploy; the functions read
the pause switch cached for a few seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

DISPATCH_ITEM = "dispatch"  # {paused, paused_at, paused_by}: shared with the CLI
# How long a function trusts the pause switch it read: an operator's pause takes effect within
# this, and an idle pipeline pays one read per this many seconds at most.
PAUSE_CACHE_SECONDS = 5.0


def slot_key(number: int) -> str:
    return f"slot#{number}"


def batch_key(lane: str, batch: str) -> str:
    return f"batch#{lane}#{batch}"


def clock_key(lane: str) -> str:
    return f"clock#{lane}"


@dataclass(frozen=True)
class PauseState:
    paused: bool
    paused_at: str | None

    def paused_seconds(self, now_epoch: float) -> float:
        if not self.paused or not self.paused_at:
            return 0.0
        return max(0.0, now_epoch - datetime.fromisoformat(self.paused_at).timestamp())


class PauseSwitch:
    """Whether dispatching is paused, read from the ``dispatch`` item and cached briefly."""

    def __init__(
        self,
        table: Callable[[], Table],
        *,
        cache_seconds: float = PAUSE_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._table = table
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cached: tuple[float, PauseState] | None = None

    def state(self, *, fresh: bool = False) -> PauseState:
        """Only a running state is trusted from the cache: a pause takes effect within
        ``cache_seconds``, but a paused function reads again every time, so the nudge `resume`
        sends dispatches at once (a stale "paused" would leave the slots idle until the next
        completion or reconciler run). Reads while paused are rare: one per batch of uploads."""
        now = self._clock()
        cached = self._cached
        if not fresh and cached and not cached[1].paused and now - cached[0] < self._cache_seconds:
            return cached[1]
        item: dict[str, Any] = (
            self._table().get_item(Key={"pk": DISPATCH_ITEM}, ConsistentRead=True).get("Item") or {}
        )
        state = PauseState(
            paused=bool(item.get("paused")),
            paused_at=str(item["paused_at"]) if item.get("paused_at") else None,
        )
        self._cached = (now, state)
        return state

    def paused(self) -> bool:
        return self.state().paused


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
