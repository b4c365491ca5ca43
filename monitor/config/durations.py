"""Human durations in config ("30s", "2m", "1h30m", "7d") as seconds.

Every duration is finite, not negative and at most a year: NaN, infinity and 1e30 s are refused
where they are read, because the scheduler, timers and datetime arithmetic cannot take them.
Fields narrow this further with `within` (a poll interval of zero or of a month is refused).
"""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, PlainSerializer

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0
WEEK = 7 * DAY
YEAR = 365 * DAY
# No duration in the monitor means anything beyond this; larger values are typos or overflow.
MAX_DURATION_SECONDS = YEAR

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": MINUTE, "h": HOUR, "d": DAY, "w": WEEK}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_HINT = "use a number of seconds or units ms/s/m/h/d/w, e.g. '30s', '2m', '1h30m'"


def _shown(value: str) -> str:
    """The value as quoted in a message, cut so a huge string cannot flood the error."""
    return repr(value if len(value) <= 40 else value[:40] + "...")


def parse_duration(value: object) -> float:
    """Seconds from a number (taken as seconds) or a string like "1h30m"; ValueError names what is wrong."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like '30s', '2m', '1h'")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError(f"a duration is at most {format_duration(MAX_DURATION_SECONDS)}") from None
    elif isinstance(value, str):
        seconds = _parse_text(value)
    else:
        raise ValueError(f"a duration must be a number or a string, not {type(value).__name__}")
    if not math.isfinite(seconds):
        raise ValueError(f"a duration must be a finite number of seconds, not {seconds}")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"a duration is at most {format_duration(MAX_DURATION_SECONDS)}")
    return seconds


def _parse_text(value: str) -> float:
    text = value.strip().lower().replace(" ", "")
    if not text:
        raise ValueError("empty duration")
    if len(text) > 64:
        raise ValueError(f"cannot read {_shown(value)} as a duration: {_HINT}")
    try:
        return float(text)
    except ValueError:
        pass
    pos = 0
    seconds = 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text):
        raise ValueError(f"cannot read {_shown(value)} as a duration: {_HINT}")
    return seconds


def format_duration(seconds: float) -> str:
    """Short human form: 90 -> '1m30s', 7200 -> '2h'."""
    if not math.isfinite(seconds):
        return "∞"
    total = round(seconds)
    if total < 60:
        return f"{seconds:.0f}s" if seconds >= 1 or seconds == 0 else f"{seconds:.2f}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size:
            count, total = divmod(total, size)
            parts.append(f"{count}{unit}")
    return "".join(parts[:2])


def within(*, low: float, high: float, low_exclusive: bool = False) -> AfterValidator:
    """A field's own bounds, said in durations: `must be at least 1s`, `must be at most 1d`."""

    def check(seconds: float) -> float:
        if low_exclusive and seconds <= low:
            raise ValueError(f"must be longer than {format_duration(low)}")
        if seconds < low:
            raise ValueError(f"must be at least {format_duration(low)}")
        if seconds > high:
            raise ValueError(f"must be at most {format_duration(high)}")
        return seconds

    return AfterValidator(check)


Duration = Annotated[float, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)]
# Zero means "no time" and breaks a timer or a rate: every such field is longer than zero.
PositiveDuration = Annotated[Duration, within(low=0.0, high=MAX_DURATION_SECONDS, low_exclusive=True)]
