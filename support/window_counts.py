"""Counts per clock bucket (a minute, an hour) in Redis, for figures that happen in several
processes (web workers, Celery workers, other ECS tasks) and are not stored anywhere else:
each bucket is a hash ``key.format(bucket=<bucket number>)`` whose fields are added to with
``HINCRBY`` (``HINCRBYFLOAT`` for a float) and which expires once no window reads it any
more. Whoever reads sums the hashes of the buckets its window covers, in one pipelined
round trip, wherever it runs.

Used by the knowledge-base search counts (``knowledge.metrics``, an hour a bucket) and the
HTTP request counts the ``Http5xxRate`` alarm reads (``support.request_metrics``, a minute
a bucket, added from each web process's memory every few seconds).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from support.redis_client import get_redis


def window_counts_add(
    key: str, counts: Mapping[int, Mapping[str, float]], *, keep_seconds: int
) -> None:
    """Add ``counts`` (``{bucket: {field: amount}}``) in one pipelined round trip; each
    touched bucket expires ``keep_seconds`` after this write. Raises ``redis.RedisError``
    (the caller decides what a lost count means)."""
    if not counts:
        return
    pipe = get_redis().pipeline(transaction=False)
    for bucket, fields in counts.items():
        name = key.format(bucket=bucket)
        for field, amount in fields.items():
            if isinstance(amount, float):
                pipe.hincrbyfloat(name, field, amount)
            else:
                pipe.hincrby(name, field, amount)
        pipe.expire(name, keep_seconds)
    pipe.execute()


def window_counts_sum(key: str, buckets: Iterable[int]) -> dict[str, float]:
    """Every field summed over ``buckets`` (a missing bucket or field counts 0). Raises
    ``redis.RedisError``."""
    pipe = get_redis().pipeline(transaction=False)
    for bucket in buckets:
        pipe.hgetall(key.format(bucket=bucket))
    totals: dict[str, float] = {}
    for row in pipe.execute():
        for field, raw in row.items():
            name = field.decode()
            totals[name] = totals.get(name, 0.0) + float(raw)
    return totals
