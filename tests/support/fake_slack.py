"""The one fake Slack used by every test: enough of the Slack Web API for the real slack-sdk.

An aiohttp server on 127.0.0.1 (a free port) that answers:

- ``POST /api/chat.postMessage`` (JSON or form-encoded). Checks the Bearer token (missing:
  ``not_authed``, wrong: ``invalid_auth``), needs ``channel`` and ``text`` or ``blocks``, checks the
  blocks against Slack's limits like the real service (``invalid_blocks``: header <= 150 chars,
  section text <= 3000, <= 10 fields of <= 2000, <= 50 blocks, ...), and answers
  ``{"ok": true, "channel": ..., "ts": "<unique ts>", "message": {...}}``.
- ``POST /api/auth.test`` (token checked the same way).
- ``POST /services/T000/B000/XXX``: an incoming webhook; JSON with text and/or blocks; answers ``ok``.

It records every accepted message in ``messages`` (dicts with ``source`` "api" or "webhook",
``channel``, ``text``, ``blocks``, ``thread_ts``, ``ts``, ``auth_ok``) and every request in
``requests`` (``method``, ``path``, ``status``, ``auth_ok``, ``error``). Tokens are never recorded.

Fault controls (each answers the next N requests, API and webhook alike, first in first out):
``fail_next(n, status=500)``, ``rate_limit_next(n, retry_after=1)`` (429 with ``Retry-After``),
``invalid_auth_next(n)`` (``{"ok": false, "error": "invalid_auth"}``), ``error_next(n, error=...)``
(any Slack error code, HTTP 200 like Slack). ``reset()`` clears records and faults.

Two ways to run it:

- ``with run_fake_slack() as slack:`` runs it on its own event loop in a background thread. Works
  from sync tests, async tests and tests that drive the daemon as a subprocess (point the daemon's
  ``notify.slack.base_url`` at ``slack.base_url``). The ``fake_slack`` fixture (function scope) is this.
- ``async with serve_fake_slack() as slack:`` runs it on the current event loop; the
  ``fake_slack_async`` fixture is this.

Attributes for clients: ``base_url`` (ends in ``/api/`` as slack-sdk's ``base_url`` expects),
``token``, ``channel`` (a default channel name to configure), ``webhook_url``.
Waiting: ``wait_for_messages(n, timeout=10)`` (blocking; thread mode) and
``await wait_for_messages_async(n, seconds=10)``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

DEFAULT_TOKEN = "xoxb-fake-0000-test-token"
WEBHOOK_PATH = "/services/T000/B000/XXX"


@dataclass(frozen=True)
class _Fault:
    kind: str  # "status" | "rate_limit" | "error"
    status: int = 500
    retry_after: float = 1.0
    error: str = ""


def block_errors(blocks: Any) -> list[str]:
    """What the real Slack would reject in these blocks (a subset of its checks, the ones we rely on)."""
    if not isinstance(blocks, list):
        return ["blocks must be an array"]
    problems: list[str] = []
    if len(blocks) > 50:
        problems.append(f"{len(blocks)} blocks, max 50")

    def text_ok(where: str, obj: Any, limit: int, kinds: tuple[str, ...] = ("plain_text", "mrkdwn")) -> None:
        if not isinstance(obj, dict) or obj.get("type") not in kinds or not isinstance(obj.get("text"), str):
            problems.append(f"{where}: not a text object of type {kinds}")
            return
        if not 1 <= len(obj["text"]) <= limit:
            problems.append(f"{where}: text length {len(obj['text'])} not in 1..{limit}")

    for i, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        where = f"blocks[{i}]({kind})"
        if kind == "header":
            text_ok(where, block.get("text"), 150, ("plain_text",))
        elif kind == "section":
            if "text" not in block and "fields" not in block:
                problems.append(f"{where}: needs text or fields")
            if "text" in block:
                text_ok(where, block["text"], 3000)
            fields = block.get("fields", [])
            if not isinstance(fields, list) or len(fields) > 10:
                problems.append(f"{where}: at most 10 fields")
            else:
                for j, field in enumerate(fields):
                    text_ok(f"{where}.fields[{j}]", field, 2000)
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
                problems.append(f"{where}: 1..10 elements")
            else:
                for j, element in enumerate(elements):
                    text_ok(f"{where}.elements[{j}]", element, 3000)
        elif kind == "actions":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 25:
                problems.append(f"{where}: 1..25 elements")
            else:
                for j, element in enumerate(elements):
                    text_ok(f"{where}.elements[{j}].text", element.get("text"), 75, ("plain_text",))
                    url = element.get("url")
                    if url is not None and (not isinstance(url, str) or len(url) > 3000):
                        problems.append(f"{where}.elements[{j}].url: max 3000 chars")
        elif kind not in ("divider", "image", "rich_text", "markdown"):
            problems.append(f"{where}: unknown block type")
    return problems


class FakeSlack:
    """The server's state and controls; safe to use from the test thread while it serves."""

    def __init__(self, *, token: str = DEFAULT_TOKEN, channel: str = "#budgets") -> None:
        self.token = token
        self.channel = channel
        self.host = "127.0.0.1"
        self.port = 0
        self._lock = threading.Condition()
        self._messages: list[dict[str, Any]] = []
        self._requests: list[dict[str, Any]] = []
        self._faults: deque[_Fault] = deque()
        self._ts_base = int(time.time())
        self._ts_counter = 0
        self._runner: web.AppRunner | None = None

    # -- addresses --------------------------------------------------------------------------------

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/api/"

    @property
    def webhook_url(self) -> str:
        return f"{self.root_url}{WEBHOOK_PATH}"

    # -- records ----------------------------------------------------------------------------------

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Every accepted message, oldest first (a copy)."""
        with self._lock:
            return list(self._messages)

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request received, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    def replies(self, ts: str) -> list[dict[str, Any]]:
        """The messages posted in the thread of the message with this ts."""
        return [m for m in self.messages if m.get("thread_ts") == ts]

    def wait_for_messages(self, count: int, *, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Block until at least `count` messages arrived (thread mode); raises TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"fake Slack got {len(self._messages)} messages, expected {count}")
                self._lock.wait(left)
            return list(self._messages)

    async def wait_for_messages_async(self, count: int, *, seconds: float = 10.0) -> list[dict[str, Any]]:
        """Wait (on the event loop) until at least `count` messages arrived; TimeoutError otherwise."""
        # The records live behind a thread condition: wait on it in a worker thread, never on the loop.
        return await asyncio.to_thread(self.wait_for_messages, count, timeout=seconds)

    # -- fault controls ---------------------------------------------------------------------------

    def fail_next(self, n: int, status: int = 500) -> None:
        self._add_faults(n, _Fault("status", status=status))

    def rate_limit_next(self, n: int, retry_after: float = 1) -> None:
        self._add_faults(n, _Fault("rate_limit", status=429, retry_after=retry_after))

    def invalid_auth_next(self, n: int) -> None:
        self._add_faults(n, _Fault("error", error="invalid_auth"))

    def error_next(self, n: int, error: str) -> None:
        self._add_faults(n, _Fault("error", error=error))

    def reset(self) -> None:
        with self._lock:
            self._messages.clear()
            self._requests.clear()
            self._faults.clear()

    def _add_faults(self, n: int, fault: _Fault) -> None:
        with self._lock:
            self._faults.extend([fault] * n)

    # -- server -----------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/chat.postMessage", self._post_message)
        app.router.add_post("/api/auth.test", self._auth_test)
        app.router.add_post("/api/{method}", self._unknown_method)
        app.router.add_post(WEBHOOK_PATH, self._webhook)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _log_request(self, request: web.Request, *, status: int, auth_ok: bool | None, error: str | None) -> None:
        self._requests.append(
            {"method": request.method, "path": request.path, "status": status, "auth_ok": auth_ok, "error": error}
        )

    def _take_fault(self) -> _Fault | None:
        return self._faults.popleft() if self._faults else None

    def _fault_response(self, request: web.Request, fault: _Fault, *, auth_ok: bool | None) -> web.Response:
        if fault.kind == "rate_limit":
            self._log_request(request, status=429, auth_ok=auth_ok, error="ratelimited")
            retry_after = f"{fault.retry_after:g}"
            if request.path == WEBHOOK_PATH:
                return web.Response(status=429, text="rate_limited", headers={"Retry-After": retry_after})
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": retry_after}
            )
        if fault.kind == "status":
            self._log_request(request, status=fault.status, auth_ok=auth_ok, error=f"http_{fault.status}")
            return web.Response(status=fault.status, text="Internal Server Error")
        self._log_request(request, status=200, auth_ok=auth_ok, error=fault.error)
        if request.path == WEBHOOK_PATH:
            return web.Response(status=403, text=fault.error)
        return web.json_response({"ok": False, "error": fault.error})

    async def _read_params(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except json.JSONDecodeError:
                return {"__invalid__": True}
            return body if isinstance(body, dict) else {"__invalid__": True}
        form = await request.post()
        params: dict[str, Any] = {key: str(value) for key, value in form.items()}
        if isinstance(params.get("blocks"), str):
            try:
                params["blocks"] = json.loads(params["blocks"])
            except json.JSONDecodeError:
                params["blocks"] = "<unparsable>"
        return params

    def _auth_error(self, request: web.Request, params: dict[str, Any]) -> str | None:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else params.get("token")
        if not token:
            return "not_authed"
        return None if token == self.token else "invalid_auth"

    def _next_ts(self) -> str:
        self._ts_counter += 1
        return f"{self._ts_base + self._ts_counter // 1_000_000}.{self._ts_counter % 1_000_000:06d}"

    async def _post_message(self, request: web.Request) -> web.Response:
        params = await self._read_params(request)
        auth_error = self._auth_error(request, params)
        with self._lock:
            fault = self._take_fault()
            if fault is not None:
                return self._fault_response(request, fault, auth_ok=auth_error is None)
            error: str | None = auth_error
            problems: list[str] = []
            if error is None and params.get("__invalid__"):
                error = "invalid_json"
            elif error is None and not params.get("channel"):
                error = "channel_not_found"
            elif error is None and not params.get("text") and not params.get("blocks"):
                error = "no_text"
            elif error is None and "blocks" in params:
                problems = block_errors(params["blocks"])
                error = "invalid_blocks" if problems else None
            if error is not None:
                self._log_request(request, status=200, auth_ok=auth_error is None, error=error)
                answer: dict[str, Any] = {"ok": False, "error": error}
                if problems:
                    answer["errors"] = problems
                return web.json_response(answer)
            ts = self._next_ts()
            message = {
                "source": "api",
                "channel": params["channel"],
                "text": params.get("text"),
                "blocks": params.get("blocks"),
                "thread_ts": params.get("thread_ts"),
                "ts": ts,
                "auth_ok": True,
            }
            self._messages.append(message)
            self._log_request(request, status=200, auth_ok=True, error=None)
            self._lock.notify_all()
        body = {
            "ok": True,
            "channel": params["channel"],
            "ts": ts,
            "message": {"type": "message", "text": message["text"], "ts": ts, "thread_ts": message["thread_ts"]},
        }
        return web.json_response(body)

    async def _auth_test(self, request: web.Request) -> web.Response:
        params = await self._read_params(request)
        auth_error = self._auth_error(request, params)
        with self._lock:
            fault = self._take_fault()
            if fault is not None:
                return self._fault_response(request, fault, auth_ok=auth_error is None)
            self._log_request(request, status=200, auth_ok=auth_error is None, error=auth_error)
        if auth_error is not None:
            return web.json_response({"ok": False, "error": auth_error})
        return web.json_response(
            {"ok": True, "url": "https://fake.slack.test/", "team": "Fake", "user": "monitor", "team_id": "T000",
             "user_id": "U000", "bot_id": "B000"}
        )  # fmt: skip

    async def _unknown_method(self, request: web.Request) -> web.Response:
        with self._lock:
            self._log_request(request, status=200, auth_ok=None, error="unknown_method")
        return web.json_response({"ok": False, "error": "unknown_method"})

    async def _webhook(self, request: web.Request) -> web.Response:
        try:
            payload = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            payload = None
        with self._lock:
            fault = self._take_fault()
            if fault is not None:
                return self._fault_response(request, fault, auth_ok=None)
            problem: str | None = None
            if not isinstance(payload, dict):
                problem = "invalid_payload"
            elif not payload.get("text") and not payload.get("blocks"):
                problem = "no_text"
            elif "blocks" in payload and block_errors(payload["blocks"]):
                problem = "invalid_blocks"
            if problem is not None:
                self._log_request(request, status=400, auth_ok=None, error=problem)
                return web.Response(status=400, text=problem)
            assert isinstance(payload, dict)
            self._messages.append(
                {
                    "source": "webhook",
                    "channel": None,
                    "text": payload.get("text"),
                    "blocks": payload.get("blocks"),
                    "thread_ts": None,
                    "ts": None,
                    "auth_ok": True,
                }
            )
            self._log_request(request, status=200, auth_ok=None, error=None)
            self._lock.notify_all()
        return web.Response(text="ok")


@asynccontextmanager
async def serve_fake_slack(*, token: str = DEFAULT_TOKEN) -> AsyncIterator[FakeSlack]:
    """The fake on the current event loop."""
    slack = FakeSlack(token=token)
    await slack.start()
    try:
        yield slack
    finally:
        await slack.stop()


@contextmanager
def run_fake_slack(*, token: str = DEFAULT_TOKEN) -> Iterator[FakeSlack]:
    """The fake on its own event loop in a background thread (for sync tests and subprocesses)."""
    slack = FakeSlack(token=token)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    failure: list[BaseException] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(slack.start())
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(slack.stop())
        loop.close()

    thread = threading.Thread(target=serve, name="fake-slack", daemon=True)
    thread.start()
    if not ready.wait(timeout=10):
        raise RuntimeError("fake Slack did not start within 10 s")
    if failure:
        raise RuntimeError("fake Slack failed to start") from failure[0]
    try:
        yield slack
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    """A fresh fake Slack per test, served from a background thread."""
    with run_fake_slack() as slack:
        yield slack


@pytest.fixture
async def fake_slack_async() -> AsyncIterator[FakeSlack]:
    """A fresh fake Slack per test, served on the test's own event loop."""
    async with serve_fake_slack() as slack:
        yield slack
