"""Which runs the daemon watches (named in config, discovered from the wallet) and when each is due."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from monitor.rules.schedule import PollHint


@dataclass
class WatchList:
    """Which runs to poll and when each is next due."""

    configured: list[str] = field(default_factory=list)
    discovered: set[str] = field(default_factory=set)
    # Discovered runs whose name or model the discovery selector rejects: read once, then ignored.
    ignored: set[str] = field(default_factory=set)
    finished: dict[str, float] = field(default_factory=dict)
    # When each run was last polled (monotonic); it is due again one interval later (its interval may
    # change in between: a run that turns hot is due at min_interval after its last poll).
    last_polled: dict[str, float] = field(default_factory=dict)
    # Readings taken of each run since it showed a terminal status.
    terminal_reads: dict[str, int] = field(default_factory=dict)
    # When (monotonic) enforcement wants its next fresh reading of a run (Enforcer.read_by).
    read_by: dict[str, float] = field(default_factory=dict)
    # What each run's latest reading said about the next one (monitor.rules.schedule).
    hints: dict[str, PollHint] = field(default_factory=dict)

    def active(self) -> list[str]:
        ordered = list(dict.fromkeys([*self.configured, *sorted(self.discovered)]))
        return [r for r in ordered if r not in self.finished and r not in self.ignored]

    def due(self, now: float, interval_for: Callable[[str], float]) -> list[str]:
        return [r for r in self.active() if r not in self.last_polled or self.last_polled[r] + interval_for(r) <= now]

    def make_all_due(self) -> None:
        self.last_polled.clear()
