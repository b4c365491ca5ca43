"""Simulated time: a clock that runs `speed` times faster than the one it wraps (for demos)."""

from __future__ import annotations

import asyncio

from monitor.clock import Clock


class ScaledClock:
    """`speed` simulated seconds pass per second of the inner clock, starting from the inner clock's now."""

    def __init__(self, inner: Clock, *, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be above 0")
        self._inner = inner
        self.speed = speed
        self._wall_origin = inner.now()
        self._mono_origin = inner.monotonic()

    def now(self) -> float:
        return self._wall_origin + (self._inner.monotonic() - self._mono_origin) * self.speed

    def monotonic(self) -> float:
        return (self._inner.monotonic() - self._mono_origin) * self.speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds / self.speed)
