"""hypothesis over API answers: documents generated from the spec's schemas, then mutated, served
over a real loopback socket (tests/support/canned_api.py) to one PrimeClient.

Properties:
- every document the spec allows, with numbers inside the client's bounds, is read, and read right
  (no false alarm);
- whatever comes back (fields dropped, wrong types, huge / NaN / infinite numbers, deep nesting,
  huge bodies, truncation, non-UTF-8 bytes, wrong content types, compression, any status), the
  client returns a model or raises an ApiError subclass (InvalidResponseError for a 2xx), never
  anything else; a model it returns holds only finite numbers;
- the same client instance then reads a good answer.

Bounded for CI (CLIENT_FUZZ_EXAMPLES examples per test, 150 by default, derandomized so CI is
repeatable). A bigger, random sweep:

    CLIENT_FUZZ_EXAMPLES=20000 PYTHONPATH=$PWD .venv/bin/python -m pytest -q -p no:cacheprovider \\
        tests/test_client_fuzz.py
"""

from __future__ import annotations

import asyncio
import gzip
import json
import math
import os
import string
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr

import monitor
from monitor.api.body import MAX_JSON_DEPTH
from monitor.api.client import PrimeClient, RetryPolicy
from monitor.api.errors import ApiError, InvalidResponseError
from monitor.api.models import MAX_COUNT, DeleteRunResponse, RunUsageResponse, WalletResponse
from monitor.clock import ManualClock
from tests.support.canned_api import CannedApi, CannedReply

SPEC = Path(monitor.__file__).parent / "api" / "spec" / "prime-training-api.openapi.yml"
SCHEMAS: dict[str, Any] = yaml.safe_load(SPEC.read_text())["components"]["schemas"]
DEFAULT_EXAMPLES = 150
EXAMPLES = int(os.environ.get("CLIENT_FUZZ_EXAMPLES", DEFAULT_EXAMPLES))
LIMIT = 64 * 1024  # the fuzz client's max_response_bytes: "huge" stays cheap to send
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=EXAMPLES == DEFAULT_EXAMPLES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)

# The keywords the spec's response schemas use. A keyword outside this set fails the module at
# import, so a spec that grows one is not silently generated wrong.
KEYWORDS = {"type", "properties", "required", "items", "anyOf", "$ref", "format", "title", "description", "default"}


# --- documents from the spec's schemas ---------------------------------------------------------------


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values a schema admits, with numbers inside the client's bounds (for every field at once)."""
    unknown = set(schema) - KEYWORDS
    if unknown:
        raise ValueError(f"the spec uses keywords this generator does not model: {sorted(unknown)}")
    if "$ref" in schema:
        return from_schema(SCHEMAS[schema["$ref"].rsplit("/", 1)[1]])
    if "anyOf" in schema:
        return st.one_of([from_schema(option) for option in schema["anyOf"]])
    kind = schema["type"]
    if kind == "object":
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        known = st.fixed_dictionaries(
            {name: from_schema(sub) for name, sub in properties.items() if name in required},
            optional={name: from_schema(sub) for name, sub in properties.items() if name not in required},
        )
        # The service adds fields without notice; the client must tolerate them.
        unknown_fields = st.dictionaries(
            st.text(string.ascii_lowercase, max_size=6).map(lambda name: "x_" + name), JSON_SCALARS, max_size=2
        )
        return st.builds(lambda fields, extra: {**extra, **fields}, known, unknown_fields)
    if kind == "array":
        return st.lists(from_schema(schema["items"]), max_size=4)
    if kind == "string" and schema.get("format") == "date-time":
        moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
        return moments.map(datetime.isoformat)
    simple: dict[str, st.SearchStrategy[Any]] = {
        "string": st.text(max_size=12),
        "integer": st.integers(0, MAX_COUNT),
        # The intersection of every number field's bounds: prices are 0..1e6, money +-1e12.
        "number": st.floats(0, 1e6) | st.integers(0, 10**6),
        "boolean": st.booleans(),
        "null": st.none(),
    }
    return simple[kind]


JSON_SCALARS = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(-1e6, 1e6) | st.text(max_size=6)


@dataclass(frozen=True)
class Endpoint:
    name: str
    schema: str
    call: Callable[[PrimeClient], Awaitable[BaseModel]]
    model: type[BaseModel]
    # What a good answer must come back as: the parts of a document the client must not change.
    essence: Callable[[dict[str, Any]], Any]
    read: Callable[[Any], Any]


