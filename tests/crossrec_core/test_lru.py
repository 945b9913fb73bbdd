import threading

import pytest

from crossrec_core.lru import LRUCache


def test_drops_the_least_recently_used_first():
    cache = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent
    cache.put("c", 3)
    assert "b" not in cache and cache.get("a") == 1 and cache.get("c") == 3
    assert len(cache) == 2


def test_size_zero_keeps_nothing_and_bad_sizes_are_refused():
    cache = LRUCache(0)
    cache.put("a", 1)
    assert cache.get("a", "missing") == "missing"
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="size"):
            LRUCache(bad)


def test_concurrent_readers_and_writers_keep_the_bound():
    cache = LRUCache(64)
    errors = []

    def work(offset: int) -> None:
        try:
            for i in range(2000):
                cache.put((offset, i % 100), i)
                cache.get((offset, (i * 7) % 100))
        except Exception as e:  # pragma: no cover - the failure being tested for
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(cache) == 64
