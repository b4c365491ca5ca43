"""Reading a YAML config file into plain data that cannot surprise the validator.

Only plain YAML is accepted: UTF-8 text (a UTF-8 byte-order mark is fine), strings, numbers,
booleans, null, lists and mappings whose keys are strings. Everything else is refused with the
line it is on, before any value reaches the settings: other encodings, duplicate keys (YAML would
let the second one silently win: two `enforce:` sections could flip dry_run), tags (`!!python/...`,
`!!binary`, timestamps), nesting deeper than any config needs (the parser, the validator and the
error formatter would hit Python's recursion limit), alias bombs and self-referencing aliases, lone
surrogates (they pass validation and then fail when the config is hashed), numbers too long to read.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# A config is a page or two; a file over this is a mistake (a log, a binary), not a config.
MAX_FILE_BYTES = 1024 * 1024
# The deepest real config is rules[i].match.name[j]: 4 levels. Anything past this is an attack or a bug.
MAX_NESTING = 32
# Values after aliases are expanded: a config has hundreds; a billion-laughs file has billions.
MAX_EXPANDED_NODES = 100_000

_CORE = "tag:yaml.org,2002:"
_MERGE = _CORE + "merge"
_ALLOWED_TAGS = frozenset(_CORE + name for name in ("str", "int", "float", "bool", "null", "seq", "map", "merge"))
_OTHER_BOMS = {
    codecs.BOM_UTF32_LE: "UTF-32",
    codecs.BOM_UTF32_BE: "UTF-32",
    codecs.BOM_UTF16_LE: "UTF-16",
    codecs.BOM_UTF16_BE: "UTF-16",
}


class ConfigError(Exception):
    """Bad configuration; the message names the file and the field or line. The CLI exits 2 on it."""


Path_ = tuple[str | int, ...]


@dataclass
class YamlDocument:
    """A parsed file: its data, and the line each key or list item is on (for error messages)."""

    data: dict[str, Any]
    lines: dict[Path_, int] = field(default_factory=dict)

    def line_of(self, path: Path_) -> int | None:
        """The line of the deepest part of `path` the file holds (a missing key: its parent's line)."""
        for end in range(len(path), 0, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None


class _Refused(Exception):
    """Found while reading: said with its line."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class _PlainLoader(yaml.SafeLoader):
    """SafeLoader that composes at most MAX_NESTING levels and reads dates as strings."""

    # Without the timestamp resolver an unquoted 2024-01-01 (a run id, a name) stays a string.
    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _CORE + "timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        # The composer recurses once per level: stop long before Python's recursion limit.
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _Refused(f"nested deeper than {MAX_NESTING} levels", line=mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_int(self, node: ScalarNode) -> int:
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            # Python refuses to read integers of more than 4300 digits.
            raise _Refused("a number too long to read", line=node.start_mark.line + 1) from None


# The constructor table holds functions, not method names: point it at the override.
_PlainLoader.add_constructor(_CORE + "int", _PlainLoader.construct_yaml_int)


def parse_yaml_mapping(text: str, *, source: str, error: type[ConfigError], sections_hint: str) -> dict[str, Any]:
    """YAML text whose top level is a mapping; `error` names the source and the line at fault."""
    return parse_yaml_document(text, source=source, error=error, sections_hint=sections_hint).data


def parse_yaml_document(text: str, *, source: str, error: type[ConfigError], sections_hint: str) -> YamlDocument:
    """Parse and check `text`; raises `error` naming `source` and the line for anything not plain YAML."""
    text = text.removeprefix("\ufeff")
    loader: _PlainLoader | None = None
    try:
        # The reader checks every character as it is built: inside the try.
        loader = _PlainLoader(text)
        root = loader.get_single_node()
        if root is None:
            return YamlDocument(data={})
        lines = _check_nodes(root)
        data = loader.construct_document(root)
    except _Refused as exc:
        where = f" at line {exc.line}" if exc.line is not None else ""
        raise error(f"{source}: refused{where}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise error(f"{source}: not valid YAML{where}: {exc.problem or exc.context}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        char = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
        raise error(
            f"{source}: not valid YAML at line {line}: the character {char} is not allowed in YAML text"
        ) from None
    except yaml.YAMLError as exc:
        raise error(f"{source}: not valid YAML: {exc}") from None
    except (ValueError, OverflowError):
        # PyYAML lets these through for an escape naming no character ("\\UFFFFFFFF" -> chr() fails).
        line = loader.line + 1 if loader is not None else 1
        raise error(f"{source}: not valid YAML at line {line}: an escape sequence names no character") from None
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(data, dict):
        raise error(f"{source}: the top level must be a mapping ({sections_hint})")
    return YamlDocument(data=data, lines=lines)


def _check_nodes(root: Node) -> dict[Path_, int]:
    """Refuse what safe YAML would still load; return the line of every key and list item."""
    _check_expansion(root)
    lines: dict[Path_, int] = {}
    for node, path in _walk(root):
        if node.tag not in _ALLOWED_TAGS:
            tag = "!!" + node.tag.removeprefix(_CORE) if node.tag.startswith(_CORE) else node.tag
            raise _Refused(f"the tag {_short(tag)} is not allowed in a config (plain YAML only)", line=_line(node))
        if isinstance(node, ScalarNode) and any("\ud800" <= char <= "\udfff" for char in node.value):
            raise _Refused("a string holds a lone surrogate escape (\\ud800-\\udfff), not text", line=_line(node))
        if isinstance(node, MappingNode):
            _check_keys(node)
            for key_node, _value in node.value:
                if key_node.tag != _MERGE:
                    lines.setdefault((*path, key_node.value), _line(key_node))
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                lines.setdefault((*path, index), _line(item))
    return lines


def _check_keys(node: MappingNode) -> None:
    seen: dict[str, int] = {}
    for key_node, _value in node.value:
        if key_node.tag == _MERGE:
            continue
        if not isinstance(key_node, ScalarNode) or key_node.tag != _CORE + "str":
            if not isinstance(key_node, ScalarNode):
                raise _Refused("a key is a list or a mapping, not a string", line=_line(key_node))
            hint = (
                " (YAML reads yes/no/on/off/true/false as booleans and null/~ as nothing: quote it)"
                if key_node.tag in (_CORE + "bool", _CORE + "null")
                else ""
            )
            raise _Refused(f"the key {_short(key_node.value)!r} is not a string{hint}", line=_line(key_node))
        key, line = key_node.value, _line(key_node)
        if key in seen:
            where = f"twice on line {line}" if seen[key] == line else f"at lines {seen[key]} and {line}"
            raise _Refused(
                f"the key {_short(key)!r} appears {where} of one mapping; YAML would silently keep the "
                "second: keep one",
                line=line,
            )
        seen[key] = line


def _check_expansion(root: Node) -> None:
    """Size and depth of the data once aliases are expanded; refuse cycles, bombs and deep chains."""
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    in_progress: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            in_progress.discard(key)
            children = _children(node)
            sizes[key] = 1 + sum(sizes[id(child)] for child in children)
            depths[key] = 1 + max((depths[id(child)] for child in children), default=0)
            if sizes[key] > MAX_EXPANDED_NODES:
                raise _Refused(
                    f"the aliases expand to more than {MAX_EXPANDED_NODES:,} values (an alias bomb?)", line=_line(node)
                )
            if depths[key] > MAX_NESTING + 1:
                raise _Refused(f"nested deeper than {MAX_NESTING} levels once aliases are expanded", line=_line(node))
            continue
        if key in sizes:
            continue
        in_progress.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in in_progress:
                raise _Refused("an alias refers to the collection it is inside (a cycle)", line=_line(child))
            if id(child) not in sizes:
                stack.append((child, False))


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _walk(root: Node) -> Iterator[tuple[Node, Path_]]:
    """Every node once per place it appears (aliases included: the expansion is bounded above)."""
    stack: list[tuple[Node, Path_]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        yield node, path
        if isinstance(node, MappingNode):
            for key_node, value_node in node.value:
                stack.append((key_node, path))
                key = key_node.value if isinstance(key_node, ScalarNode) else "?"
                stack.append((value_node, path if key_node.tag == _MERGE else (*path, key)))
        elif isinstance(node, SequenceNode):
            stack.extend((item, (*path, index)) for index, item in enumerate(node.value))


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:40] + "..."


def read_config_bytes(path: Path) -> str:
    """The file's text; ConfigError names the file, and the line of a byte that is not UTF-8."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from None
    except ValueError as exc:  # e.g. a path with a NUL byte
        raise ConfigError(f"{path}: cannot read the config file: {exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_FILE_BYTES // 1024} KiB; this is not a config file")
    for bom, name in _OTHER_BOMS.items():
        if raw.startswith(bom):
            raise ConfigError(f"{path}: the file is {name} (it starts with a {name} byte-order mark); save it as UTF-8")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"{path}: not UTF-8 text: byte 0x{raw[exc.start]:02x} at line {line}, column {column}; "
            "save the file as UTF-8"
        ) from None
