"""Settings from the environment: `PRIME_MONITOR_<SECTION>__<KEY>` and the official CLI's names.

Read here rather than by pydantic-settings so that every value remembers the variable it came
from: a bad value is reported as `PRIME_MONITOR_POLL__INTERVAL: ...`, and a name that looks like
ours but matches no setting (`PRIME_MONITOR_ENFORCE_DRY_RUN`, one underscore) is warned about with
the closest real name instead of being silently ignored. Lists, mappings and whole sections are
written as JSON, as pydantic-settings reads them.
"""

from __future__ import annotations

import difflib
import json
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from monitor.config.yaml_reader import MAX_NESTING, ConfigError

EnvPath = tuple[str, ...]
ENV_PREFIX = "PRIME_MONITOR_"
NESTED_DELIMITER = "__"
# The official `prime` CLI's names, so one exported PRIME_API_KEY serves both tools.
PRIME_CLI_NAMES: dict[str, tuple[str, ...]] = {
    "PRIME_API_KEY": ("api", "api_key"),
    "PRIME_API_BASE_URL": ("api", "base_url"),
    "PRIME_TEAM_ID": ("api", "team_id"),
    "SLACK_BOT_TOKEN": ("notify", "slack", "token"),
}
MAX_ENV_VALUE_CHARS = 64 * 1024
# Secrets may come from files, as Docker and Kubernetes mount them: `<NAME>_FILE=/run/secrets/x` sets
# what `<NAME>` would, from the file's text (its trailing newline dropped). Re-read on every load, so
# a SIGHUP picks up a rotated secret.
FILE_SUFFIX = "_FILE"
SECRET_PATHS: frozenset[EnvPath] = frozenset(
    {("api", "api_key"), ("notify", "slack", "token"), ("notify", "slack", "webhook_url"), ("notify", "webhook", "url")}
)
MAX_SECRET_FILE_BYTES = 64 * 1024


@dataclass
class EnvConfig:
    """What the environment sets: nested data like a config file's, and where each value came from."""

    data: dict[str, Any] = field(default_factory=dict)
    # The variable behind each value set, by its path (a list or a scalar: the leaf; never a section).
    origins: dict[EnvPath, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def origin_of(self, path: tuple[str | int, ...]) -> str | None:
        """The variable that set `path` or the list or value it is inside, if the environment set it."""
        for end in range(len(path), 0, -1):
            name = self.origins.get(tuple(str(part) for part in path[:end]))
            if name is not None:
                return name
        return None

    def origins_under(self, path: tuple[str | int, ...]) -> list[str]:
        """Variables that set something inside `path` (for errors about a whole section)."""
        prefix = tuple(str(part) for part in path)
        return sorted({name for where, name in self.origins.items() if where[: len(prefix)] == prefix})


def read_env(environ: Mapping[str, str], schema: type[BaseModel]) -> EnvConfig:
    """The settings `environ` sets; ConfigError names the variable of a value that cannot be read.

    Precedence, highest first: PRIME_MONITOR_* (a key beats the JSON of its whole section), then the
    official CLI's names. Names under PRIME_MONITOR_ that match no setting are returned as warnings.
    """
    fields = _schema_paths(schema)
    out = EnvConfig()
    for name, path in PRIME_CLI_NAMES.items():
        value = _value_or_file(environ, name, secret=path in SECRET_PATHS)
        if value:
            _set(out, path, _checked_text(name, value), name)
    ours: list[tuple[EnvPath, str, str]] = []
    claimed: dict[EnvPath, str] = {}
    for name, value in environ.items():
        if not name.upper().startswith(ENV_PREFIX):
            continue
        path = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split(NESTED_DELIMITER))
        secret_path = (*path[:-1], path[-1].removesuffix("_file"))
        if name.upper().endswith(FILE_SUFFIX) and secret_path in SECRET_PATHS:
            path = secret_path
            value = _read_secret_file(name, value)
        if path not in fields:
            out.warnings.append(_unknown_name_warning(name, fields))
            continue
        if path in claimed:
            raise ConfigError(f"{claimed[path]} and {name} both set {'.'.join(path)}: keep one")
        claimed[path] = name
        ours.append((path, name, value))
    # Shorter paths first, so PRIME_MONITOR_POLL__INTERVAL lands on top of PRIME_MONITOR_POLL's JSON.
    for path, name, value in sorted(ours, key=lambda item: len(item[0])):
        _set(out, path, _parse_value(name, value, is_json=fields[path]), name)
    return out


def _value_or_file(environ: Mapping[str, str], name: str, *, secret: bool) -> str | None:
    """`name`'s value, or for a secret the text of the file `<name>_FILE` names (not both)."""
    value = environ.get(name)
    path = environ.get(name + FILE_SUFFIX) if secret else None
    if path:
        if value:
            raise ConfigError(f"{name} and {name}{FILE_SUFFIX} are both set: keep one")
        return _read_secret_file(name + FILE_SUFFIX, path)
    return value


