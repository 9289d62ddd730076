"""A per-process memo for rows that change rarely and are read on every request: a terminal's
credentials, a chain's program.

Each entry lives at most ``ttl`` seconds (real time, not the business clock), so a change made
through another gateway process shows here within that time; a change made through this process
drops its entry at once. Only found rows are kept (an unknown terminal id is looked up every
time, so guessing ids cannot fill the memo), and at most ``size`` of them.
"""
from __future__ import annotations

import time
from typing import Any, Awaitable, Callable, Hashable


class Recent:
    def __init__(self, ttl: float = 1.0, size: int = 10_000) -> None:
        self.ttl = ttl
        self.size = size
        self._entries: dict[Hashable, tuple[float, Any]] = {}

    async def get(self, key: Hashable, load: Callable[[], Awaitable[Any]]) -> Any:
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        value = await load()
        if value is not None:
            if len(self._entries) >= self.size:
                self._entries.clear()
            self._entries[key] = (now + self.ttl, value)
        return value

    def drop(self, key: Hashable) -> None:
        self._entries.pop(key, None)
