"""A bounded in-memory cache of thoughts, so the same input never thinks twice."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import NamedTuple

DEFAULT_THOUGHT_CACHE_SIZE = 10_000


class CacheStats(NamedTuple):
    """Lookups answered from the cache (``hits``), lookups that were not (``misses``), and the
    entries held now."""

    hits: int
    misses: int
    entries: int


class ThoughtCache:
    """LRU map from (model, instruction, max tokens, content) to ``(thought, token_count)``."""

    def __init__(self, max_entries: int = DEFAULT_THOUGHT_CACHE_SIZE):
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[str, int]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(model_id: str, instruction: str, max_tokens: int, content_hash: str) -> str:
        raw = "\x1f".join((model_id, instruction, str(max_tokens), content_hash))
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()

    def get(self, key: str) -> tuple[str, int] | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return entry

    def put(self, key: str, thought: str, token_count: int) -> None:
        self._entries[key] = (thought, token_count)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        """Drop every entry; the hit and miss counts carry on."""
        self._entries.clear()

    @property
    def stats(self) -> CacheStats:
        """Hits and misses since the cache was made, and the entries held now."""
        return CacheStats(self.hits, self.misses, len(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