def _unique(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


ENDPOINTS = {
    endpoint.name: endpoint
    for endpoint in (
        Endpoint(
            "usage",
            "RunUsageResponse",
            lambda client: client.get_run_usage("run-1"),
            RunUsageResponse,
            lambda doc: (doc["run_id"], doc["total_tokens"], doc["total_cost_usd"], doc.get("record_count", 0)),
            lambda usage: (usage.run_id, usage.total_tokens, usage.total_cost_usd, usage.record_count),
        ),
        Endpoint(
            "wallet",
            "WalletResponse",
            lambda client: client.get_wallet(rows=5),
            WalletResponse,
            lambda doc: (doc["balance_usd"], doc["total_billings"], _unique([r["id"] for r in doc["recent_billings"]])),
            lambda wallet: (wallet.balance_usd, wallet.total_billings, [r.id for r in wallet.recent_billings]),
        ),
        Endpoint(
            "delete",
            "DeleteRunResponse",
            lambda client: client.delete_run("run-1"),
            DeleteRunResponse,
            lambda doc: (doc["runId"], doc["deleted"]),
            lambda deleted: (deleted.run_id, deleted.deleted),
        ),
    )
}
DOCUMENTS = {name: from_schema(SCHEMAS[endpoint.schema]) for name, endpoint in ENDPOINTS.items()}
GOOD = {
    "usage": {
        "run_id": "run-1",
        "training": {"tokens": 10, "cost_usd": 0.5},
        "inference": {"tokens": 4, "input_tokens": 3, "output_tokens": 1, "cost_usd": 0.25},
        "total_tokens": 14,
        "total_cost_usd": 0.75,
        "pricing": {"training_per_mtok": 0.3},
    },
    "wallet": {"wallet_id": "w", "balance_usd": 9.5, "currency": "USD", "total_billings": 0, "recent_billings": []},
    "delete": {"runId": "run-1", "deleted": True},
}


# --- mutations ------------------------------------------------------------------------------------

RAW = "\x00raw\x00"  # stands for raw JSON text that json.dumps cannot write; swapped in after dumping
RAW_TOKENS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1" + "0" * 5000, "1e-400", "-0", "1.5e308"]


def _nested(depth: int) -> Any:
    value: Any = 1
    for level in range(depth):
        value = [value] if level % 2 else {"n": value}
    return value


HOSTILE_VALUES = st.one_of(
    st.sampled_from([None, True, False, "", "12", "1e3", "NaN", [], {}, 5.0, -1, -1e-9, 1e300, -1e300, 0.1]),
    st.sampled_from([MAX_COUNT + 1, 2**63, 2**64, 10**30, -(2**63), 1e12 + 1, 1e6 + 0.5, 1e16]),
    st.integers(16, 400).map(lambda k: 10**k),
    st.floats(),  # NaN and infinities included: json.dumps writes them as NaN / Infinity
    st.integers(),
    st.text(max_size=8),
    st.integers(60, 70).map(_nested),
    st.sampled_from(RAW_TOKENS).map(lambda token: (RAW, token)),
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*prefix, key)
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield (*prefix, index)
            yield from _paths(child, (*prefix, index))


def _mutate(doc: Any, path: tuple[Any, ...], *, drop: bool, value: Any) -> Any:
    """A copy of doc with the item at path dropped, replaced or (a new key of a dict) added."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy: Any = dict(doc) if isinstance(doc, dict) else list(doc)
    if not rest and drop:
        del copy[head]
    elif not rest:
        copy[head] = value
    else:
        copy[head] = _mutate(doc[head], rest, drop=drop, value=value)
    return copy


def _dump(doc: Any) -> bytes:
    raw_tokens: list[str] = []

    def swap(value: Any) -> Any:
        if isinstance(value, tuple) and len(value) == 2 and value[0] == RAW:
            raw_tokens.append(value[1])
            return RAW
        if isinstance(value, dict):
            return {key: swap(child) for key, child in value.items()}
        if isinstance(value, list):
            return [swap(child) for child in value]
        return value

    text = json.dumps(swap(doc))
    for token in raw_tokens:
        text = text.replace(json.dumps(RAW), token, 1)
    return text.encode()


@st.composite
def mutated_documents(draw: st.DrawFn, endpoint: str) -> Any:
    """A generated document with one to three fields dropped, replaced or added with a hostile value.

    Added fields matter: the models bound the fields they know, so an unknown field is where only
    the body checks (depth, finite numbers) stand between a hostile value and a model.
    """
    doc = draw(DOCUMENTS[endpoint])
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(doc))
        operation = draw(st.sampled_from(["drop", "replace", "replace", "add"]))
        holders = [path for path in [(), *paths] if isinstance(_at(doc, path), dict)]
        if operation == "add" and holders:
            path = (*draw(st.sampled_from(holders)), "x_hostile")
            doc = _mutate(doc, path, drop=False, value=draw(HOSTILE_VALUES))
        elif paths and draw(st.integers(0, 19)) > 0:
            path = draw(st.sampled_from(paths))
            drop = operation == "drop"
            doc = _mutate(doc, path, drop=drop, value=None if drop else draw(HOSTILE_VALUES))
        else:
            doc = draw(HOSTILE_VALUES)  # now and then the whole document is something else
    return doc


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _often(draw: st.DrawFn, percent: int) -> bool:
    return draw(st.integers(0, 99)) < percent


@st.composite
def mutated_bodies(draw: st.DrawFn, body: bytes) -> bytes:
    if _often(draw, 75):
        return body
    kind = draw(st.sampled_from(["truncate", "bad-utf8", "deep", "huge", "bom", "latin1"]))
    if kind == "truncate":
        return body[: draw(st.integers(0, max(0, len(body) - 1)))]
    if kind == "bad-utf8":
        at = draw(st.integers(0, len(body)))
        return body[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"])) + body[at:]
    if kind == "deep":
        # 20,000: past the parser's recursion limit, inside the fuzz client's size limit.
        depth = draw(st.sampled_from([63, 64, 20_000]))
        return b"[" * depth + body + b"]" * depth
    if kind == "huge":
        return body[:-1] + b', "x_pad": "' + b"p" * (LIMIT + draw(st.integers(0, LIMIT))) + b'"}'
    if kind == "bom":
        return b"\xef\xbb\xbf" + body
    if kind == "latin1":
        return body.decode("utf-8").encode("latin-1", "replace") + b'"\xe9"'
    return body


OTHER_STATUSES = [201, 202, 301, 302, 400, 401, 403, 404, 409, 418, 422, 429, 500, 502, 503, 504]
OTHER_CONTENT_TYPES = ["application/problem+json", "text/html", "text/plain", "application/xml"]


@st.composite
def hostile_replies(draw: st.DrawFn, endpoint: str) -> CannedReply:
    body = draw(mutated_bodies(_dump(draw(mutated_documents(endpoint)))))
    headers: dict[str, str] = {}
    encoding = "identity" if _often(draw, 80) else draw(st.sampled_from(["gzip", "gzip", "gzip-cut", "br"]))
    if encoding == "gzip":
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    elif encoding == "gzip-cut":
        packed = gzip.compress(body)
        body, headers["Content-Encoding"] = packed[: len(packed) // 2], "gzip"
    elif encoding == "br":
        headers["Content-Encoding"] = "br"
    return CannedReply(
        status=200 if _often(draw, 70) else draw(st.sampled_from(OTHER_STATUSES)),
        body=body,
        content_type="application/json" if _often(draw, 90) else draw(st.sampled_from(OTHER_CONTENT_TYPES)),
        headers=headers,
    )


# --- the rig: one loop, one server, one client for the whole module ---------------------------------


class Rig:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.api = CannedApi()
        self.loop.run_until_complete(self.api.start())
        self.client = PrimeClient(
            base_url=self.api.base_url,
            api_key=SecretStr("fuzz-key-0123456789"),
            clock=ManualClock(),  # retries on 429/5xx sleep on it: recorded, not waited
            retry=RetryPolicy(max_attempts=2),
            timeout=5.0,
            max_response_bytes=LIMIT,
        )

    def call(self, endpoint: str, reply: CannedReply) -> BaseModel:
        self.api.reply = reply
        return self.loop.run_until_complete(ENDPOINTS[endpoint].call(self.client))

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.run_until_complete(self.api.stop())
        self.loop.close()


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    made = Rig()
    yield made
    made.close()


def _finite_and_shallow(value: Any, depth: int = 1) -> bool:
    """Every number finite, nothing nested deeper than the client's limit of 64 levels."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict | list):
        children = value.values() if isinstance(value, dict) else value
        return depth <= MAX_JSON_DEPTH and all(_finite_and_shallow(child, depth + 1) for child in children)
    return True


def _still_works(rig: Rig, endpoint: str) -> None:
    good = GOOD[endpoint]
    result = rig.call(endpoint, CannedReply(body=json.dumps(good).encode()))
    assert ENDPOINTS[endpoint].read(result) == ENDPOINTS[endpoint].essence(good)


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@FUZZ_SETTINGS
@given(data=st.data())
def test_every_answer_the_spec_allows_within_bounds_is_read_right(rig: Rig, endpoint: str, data: st.DataObject) -> None:
    doc = data.draw(DOCUMENTS[endpoint], label="document")
    body = json.dumps(doc).encode()
    if data.draw(st.booleans(), label="gzip"):
        reply = CannedReply(body=gzip.compress(body), headers={"Content-Encoding": "gzip"})
    else:
        reply = CannedReply(body=body)
    result = rig.call(endpoint, reply)
    assert isinstance(result, ENDPOINTS[endpoint].model)
    assert ENDPOINTS[endpoint].read(result) == ENDPOINTS[endpoint].essence(doc)


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@FUZZ_SETTINGS
@given(data=st.data())
def test_any_answer_gives_a_model_or_an_api_error_and_the_client_goes_on(
    rig: Rig, endpoint: str, data: st.DataObject
) -> None:
    reply = data.draw(hostile_replies(endpoint), label="reply")
    try:
        result = rig.call(endpoint, reply)
    except InvalidResponseError as error:
        assert error.kind == "invalid_response" and error.field
        event(f"HTTP {reply.status}: InvalidResponseError at {error.field.split('.')[0]}")
    except ApiError as error:
        event(f"HTTP {reply.status}: {type(error).__name__}")
        # Only a 2xx can be an invalid response; anything else is the status's own error.
        assert not 200 <= reply.status < 300, f"a 2xx raised {type(error).__name__}: {error}"
    else:
        assert 200 <= reply.status < 300
        assert isinstance(result, ENDPOINTS[endpoint].model)
        assert _finite_and_shallow(result.model_dump())
        event(f"HTTP {reply.status}: a model")
    _still_works(rig, endpoint)
