"""The shared in-process LRU: evicts by recency (not insertion), bounds count and weight,
reads a callable size at call time, and keeps its books straight under threads."""

from __future__ import annotations

import random
import sys
import threading
from collections.abc import Iterator

import pytest

from support.lru import BoundedLRU


def _rows(value: tuple[int, ...]) -> int:
    return len(value)


def test_the_least_recently_used_is_evicted_not_the_first_inserted() -> None:
    lru: BoundedLRU[str, int] = BoundedLRU(max_entries=3)
    for key, value in (("a", 1), ("b", 2), ("c", 3)):
        lru.put(key, value)
    assert lru.get("a") == 1  # a is now the most recently used: b is the oldest
    lru.put("d", 4)
    assert ("a" in lru, "b" in lru, "c" in lru, "d" in lru) == (True, False, True, True)
    assert lru.get_many(["c", "missing"]) == {"c": 3}  # c used: a is now the oldest
    lru.put("e", 5)
    assert sorted(lru.get_many(["a", "b", "c", "d", "e"])) == ["c", "d", "e"]
    assert len(lru) == 3


def test_replacing_makes_an_entry_recent_and_peek_and_contains_do_not() -> None:
    lru: BoundedLRU[str, int] = BoundedLRU(max_entries=2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.peek("a") == 1
    assert "a" in lru
    lru.put("c", 3)  # neither peek nor `in` saved a
    assert lru.peek("a", -1) == -1
    lru.put("b", 20)  # replaced: b is the most recent, c the oldest
    lru.put("d", 4)
    assert (lru.peek("b"), lru.peek("c"), lru.peek("d")) == (20, None, 4)


def test_total_weight_is_bounded_oldest_first() -> None:
    lru: BoundedLRU[str, tuple[int, ...]] = BoundedLRU(max_entries=100, weight=_rows, max_weight=5)
    lru.put("a", (1, 2))
    lru.put("b", (1, 2))
    assert lru.get("a") == (1, 2)  # b is now the oldest
    lru.put("c", (1, 2))  # 6 rows > 5: b goes, not a
    assert (lru.total_weight, "a" in lru, "b" in lru, "c" in lru) == (4, True, False, True)
    lru.put("big", tuple(range(6)))  # heavier than the whole bound: not kept, evicts nothing
    assert (lru.total_weight, "a" in lru, "big" in lru, "c" in lru) == (4, True, False, True)
    lru.put("a", tuple(range(6)))  # replaced by a value too heavy to keep: a is gone
    assert (lru.total_weight, "a" in lru, "c" in lru) == (2, False, True)


def test_replacing_a_value_replaces_its_weight() -> None:
    lru: BoundedLRU[str, tuple[int, ...]] = BoundedLRU(max_entries=100, weight=_rows, max_weight=4)
    lru.put("a", (1, 2, 3))
    lru.put("a", (1,))
    assert lru.total_weight == 1
    lru.put("b", (1, 2, 3))  # 1 + 3 rows fit: a stays
    assert (lru.total_weight, lru.get("a"), lru.get("b")) == (4, (1,), (1, 2, 3))
    assert lru.pop("b") == (1, 2, 3)
    assert (lru.total_weight, lru.pop("b", "gone")) == (1, "gone")
    lru.clear()
    assert (len(lru), lru.total_weight) == (0, 0)


def test_a_callable_size_is_read_at_each_call_and_zero_keeps_nothing() -> None:
    size = {"n": 3}
    lru: BoundedLRU[int, str] = BoundedLRU(max_entries=lambda: size["n"])
    for key in range(5):
        lru.put(key, str(key))
    assert sorted(lru.get_many(range(5))) == [2, 3, 4]
    size["n"] = 1  # a smaller setting applies at the next write
    lru.put(5, "5")
    assert (len(lru), lru.peek(5)) == (1, "5")
    size["n"] = 0  # switched off: reads miss at once, the next write empties it
    assert (lru.get(5), lru.get_many([5])) == (None, {})
    lru.put(6, "6")
    assert len(lru) == 0
    assert lru.get(6, "default") == "default"


def test_weight_and_max_weight_go_together() -> None:
    with pytest.raises(ValueError, match="go together"):
        BoundedLRU(max_entries=1, weight=_rows)
    with pytest.raises(ValueError, match="go together"):
        BoundedLRU(max_entries=1, max_weight=3)


@pytest.fixture
def _frequent_switches() -> Iterator[None]:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # interleave threads as often as possible
    yield
    sys.setswitchinterval(interval)


@pytest.mark.usefixtures("_frequent_switches")
def test_threads_sharing_one_lru_keep_its_bounds_and_books() -> None:
    lru: BoundedLRU[int, tuple[int, ...]] = BoundedLRU(max_entries=50, weight=_rows, max_weight=120)
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def work(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        try:
            for _ in range(5000):
                key = rng.randrange(200)
                action = rng.random()
                if action < 0.5:
                    lru.put(key, tuple(range(rng.randrange(6))))
                elif action < 0.8:
                    lru.get_many([key, key + 1, key + 2])
                elif action < 0.95:
                    lru.get(key)
                else:
                    lru.pop(key)
        except BaseException as exc:  # reported below: a thread's error is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    held = lru.get_many(range(200))
    assert len(held) == len(lru) <= 50
    assert lru.total_weight == sum(len(rows) for rows in held.values()) <= 120
