"""Run ids as the monitor accepts them, and how one becomes a URL path segment.

A run id travels into a URL path (`/billing/runs/{id}/usage`, `/training/runs/{id}`). An id that a
client, a proxy or the server could read as another path (`.`, `..`, one holding `/` or `\\`) or
that no real service issues (empty, control characters, absurdly long) is refused where it enters
the monitor: at config load (`watch.runs`, `match.run_id`) and at discovery (wallet rows), loudly,
never sent.
"""

from __future__ import annotations

import unicodedata

MAX_RUN_ID_CHARS = 256
# RFC 3986 unreserved characters other than '.', which is encoded too: `%2E%2E` cannot be collapsed
# as a dot segment by a client or a proxy that normalises paths, `..` can.
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_~")


def run_id_problem(run_id: object) -> str | None:
    """Why this cannot be a run id the monitor reads or deletes, or None when it can."""
    if not isinstance(run_id, str):
        return f"a run id must be a string, not {type(run_id).__name__}"
    if not run_id:
        return "a run id cannot be empty"
    if len(run_id) > MAX_RUN_ID_CHARS:
        return f"a run id is at most {MAX_RUN_ID_CHARS} characters (this one has {len(run_id)})"
    if run_id.strip(".") == "":
        return f"{run_id!r} is a dot segment: it would address another path"
    if run_id != run_id.strip():
        return "a run id cannot start or end with whitespace"
    for char in run_id:
        if char in "/\\":
            return f"a run id cannot contain {char!r}: it would address another path"
        if (char.isspace() and char != " ") or unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            return f"a run id cannot contain the control or invisible character U+{ord(char):04X}"
    return None


def path_segment(value: str) -> str:
    """Percent-encode every byte of `value` except unreserved letters, digits, '-', '_', '~'.

    The dot is encoded as well, so no id can form a dot segment. The caller has checked the id
    with `run_id_problem`; encoding alone would already keep it inside its own segment.
    """
    return "".join(char if char in _UNRESERVED else _encode(char) for char in value)


def _encode(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