def _read_secret_file(name: str, path: str) -> str:
    """The secret in the file `name` points at; ConfigError names the variable and the file (never the text)."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read the secret file {_printable(path)}: {exc.strerror or exc}") from None
    if len(raw) > MAX_SECRET_FILE_BYTES:
        raise ConfigError(f"{name}: the secret file {_printable(path)} is over {MAX_SECRET_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ConfigError(f"{name}: the secret file {_printable(path)} is not UTF-8 text") from None
    if not text.strip():
        raise ConfigError(f"{name}: the secret file {_printable(path)} is empty")
    return text


def env_names(schema: type[BaseModel]) -> list[str]:
    """Every PRIME_MONITOR_* name that sets something, sections included."""
    return sorted(_env_name(path) for path in _schema_paths(schema))


def _env_name(path: EnvPath) -> str:
    return ENV_PREFIX + NESTED_DELIMITER.join(part.upper() for part in path)


def _unknown_name_warning(name: str, fields: Mapping[EnvPath, bool]) -> str:
    path = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split(NESTED_DELIMITER))
    container = next((path[:end] for end in range(len(path) - 1, 0, -1) if fields.get(path[:end])), None)
    if container is not None and not any(len(p) > len(container) and p[: len(container)] == container for p in fields):
        # RULES__0__THRESHOLD: a list is set whole, as JSON.
        hint = f"did you mean {_env_name(container)}? (it takes the whole value as JSON)"
    else:
        # Compared without the shared prefix, which would make every name look close to every other.
        candidates = [_env_name(p)[len(ENV_PREFIX) :] for p in fields]
        close = difflib.get_close_matches(name[len(ENV_PREFIX) :].upper(), candidates, n=1, cutoff=0.6)
        hint = (
            f"did you mean {ENV_PREFIX}{close[0]}?"
            if close
            else f"settings are {ENV_PREFIX}<SECTION>{NESTED_DELIMITER}<KEY>, e.g. {ENV_PREFIX}POLL__INTERVAL"
        )
    return f"environment variable {_printable(name)} matches no setting and is ignored; {hint}"


def _printable(text: str) -> str:
    shown = text if text.isprintable() else text.encode("ascii", "backslashreplace").decode("ascii")
    return shown if len(shown) <= 80 else shown[:80] + "..."


def _checked_text(name: str, value: str) -> str:
    if len(value) > MAX_ENV_VALUE_CHARS:
        raise ConfigError(f"{name}: the value is longer than {MAX_ENV_VALUE_CHARS:,} characters")
    if any("\ud800" <= char <= "\udfff" for char in value):
        # os.environ holds bytes that are not UTF-8 as lone surrogates.
        raise ConfigError(f"{name}: the value is not UTF-8 text")
    if "\x00" in value:
        raise ConfigError(f"{name}: the value holds a NUL character")
    return value


def _parse_value(name: str, value: str, *, is_json: bool) -> object:
    text = _checked_text(name, value)
    if not is_json:
        return text
    try:
        parsed = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except RecursionError:
        raise ConfigError(f"{name}: the JSON is nested deeper than {MAX_NESTING} levels") from None
    except ValueError as exc:
        # Besides syntax: a duplicate key, or an integer longer than Python reads (4300 digits).
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc).split(":")[0]
        raise ConfigError(
            f"{name}: not valid JSON ({detail}); lists and sections are written as JSON, "
            'e.g. ["run-a", "run-b"] or {"interval": "15s"}'
        ) from None
    if _depth(parsed) > MAX_NESTING:
        raise ConfigError(f"{name}: the JSON is nested deeper than {MAX_NESTING} levels")
    return parsed


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key[:40]!r} appears twice")
        out[key] = value
    return out


def _depth(value: object) -> int:
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return deepest


def _set(out: EnvConfig, path: EnvPath, value: object, name: str) -> None:
    node = out.data
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    existing = node.get(path[-1])
    node[path[-1]] = deep_merge(existing, value) if isinstance(existing, dict) and isinstance(value, dict) else value
    for leaf in _leaves(path, value):
        out.origins[leaf] = name


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` on top of `base`: mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in extra.items():
        existing = out.get(key)
        out[key] = deep_merge(existing, value) if isinstance(value, dict) and isinstance(existing, dict) else value
    return out


def _leaves(path: EnvPath, value: object) -> Iterator[EnvPath]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _leaves((*path, str(key)), child)
    else:
        yield path


def _schema_paths(schema: type[BaseModel], prefix: EnvPath = ()) -> dict[EnvPath, bool]:
    """Every settable path: True where the value is JSON (a section, a list or a mapping)."""
    paths: dict[EnvPath, bool] = {}
    for name, info in schema.model_fields.items():
        path = (*prefix, name)
        section = _section_model(info.annotation)
        if section is not None:
            paths[path] = True
            paths.update(_schema_paths(section, path))
        else:
            paths[path] = _is_container(info.annotation)
    return paths


def _members(annotation: object) -> list[object]:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _members(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [member for arg in get_args(annotation) for member in _members(arg)]
    return [annotation]


def _section_model(annotation: object) -> type[BaseModel] | None:
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            return member
    return None


def _is_container(annotation: object) -> bool:
    return any(get_origin(member) in (list, dict, tuple, set) for member in _members(annotation))
