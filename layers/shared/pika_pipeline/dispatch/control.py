"""The control table: dispatch slots, the pause switch and the fair-share counters, one item each.

Operators change what lives here (``pika-pipeline pause``, ``budget set``) without a redeploy. A
fill reads those items with the slots, in the same call; other readers cache them for a few
seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pika_pipeline.spend.ledger import BUDGET_ITEM

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

DISPATCH_ITEM = "dispatch"  # {paused, paused_at, paused_by}: shared with the CLI
# How long a reader outside a fill (which reads them with the slots) trusts the operator items.
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


class OperatorItems:
    """The control table's items operators change at run time (the pause switch, the budget
    override), read together and trusted for ``cache_seconds``: a fill needs both, and one
    BatchGetItem for the two costs one call where two GetItems cost two."""

    def __init__(
        self,
        table: Callable[[], Table],
        *,
        keys: tuple[str, ...] = (DISPATCH_ITEM, BUDGET_ITEM),
        cache_seconds: float = PAUSE_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._table = table
        self._keys = keys
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cached: tuple[float, dict[str, dict[str, Any]]] | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        return self._keys

    def store(self, found: dict[str, dict[str, Any]]) -> None:
        """Items just read along with something else (a fill reads them with the slots): the
        cache starts again from them."""
        self._cached = (self._clock(), {key: found[key] for key in self._keys if key in found})

    def item(
        self,
        key: str,
        *,
        fresh: bool = False,
        trusted: Callable[[dict[str, Any]], bool] = lambda _: True,
    ) -> dict[str, Any]:
        """The item as read within ``cache_seconds`` ({} when absent), if ``trusted`` from the
        cache; ``fresh``: read now."""
        now = self._clock()
        cached = self._cached
        if (
            fresh
            or cached is None
            or now - cached[0] >= self._cache_seconds
            or not trusted(cached[1].get(key, {}))
        ):
            cached = (now, self._read())
            self._cached = cached
        return cached[1].get(key, {})

    def _read(self) -> dict[str, dict[str, Any]]:
        table = self._table()
        if len(self._keys) == 1:
            one = table.get_item(Key={"pk": self._keys[0]}, ConsistentRead=True).get("Item")
            return {self._keys[0]: dict(one)} if one else {}
        request: dict[str, Any] = {
            table.name: {"Keys": [{"pk": key} for key in self._keys], "ConsistentRead": True}
        }
        found: dict[str, dict[str, Any]] = {}
        while request:  # two small items: unprocessed only under throttling
            response = table.meta.client.batch_get_item(RequestItems=request)
            for item in response.get("Responses", {}).get(table.name, []):
                found[str(item["pk"])] = dict(item)
            request = response.get("UnprocessedKeys") or {}
        return found


class PauseSwitch:
    """Whether dispatching is paused, read from the ``dispatch`` item and cached briefly.

    ``items``: the operator items it shares with the budget's limits (one read for both);
    without, it reads the ``dispatch`` item alone."""

    def __init__(
        self,
        table: Callable[[], Table],
        *,
        cache_seconds: float = PAUSE_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        items: OperatorItems | None = None,
    ) -> None:
        self._items = items or OperatorItems(
            table, keys=(DISPATCH_ITEM,), cache_seconds=cache_seconds, clock=clock
        )

    def state(self, *, fresh: bool = False) -> PauseState:
        """Only a running state is trusted from the cache: a pause takes effect within
        ``cache_seconds``, but a paused function reads again every time, so the nudge `resume`
        sends dispatches at once (a stale "paused" would leave the slots idle until the next
        completion or reconciler run). Reads while paused are rare: one per batch of uploads."""
        item = self._items.item(
            DISPATCH_ITEM, fresh=fresh, trusted=lambda cached: not cached.get("paused")
        )
        return _state(item)

    def paused(self) -> bool:
        return self.state().paused

    @property
    def item_keys(self) -> tuple[str, ...]:
        """The control items this switch reads (with the budget's, when it shares them)."""
        return self._items.keys

    def state_read(self, found: dict[str, dict[str, Any]]) -> PauseState:
        """The state in ``item_keys`` as just read elsewhere (a fill reads them with the slots,
        so every fill sees the switch as it is); they refresh the cache the budget shares."""
        self._items.store(found)
        return _state(found.get(DISPATCH_ITEM, {}))


def _state(item: dict[str, Any]) -> PauseState:
    return PauseState(
        paused=bool(item.get("paused")),
        paused_at=str(item["paused_at"]) if item.get("paused_at") else None,
    )


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
