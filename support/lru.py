"""A bounded, thread-safe, least-recently-used map for this process's small caches.

Use it for memoising within one process (negative API-key lookups, customer contexts, a
knowledge-base lookup's rows): it is per process, so it is never shared across workers and
never a source of truth; whatever it holds must be safe to lose or to serve slightly late.

Each ``put`` evicts the least recently used entries while a bound is exceeded:

- ``max_entries`` (always): the number of entries. 0 switches the cache off: reads miss
  and the next write empties it.
- ``max_weight`` with ``weight(value) -> int`` (optional): the sum of the entries'
  weights, for values of very different sizes (a tuple of rows weighs ``len(rows)``). A
  value heavier than the whole bound is not stored (and evicts nothing).

Either limit is an ``int`` or a zero-argument callable read at each call (a setting that
tests or operators change while the process runs).

The lock is internal. No user code runs while it is held: the limits and the weight are
computed before taking it (keys' ``__hash__``/``__eq__`` excepted).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Generic, TypeAlias, TypeVar, overload

K = TypeVar("K")
V = TypeVar("V")
D = TypeVar("D")

Limit: TypeAlias = int | Callable[[], int]


def _read(limit: Limit) -> int:
    return max(0, int(limit() if callable(limit) else limit))


class BoundedLRU(Generic[K, V]):
    """A map of at most ``max_entries`` entries (and ``max_weight`` total weight), evicting
    the least recently used first. ``get``/``get_many`` and ``put`` make an entry the most
    recently used; ``peek``, ``in`` and ``len`` do not reorder."""

    def __init__(
        self,
        max_entries: Limit,
        *,
        weight: Callable[[V], int] | None = None,
        max_weight: Limit | None = None,
    ) -> None:
        if (weight is None) != (max_weight is None):
            raise ValueError("weight and max_weight go together: give both or neither.")
        self._max_entries = max_entries
        self._weight = weight
        self._max_weight = max_weight
        self._lock = threading.Lock()
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()  # key -> (value, weight)
        self._total_weight = 0

    @overload
    def get(self, key: K) -> V | None: ...
    @overload
    def get(self, key: K, default: D) -> V | D: ...
    def get(self, key: K, default: D | None = None) -> V | D | None:
        """The value for ``key`` (now the most recently used), or ``default``."""
        if _read(self._max_entries) == 0:
            return default
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return default
            self._entries.move_to_end(key)
            return entry[0]

    def get_many(self, keys: Iterable[K]) -> dict[K, V]:
        """The values of those ``keys`` that are held (each now recently used, in the
        order given), under one acquisition of the lock."""
        if _read(self._max_entries) == 0:
            return {}
        wanted = list(keys)  # a generator's code must not run under the lock
        found: dict[K, V] = {}
        with self._lock:
            for key in wanted:
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries.move_to_end(key)
                    found[key] = entry[0]
        return found

    @overload
    def peek(self, key: K) -> V | None: ...
    @overload
    def peek(self, key: K, default: D) -> V | D: ...
    def peek(self, key: K, default: D | None = None) -> V | D | None:
        """The value for ``key`` or ``default``, leaving the order of use unchanged."""
        with self._lock:
            entry = self._entries.get(key)
        return default if entry is None else entry[0]

    def put(self, key: K, value: V) -> None:
        """Insert or replace ``key`` (now the most recently used), then evict the least
        recently used entries while either bound is exceeded. A value heavier than
        ``max_weight`` on its own is not stored, and ``key`` is then not held."""
        max_entries = _read(self._max_entries)
        max_weight = None if self._max_weight is None else _read(self._max_weight)
        weight = 0 if self._weight is None else int(self._weight(value))
        if weight < 0:
            raise ValueError(f"weight: {weight} for key {key!r} is negative.")
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._total_weight -= old[1]
            if max_weight is not None and weight > max_weight:
                return  # the old value is gone all the same: it was replaced
            self._entries[key] = (value, weight)
            self._total_weight += weight
            while self._entries and (
                len(self._entries) > max_entries
                or (max_weight is not None and self._total_weight > max_weight)
            ):
                self._total_weight -= self._entries.popitem(last=False)[1][1]

    @overload
    def pop(self, key: K) -> V | None: ...
    @overload
    def pop(self, key: K, default: D) -> V | D: ...
    def pop(self, key: K, default: D | None = None) -> V | D | None:
        """Remove ``key``; its value, or ``default`` when it was not held."""
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is None:
                return default
            self._total_weight -= entry[1]
            return entry[0]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._total_weight = 0

    @property
    def total_weight(self) -> int:
        """The sum of the held entries' weights (0 without a weight function)."""
        with self._lock:
            return self._total_weight

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries
