"""Loading the settings: the YAML file, the environment and test overrides merged, validated into
Settings, and what a person should hear about them. Every bad input is a ConfigError naming the file,
line, field or variable, and nothing else escapes (a SIGHUP reload relies on catching it alone).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from monitor.config.env import deep_merge, read_env
from monitor.config.errors import format_validation_error
from monitor.config.settings import Settings
from monitor.config.yaml_reader import ConfigError, YamlDocument, parse_yaml_document, read_config_bytes

__all__ = ["ConfigError", "LoadedConfig", "load_config", "load_settings"]

# Secrets a config file may hold (they belong in the environment): the file's mode is checked.
SECRET_PATHS: tuple[tuple[str, ...], ...] = (
    ("api", "api_key"),
    ("notify", "slack", "token"),
    ("notify", "slack", "webhook_url"),
    ("notify", "webhook", "url"),
)


@dataclass(frozen=True)
class LoadedConfig:
    """Settings, and what a person should hear about them (unknown env names, a readable secret file)."""

    settings: Settings
    warnings: list[str] = field(default_factory=list)


def load_settings(
    path: Path | str | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read, merge and validate; raises ConfigError, and only ConfigError, naming the file and field."""
    return load_config(path, overrides=overrides, environ=environ).settings


def load_config(
    path: Path | str | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> LoadedConfig:
    """The settings from `path` (or none), the environment (default os.environ) and `overrides` (tests).

    Raises ConfigError and nothing else for any input: a SIGHUP reload relies on catching it alone.
    """
    source = str(path) if path is not None else "configuration"
    try:
        return _load(path, overrides=overrides, environ=os.environ if environ is None else environ)
    except ConfigError:
        raise
    except Exception as exc:
        # Every known bad input has its own message; this net keeps an unforeseen one from escaping
        # as a traceback (or killing a reload). The value is not quoted: it may be a secret.
        raise ConfigError(
            f"{source}: cannot be read as a configuration ({type(exc).__name__}); "
            "this is a bug in prime-cost-monitor, please report it"
        ) from None


def _load(path: Path | str | None, *, overrides: Mapping[str, Any] | None, environ: Mapping[str, str]) -> LoadedConfig:
    document = YamlDocument(data={})
    if path is not None:
        text = read_config_bytes(Path(path))
        document = parse_yaml_document(
            text, source=str(path), error=ConfigError, sections_hint="sections api, watch, rules, ..."
        )
    env = read_env(environ, Settings)
    raw = deep_merge(document.data, env.data)
    if overrides:
        raw = deep_merge(raw, dict(overrides))
    source = str(path) if path is not None else "configuration"
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, raw, document=document, env=env)) from None
    warnings = list(env.warnings)
    if path is not None:
        warnings.extend(_readable_secret_warning(Path(path), document.data))
    return LoadedConfig(settings=settings, warnings=warnings)


def _readable_secret_warning(path: Path, data: Mapping[str, Any]) -> list[str]:
    held = [".".join(where) for where in SECRET_PATHS if _get(data, where) not in (None, "")]
    if not held:
        return []
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError):
        return []
    if not mode & 0o077:
        return []
    return [
        f"{path} holds a secret ({', '.join(held)}) and can be read by other users (mode {mode & 0o777:o}): "
        f"run `chmod 600 {path}`, or pass the secret in the environment"
    ]


def _get(data: Mapping[str, Any], where: tuple[str, ...]) -> object:
    node: object = data
    for key in where:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node
