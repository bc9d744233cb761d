"""Pages of the started index (``ns:{ns.bN}:started``), newest first, across the buckets.

A page is read from every bucket (at most ``limit`` ids each, below the cursor)
and merged; the order is ``(start time, saga id)`` descending, a total order, so
a cursor at the last row of a page continues exactly after it. Ids whose saga
has expired (retention) are dropped from the index as pages meet them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

__all__ = ["started_page"]


def _ms(when: datetime) -> int:
    # round, not int: a time read back from a score (ms / 1000) is a float away.
    return round(when.timestamp() * 1000)


async def started_page(
    redis: Any, prefixes: Sequence[str], before: tuple[datetime, str] | None, limit: int
) -> Sequence[tuple[str, datetime]]:
    """``(saga_id, started)`` of up to ``limit`` sagas started before ``before``, newest first."""
    async with redis.pipeline(transaction=False) as pipe:
        for p in prefixes:
            key = f"{p}:started"
            if before is None:
                pipe.zrevrange(key, 0, limit - 1, withscores=True)
            else:
                at = _ms(before[0])
                pipe.zrevrangebyscore(key, f"({at}", "-inf", start=0, num=limit, withscores=True)
                pipe.zrangebyscore(key, at, at, withscores=True)  # the ties, few
        rows = await pipe.execute()
    found: list[tuple[int, str, str]] = []
    step = 1 if before is None else 2
    for index, p in enumerate(prefixes):
        for sid, score in [r for part in rows[index * step : index * step + step] for r in part]:
            found.append((int(score), sid.decode(), p))
    if before is not None:
        cursor = (_ms(before[0]), before[1])
        found = [row for row in found if (row[0], row[1]) < cursor]
    found.sort(reverse=True)
    page = found[:limit]
    async with redis.pipeline(transaction=False) as pipe:
        for _score, sid, p in page:
            pipe.exists(f"{p}:s:{sid}")
        alive = await pipe.execute()
    gone = [(sid, p) for (_s, sid, p), live in zip(page, alive, strict=True) if not live]
    if gone:
        async with redis.pipeline(transaction=False) as pipe:
            for sid, p in gone:
                pipe.zrem(f"{p}:started", sid)
            await pipe.execute()
    return [
        (sid, datetime.fromtimestamp(score / 1000, UTC))
        for (score, sid, _p), live in zip(page, alive, strict=True)
        if live
    ]
