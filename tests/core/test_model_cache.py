"""The one model cache: reuse, least-recently-used eviction, nothing kept from a failed load."""

from __future__ import annotations

import pytest

from dreammix_core.model_cache import ModelCache


def test_reuses_and_drops_the_least_recently_used() -> None:
    cache: ModelCache[object] = ModelCache(size=2)
    loads = []

    def loader(name: str):
        def load() -> object:
            loads.append(name)
            return {"model": name}

        return load

    a = cache.get("a", loader("a"))
    cache.get("b", loader("b"))
    assert cache.get("a", loader("a")) is a  # reused, and now the most recent
    cache.get("c", loader("c"))  # drops b, the least recently used
    assert cache.values() == [a, {"model": "c"}]
    cache.get("b", loader("b"))
    assert loads == ["a", "b", "c", "b"]


def test_a_failed_load_leaves_nothing() -> None:
    cache: ModelCache[object] = ModelCache(size=1)
    kept = cache.get("kept", object)

    def broken() -> object:
        raise OSError("no weights")

    with pytest.raises(OSError):
        cache.get("broken", broken)
    assert cache.values() == [kept]


def test_the_default_cache_keeps_four() -> None:
    """Without a size the cache holds four entries: a fifth drops the least recently used."""
    cache: ModelCache[str] = ModelCache()
    for key in "abcde":
        cache.get(key, lambda key=key: key)
    assert cache.values() == ["b", "c", "d", "e"]
