"""How the API client reads a response body: bounded in size, depth and numbers, or refused.

- Size: the body is streamed and reading stops as soon as it passes the limit (a declared
  Content-Length over the limit is refused before reading). A gzip or deflate body is inflated
  here with the output capped, so a small compressed body cannot expand past the limit either.
- Text: JSON is UTF-8 (RFC 8259); other bytes are refused, naming the offset.
- Depth: JSON nested deeper than MAX_JSON_DEPTH is refused. The stdlib parser raises
  RecursionError on very deep input; that is caught here too.
- Numbers: NaN, Infinity and numbers that overflow a float (1e999) are not JSON numbers: refused,
  naming the field. An integer longer than Python's digit limit is refused instead of raising.

Every refusal is a BodyError with the field at fault; the client turns it into InvalidResponseError.
"""

from __future__ import annotations

import json
import math
import zlib
from typing import Any

import httpx

MAX_JSON_DEPTH = 64
BODY = "(body)"


class BodyError(Exception):
    """The body cannot be used; `field` names where (BODY for the body as a whole)."""

    def __init__(self, message: str, *, field: str = BODY) -> None:
        super().__init__(message)
        self.field = field


def describe_size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MiB"
    if size >= 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size} bytes"


class _Inflater:
    """Incremental gzip/deflate decoding whose output never exceeds what the caller has room for."""

    def __init__(self, encoding: str) -> None:
        # 32 + MAX_WBITS: zlib detects a gzip or a zlib header by itself.
        self._inflate = zlib.decompressobj(32 + zlib.MAX_WBITS)
        self.encoding = encoding

    def feed(self, chunk: bytes, *, room: int) -> bytes:
        # max_length = room + 1: one byte more than fits proves the body is too large, without
        # inflating the rest. (max_length 0 would mean unlimited; room + 1 is at least 1.)
        try:
            return self._inflate.decompress(chunk, room + 1)
        except zlib.error as exc:
            raise BodyError(f"the {self.encoding} body cannot be decoded ({exc})") from None

    def finish(self, *, room: int) -> bytes:
        try:
            return self._inflate.flush(room + 1)
        except zlib.error as exc:
            raise BodyError(f"the {self.encoding} body cannot be decoded ({exc})") from None


def _inflater_for(response: httpx.Response) -> _Inflater | None:
    encodings = [part.strip().lower() for part in response.headers.get("Content-Encoding", "").split(",")]
    encodings = [part for part in encodings if part and part != "identity"]
    if not encodings:
        return None
    if encodings in (["gzip"], ["x-gzip"], ["deflate"]):
        return _Inflater(encodings[0])
    raise BodyError(f"the body has a Content-Encoding the client did not ask for: {', '.join(encodings)}")


async def read_limited(response: httpx.Response, *, limit: int) -> bytes:
    """The whole body, decoded, or BodyError as soon as it is known to pass `limit` bytes."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyError(
            f"the body is {describe_size(int(declared))} (Content-Length), over the limit of {describe_size(limit)}"
        )
    inflater = _inflater_for(response)
    chunks: list[bytes] = []
    size = 0
    # aiter_raw: the bytes as sent (transfer coding removed, content coding kept), decoded below
    # under the cap, never by httpx without one.
    async for raw in response.aiter_raw():
        chunk = raw if inflater is None else inflater.feed(raw, room=limit - size)
        size += len(chunk)
        if size > limit:
            raise BodyError(f"the body is larger than the limit of {describe_size(limit)}; reading stopped there")
        chunks.append(chunk)
    if inflater is not None:
        tail = inflater.finish(room=limit - size)
        size += len(tail)
        if size > limit:
            raise BodyError(f"the body is larger than the limit of {describe_size(limit)}; reading stopped there")
        chunks.append(tail)
    return b"".join(chunks)


def check_json_content_type(response: httpx.Response) -> None:
    """A success must say it is JSON (or say nothing): an HTML page from a proxy or a portal is not an answer."""
    header = response.headers.get("Content-Type")
    if header is None:
        return
    media_type = header.split(";", 1)[0].strip().lower()
    if media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json")):
        return
    raise BodyError(f"the body is {media_type or 'of no type'}, not application/json")


def parse_json(raw: bytes) -> Any:
    """The JSON value of `raw`, checked for depth and non-finite numbers."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(f"the body is not UTF-8 (invalid byte at offset {exc.start})") from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise BodyError(f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        snippet = text[:60].replace("\n", " ")
        raise BodyError(
            f"the body is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}; starts {snippet!r})"
        ) from None
    except ValueError as exc:
        # Python refuses to convert an integer of more than 4300 digits (a guard against slow parsing).
        raise BodyError(f"the body holds a number that cannot be read ({exc})") from None
    check_tree(value)
    return value


def field_name(path: tuple[str | int, ...], *, max_parts: int = 4) -> str:
    """A dotted field path as errors show it (`recent_billings.3.amount_usd`), cut after `max_parts`."""
    if not path:
        return BODY
    shown = ".".join(str(part) for part in path[:max_parts])
    return shown + ".…" if len(path) > max_parts else shown


def check_tree(value: Any) -> None:
    """Walk the parsed value without recursion: depth <= MAX_JSON_DEPTH, every float finite."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict | list):
            if len(path) >= MAX_JSON_DEPTH:
                raise BodyError(f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels", field=field_name(path))
            items = node.items() if isinstance(node, dict) else enumerate(node)
            stack.extend((child, (*path, key)) for key, child in items)
        elif isinstance(node, float) and not math.isfinite(node):
            what = "NaN" if math.isnan(node) else "infinite or too large for a number"
            raise BodyError(f"`{field_name(path)}` is {what}, which is not a JSON number", field=field_name(path))
