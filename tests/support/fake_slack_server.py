"""The fake Slack's server: records, controls and HTTP answers (see tests/support/fake_slack.py)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aiohttp import web
from pydantic import SecretStr

from monitor.config.settings import SlackSettings
from tests.support.fake_slack_model import (
    Conversations,
    Fault,
    missing_scope,
    post_problem,
    webhook_problem,
)

DEFAULT_TOKEN = "xoxb-fake-0000-test-token"
WEBHOOK_PATH = "/services/T000/B000/XXX"
DEFAULT_SCOPES = frozenset({"chat:write", "channels:history", "groups:history"})
_READS = {"conversations.history", "conversations.replies"}


class FakeSlack:
    """The server's state and controls; safe to use from the test thread while it serves."""

    def __init__(self, *, token: str = DEFAULT_TOKEN, channel: str = "#budgets") -> None:
        self.token = token
        self.channel = channel
        self.host = "127.0.0.1"
        self.port = 0
        self.scopes: set[str] = set(DEFAULT_SCOPES)
        self._lock = threading.Condition()
        self._messages: list[dict[str, Any]] = []
        self._requests: list[dict[str, Any]] = []
        self._faults: deque[Fault] = deque()
        self._outage: Fault | None = None
        self._conversations = Conversations(self._messages)
        self._clock: Callable[[], float] = time.time
        self._last_ts = 0.0
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

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

    def settings(self, *, channel: str | None = None, token: str | None = None) -> SlackSettings:
        """notify.slack settings for a bot token against this fake (the default channel unless given)."""
        return SlackSettings(
            token=SecretStr(token or self.token), channel=channel or self.channel, base_url=self.base_url
        )

    def channel_id(self, name: str) -> str:
        """The id Slack gives this channel (created if new), e.g. to configure a channel by id."""
        with self._lock:
            channel_id = self._conversations.channel_id(name)
        assert channel_id is not None, f"{name!r} looks like an id the fake never gave out"
        return channel_id

    def set_clock(self, now: Callable[[], float]) -> None:
        """Where message ts come from (a test's manual clock: the monitor and Slack then agree)."""
        with self._lock:
            self._clock = now

    def set_max_page_size(self, size: int) -> None:
        """Cap `limit` of history/replies, as Slack does (15 for apps outside the Marketplace)."""
        with self._lock:
            self._conversations.max_page_size = size

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

    def dedup_keys(self) -> list[str | None]:
        """The dedup key in each message's metadata, in posting order (None: no metadata)."""
        keys: list[str | None] = []
        for message in self.messages:
            metadata = message.get("metadata") or {}
            keys.append((metadata.get("event_payload") or {}).get("dedup_key"))
        return keys

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
        self._add_faults(n, Fault("status", status=status))

    def rate_limit_next(self, n: int, retry_after: float = 1) -> None:
        self._add_faults(n, Fault("rate_limit", status=429, retry_after=retry_after))

    def invalid_auth_next(self, n: int) -> None:
        self._add_faults(n, Fault("error", error="invalid_auth"))

    def error_next(self, n: int, error: str) -> None:
        self._add_faults(n, Fault("error", error=error))

    def stall_next(self, n: int, seconds: float) -> None:
        self._add_faults(n, Fault("stall", seconds=seconds))

    def set_outage(self, *, status: int = 500, retry_after: float = 1.0) -> None:
        """Every request fails (after any queued faults) until end_outage(): 429s carry Retry-After."""
        kind = "rate_limit" if status == 429 else "status"
        with self._lock:
            self._outage = Fault(kind, status=status, retry_after=retry_after)

    def end_outage(self) -> None:
        with self._lock:
            self._outage = None

    def reset(self) -> None:
        with self._lock:
            self._messages.clear()
            self._requests.clear()
            self._faults.clear()
            self._outage = None

    def _add_faults(self, n: int, fault: Fault) -> None:
        with self._lock:
            self._faults.extend([fault] * n)

    # -- the listener -----------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/chat.postMessage", self._post_message)
        app.router.add_post("/api/auth.test", self._auth_test)
        for method in _READS:
            app.router.add_route("GET", f"/api/{method}", self._read_messages)
            app.router.add_route("POST", f"/api/{method}", self._read_messages)
        app.router.add_post("/api/{method}", self._unknown_method)
        app.router.add_post(WEBHOOK_PATH, self._webhook)
        return app

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # A short shutdown: closing the listener mid-request (an outage) must not wait a minute.
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def close_listener(self) -> None:
        """Stop listening and drop open connections: clients get connection refused."""
        await self.stop()

    async def reopen_listener(self) -> None:
        """Listen again on the same port (records and controls are kept)."""
        if self._runner is None:
            await self.start()

    def go_offline(self) -> None:
        """close_listener() from another thread (thread mode)."""
        self._on_server_loop(self.close_listener())

    def go_online(self) -> None:
        """reopen_listener() from another thread (thread mode)."""
        self._on_server_loop(self.reopen_listener())

    def _on_server_loop(self, work: Any) -> None:
        assert self._loop is not None, "the fake is not running"
        asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout=10)

    # -- answering --------------------------------------------------------------------------------

    def _log_request(self, request: web.Request, *, status: int, auth_ok: bool | None, error: str | None) -> None:
        self._requests.append(
            {"method": request.method, "path": request.path, "status": status, "auth_ok": auth_ok, "error": error,
             "at": time.monotonic()}
        )  # fmt: skip

    def _take_fault(self, request: web.Request, *, auth_ok: bool | None) -> tuple[Fault | None, web.Response | None]:
        """The fault this request meets (call under the lock), and the answer when it is a failure."""
        fault = self._faults.popleft() if self._faults else self._outage
        if fault is None or fault.kind == "stall":
            return fault, None
        return fault, self._fault_response(request, fault, auth_ok=auth_ok)

    def _fault_response(self, request: web.Request, fault: Fault, *, auth_ok: bool | None) -> web.Response:
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
        params: dict[str, Any] = dict(request.query)
        if request.method == "GET":
            return params
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except json.JSONDecodeError:
                return {"__invalid__": True}
            return {**params, **body} if isinstance(body, dict) else {"__invalid__": True}
        form = await request.post()
        params.update({key: str(value) for key, value in form.items()})
        for key in ("blocks", "metadata"):
            if isinstance(params.get(key), str):
                try:
                    params[key] = json.loads(params[key])
                except json.JSONDecodeError:
                    params[key] = "<unparsable>"
        return params

    def _auth_error(self, request: web.Request, params: dict[str, Any]) -> str | None:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else params.get("token")
        if not token:
            return "not_authed"
        return None if token == self.token else "invalid_auth"

    def _next_ts(self) -> str:
        # Slack's ts is the post's time, unique per channel; keep it unique and increasing.
        self._last_ts = max(self._clock(), self._last_ts + 0.000001)
        return f"{self._last_ts:.6f}"

    async def _stall(self, fault: Fault | None) -> None:
        if fault is not None and fault.kind == "stall":
            await asyncio.sleep(fault.seconds)

    async def _post_message(self, request: web.Request) -> web.Response:
        params = await self._read_params(request)
        auth_error = self._auth_error(request, params)
        with self._lock:
            fault, failed = self._take_fault(request, auth_ok=auth_error is None)
            if failed is not None:
                return failed
            error, problems, extra = (
                (auth_error, [], None) if auth_error else post_problem(params, self._conversations, self.scopes)
            )
            if error is not None:
                self._log_request(request, status=200, auth_ok=auth_error is None, error=error)
                answer: dict[str, Any] = {"ok": False, "error": error, **(extra or {})}
                if problems:
                    answer["errors"] = problems
                return web.json_response(answer)
            channel_id = self._conversations.channel_id(str(params["channel"]))
            ts = self._next_ts()
            message = {
                "source": "api",
                "channel": params["channel"],
                "channel_id": channel_id,
                "text": params.get("text"),
                "blocks": params.get("blocks"),
                "thread_ts": params.get("thread_ts"),
                "ts": ts,
                "metadata": params.get("metadata"),
                "received_at": time.monotonic(),
                "auth_ok": True,
            }
            self._messages.append(message)
            self._log_request(request, status=200, auth_ok=True, error=None)
            self._lock.notify_all()
        await self._stall(fault)
        body = {
            "ok": True,
            "channel": channel_id,
            "ts": ts,
            "message": {"type": "message", "text": message["text"], "ts": ts, "thread_ts": message["thread_ts"]},
        }
        return web.json_response(body)

    async def _read_messages(self, request: web.Request) -> web.Response:
        method = request.path.rsplit("/", 1)[-1]
        params = await self._read_params(request)
        auth_error = self._auth_error(request, params)
        with self._lock:
            fault, failed = self._take_fault(request, auth_ok=auth_error is None)
            if failed is not None:
                return failed
            answer: dict[str, Any]
            if auth_error is not None:
                answer = {"ok": False, "error": auth_error}
            else:
                answer = missing_scope(self.scopes, "channels:history") or (
                    self._conversations.history(params)
                    if method == "conversations.history"
                    else self._conversations.replies(params)
                )
            self._log_request(request, status=200, auth_ok=auth_error is None, error=answer.get("error"))
        await self._stall(fault)
        return web.json_response(answer)

    async def _auth_test(self, request: web.Request) -> web.Response:
        params = await self._read_params(request)
        auth_error = self._auth_error(request, params)
        with self._lock:
            fault, failed = self._take_fault(request, auth_ok=auth_error is None)
            if failed is not None:
                return failed
            self._log_request(request, status=200, auth_ok=auth_error is None, error=auth_error)
        await self._stall(fault)
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
            fault, failed = self._take_fault(request, auth_ok=None)
            if failed is not None:
                return failed
            problem = webhook_problem(payload)
            if problem is not None:
                self._log_request(request, status=400, auth_ok=None, error=problem)
                return web.Response(status=400, text=problem)
            assert isinstance(payload, dict)
            self._messages.append(
                {
                    "source": "webhook",
                    "channel": None,
                    "channel_id": None,
                    "text": payload.get("text"),
                    "blocks": payload.get("blocks"),
                    "thread_ts": None,
                    "ts": None,
                    "metadata": None,
                    "received_at": time.monotonic(),
                    "auth_ok": True,
                }
            )
            self._log_request(request, status=200, auth_ok=None, error=None)
            self._lock.notify_all()
        await self._stall(fault)
        return web.Response(text="ok")
