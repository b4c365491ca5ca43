"""Validation errors as a person reads them: the field's path, where it was set, what is wrong.

c.yml: invalid configuration
  rules[0] (run-cap).thresold (line 4): Extra inputs are not permitted
  poll.interval (from PRIME_MONITOR_POLL__INTERVAL): must be at least 1s
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from monitor.config.env import EnvConfig
from monitor.config.yaml_reader import YamlDocument

# Past this many problems the rest are counted, not listed: a 10,000-item list must not flood the terminal.
_MAX_LISTED_ERRORS = 20
# Pydantic puts the tag of the rule kind chosen (run/wallet) after the rule's index: not a field.
_RULE_TAGS = ("run", "wallet")


def _field_path(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    if len(loc) >= 3 and loc[0] == "rules" and isinstance(loc[1], int) and loc[2] in _RULE_TAGS:
        return (*loc[:2], *loc[3:])
    return loc


def _format_loc(path: tuple[int | str, ...], raw_rules: object) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            if out == f"rules[{part}]" and isinstance(raw_rules, list) and part < len(raw_rules):
                rule = raw_rules[part]
                name = rule.get("name") if isinstance(rule, dict) else None
                if isinstance(name, str) and name:
                    out += f" ({_shown(name)})"
        else:
            out += ("." if out else "") + _shown(part)
    return out


def _shown(text: str) -> str:
    """A key or name as it goes into a message: printable, and cut if long."""
    shown = text if text.isprintable() else text.encode("ascii", "backslashreplace").decode("ascii")
    return shown if len(shown) <= 60 else shown[:60] + "..."


def format_validation_error(
    error: ValidationError, source: str, raw: Mapping[str, Any], *, document: YamlDocument, env: EnvConfig
) -> str:
    """One line per problem: the field's path, where it was set (file line or env variable), what is wrong."""
    lines = [f"{source}: invalid configuration"]
    items = error.errors(include_url=False, include_input=False, include_context=False)
    for item in items[:_MAX_LISTED_ERRORS]:
        path = _field_path(tuple(item["loc"]))
        where = _where(path, document=document, env=env)
        message = str(item["msg"]).removeprefix("Value error, ")
        field_name = _format_loc(path, raw.get("rules"))
        lines.append(f"  {field_name}{where}: {message}" if field_name else f"  {message}{where}")
    if len(items) > _MAX_LISTED_ERRORS:
        lines.append(f"  ... and {len(items) - _MAX_LISTED_ERRORS} more")
    return "\n".join(lines)


def _where(path: tuple[int | str, ...], *, document: YamlDocument, env: EnvConfig) -> str:
    name = env.origin_of(path)
    if name is not None:
        return f" (from {name})"
    line = document.line_of(path)
    inside = env.origins_under(path)
    if inside:
        also = f"line {line}, " if line is not None else ""
        return f" ({also}with {', '.join(inside)})"
    return f" (line {line})" if line is not None else ""
