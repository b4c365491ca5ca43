"""Counts of public API requests per endpoint and status, and a bounded log of recent ones.

Only the method, path, endpoint, status, time and the fault applied are kept: never headers,
query strings or bodies, so no key or token can end up here. `path` is the decoded path the router
matched; `raw_path` is the path exactly as it arrived on the wire (percent-encoding kept, the query
string cut off), so tests can assert how a client encoded a run id.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    raw_path: str
    endpoint: str
    status: int
    at: float
    fault: str | None


class RequestLog:
    def __init__(self, *, capacity: int) -> None:
        self._recent: deque[LoggedRequest] = deque(maxlen=capacity)
        self._counts: Counter[tuple[str, int]] = Counter()
        self._lock = threading.Lock()

    def record(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._recent.append(entry)
            self._counts[(entry.endpoint, entry.status)] += 1

    def count(self, endpoint: str, status: int | None = None) -> int:
        with self._lock:
            return sum(n for (ep, st), n in self._counts.items() if ep == endpoint and status in (None, st))

    def reset(self) -> None:
        with self._lock:
            self._recent.clear()
            self._counts.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            counts: dict[str, dict[str, int]] = {}
            for (endpoint, status), n in sorted(self._counts.items()):
                counts.setdefault(endpoint, {})[str(status)] = n
            return {
                "total": sum(self._counts.values()),
                "counts": counts,
                "recent": [asdict(entry) for entry in self._recent],
            }
