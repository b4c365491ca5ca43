"""Check a dashboard JSON document against Grafana's own schema, as grafana-foundation-sdk carries it.

The SDK's models are generated from Grafana's schema (the dashboard kind and each panel plugin's
options and field config, each Prometheus query), for the Grafana release the SDK build names
(`grafana-foundation-sdk==1769699241`: Grafana "next", the 12.x line). No Grafana server runs
here, so this is the check instead of an import into Grafana:

1. The document decodes into the typed models, with every panel type and query type known (an
   unknown one would stay an untyped bag).
2. Nothing is lost: encoding the models again gives the document back, key for key. A key the
   schema does not define (a typo, a field at the wrong level) is dropped by decoding and shows here.
3. Every value has the type the schema gives it: enums hold one of their values, numbers are
   numbers, lists are lists, nested objects are the right model.

`problems(document)` lists what is wrong, each with its JSON path; empty means valid.
"""

from __future__ import annotations

import enum
import json
import types
import typing
from typing import Any

from grafana_foundation_sdk.cog import plugins
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.runtime import UnknownDataquery
from grafana_foundation_sdk.models import dashboard as dashboard_models

_MAX_REPORTED = 50


def problems(document: dict[str, Any]) -> list[str]:
    plugins.register_default_plugins()
    try:
        model = dashboard_models.Dashboard.from_json(document)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return [f"$: does not decode as a dashboard: {exc!r}"]
    found: list[str] = []
    found += _unknown_plugins(model)
    encoded = json.loads(json.dumps(model, cls=JSONEncoder))
    found += _differences(document, encoded, "$")
    found += _type_errors(model, "$")
    return found[:_MAX_REPORTED]


def _unknown_plugins(model: dashboard_models.Dashboard) -> list[str]:
    found: list[str] = []
    for index, panel in enumerate(model.panels or []):
        if isinstance(panel, dashboard_models.RowPanel):
            continue
        path = f"$.panels[{index}]"
        if isinstance(panel.options, dict):
            found.append(f"{path}.type: {panel.type_val!r} is not a panel type the schema knows")
        for target_index, target in enumerate(panel.targets or []):
            if isinstance(target, UnknownDataquery):
                found.append(f"{path}.targets[{target_index}]: not a query of a data source type the schema knows")
    return found


def _differences(given: Any, encoded: Any, path: str) -> list[str]:
    if isinstance(given, dict) and isinstance(encoded, dict):
        found: list[str] = []
        for key in sorted(set(given) | set(encoded)):
            if key not in encoded:
                found.append(f"{path}.{key}: not a field of the schema")
            elif key not in given:
                continue  # a default the schema adds: harmless, Grafana adds it too
            else:
                found += _differences(given[key], encoded[key], f"{path}.{key}")
        return found
    if isinstance(given, list) and isinstance(encoded, list):
        if len(given) != len(encoded):
            return [f"{path}: {len(given)} items decode as {len(encoded)}"]
        found = []
        for index, (item, again) in enumerate(zip(given, encoded, strict=True)):
            found += _differences(item, again, f"{path}[{index}]")
        return found
    if given != encoded:
        return [f"{path}: {given!r} decodes as {encoded!r}"]
    return []


def _type_errors(value: object, path: str) -> list[str]:
    """Walk a decoded model and compare every attribute with its annotation."""
    hints = _hints(type(value))
    found: list[str] = []
    for name, hint in hints.items():
        attribute = getattr(value, name, None)
        found += _check(attribute, hint, f"{path}.{name}")
    return found


def _hints(cls: type) -> dict[str, Any]:
    if not hasattr(cls, "to_json") or not hasattr(cls, "__annotations__"):
        return {}
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):
        return {}


def _check(value: object, hint: Any, path: str) -> list[str]:
    if hint is Any or hint is object:
        # Panel options and field config are typed `object` on the panel; the plugin's model they
        # decoded into carries the real schema.
        return _type_errors(value, path) if _hints(type(value)) else []
    origin = typing.get_origin(hint)
    arguments = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in arguments:
            return []
        members = [member for member in arguments if member is not type(None)]
        for member in members:  # a decoded model: check it against its own class
            if isinstance(member, type) and hasattr(member, "to_json") and isinstance(value, member):
                return _check(value, member, path)
        attempts = [_check(value, member, path) for member in members]
        if any(not attempt for attempt in attempts):
            return []
        return attempts[0] if len(attempts) == 1 else [f"{path}: {_short(value)} is none of {hint}"]
    if origin is typing.Literal:
        return [] if value in arguments else [f"{path}: {_short(value)} is not one of {arguments}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{path}: {_short(value)} is not a list"]
        found: list[str] = []
        for index, item in enumerate(value):
            found += _check(item, arguments[0] if arguments else Any, f"{path}[{index}]")
        return found
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{path}: {_short(value)} is not an object"]
        found = []
        for key, item in value.items():
            found += _check(item, arguments[1] if len(arguments) == 2 else Any, f"{path}.{key}")
        return found
    if isinstance(hint, type):
        return _check_class(value, hint, path)
    return []


def _check_class(value: object, hint: type, path: str) -> list[str]:
    if issubclass(hint, enum.Enum):
        allowed = {member.value for member in hint}
        raw = value.value if isinstance(value, enum.Enum) else value
        return [] if raw in allowed else [f"{path}: {_short(value)} is not one of {sorted(map(str, allowed))}"]
    if hint is bool:
        return [] if isinstance(value, bool) else [f"{path}: {_short(value)} is not a boolean"]
    if hint in (int, float):
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        whole = hint is float or isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        return [] if numeric and whole else [f"{path}: {_short(value)} is not a {hint.__name__}"]
    if hint is str:
        return [] if isinstance(value, str) else [f"{path}: {_short(value)} is not a string"]
    if isinstance(value, dict) and hasattr(hint, "from_json"):
        # Parts the SDK leaves undecoded (panel transformations): decode them with their model here.
        try:
            value = hint.from_json(value)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            return [f"{path}: does not decode as {hint.__name__}: {exc!r}"]
    if not isinstance(value, hint):
        return [f"{path}: {type(value).__name__} is not {hint.__name__}"]
    return _type_errors(value, path)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
