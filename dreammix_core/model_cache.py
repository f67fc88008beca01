"""The one cache of loaded models (VLM, CLIP, DINO): a few entries, least recently used dropped first.

Loading a model takes seconds and gigabytes, so each is kept for the next call; more than a few
would hold memory nobody uses. The ComfyUI nodes keep their ModelPatchers here, the batch runner
its metric models.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class ModelCache(Generic[T]):
    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, T] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        """The entry for `key`, loaded by `load` on first use; a load that raises leaves nothing behind."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            loaded = load()
            while len(self._entries) >= self.size:
                self._entries.popitem(last=False)
            self._entries[key] = loaded
            return loaded

    def values(self) -> list[T]:
        """The entries, least recently used first."""
        with self._lock:
            return list(self._entries.values())
