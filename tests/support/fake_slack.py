"""The one fake Slack used by every test: enough of the Slack Web API for the real slack-sdk.
(The server is tests/support/fake_slack_server.py, what it knows tests/support/fake_slack_model.py;
this module is the entry point: the runners and the fixtures.)

An aiohttp server on 127.0.0.1 (a free port) that answers:

- ``POST /api/chat.postMessage`` (JSON or form-encoded). Checks the Bearer token (missing:
  ``not_authed``, wrong: ``invalid_auth``) and the ``chat:write`` scope, needs ``channel`` and
  ``text`` or ``blocks``, checks the blocks against Slack's limits like the real service
  (``invalid_blocks``: header <= 150 chars, section text <= 3000, <= 10 fields of <= 2000, <= 50
  blocks, ...) and ``metadata`` (``event_type`` + ``event_payload``), and answers
  ``{"ok": true, "channel": "<channel id>", "ts": "<unique ts>", "message": {...}}``. A channel
  named for the first time gets an id (``C00000001``); posting to an unknown id is ``channel_not_found``.
- ``GET|POST /api/conversations.history`` and ``/api/conversations.replies``: Slack's paging,
  windows and metadata rules (see tests/support/fake_slack_model.py); they need ``channels:history``.
- ``POST /api/auth.test`` (token checked the same way).
- ``POST /services/T000/B000/XXX``: an incoming webhook; JSON with text and/or blocks; answers ``ok``.

It records every accepted message in ``messages`` (dicts with ``source`` "api" or "webhook",
``channel`` (as given), ``channel_id``, ``text``, ``blocks``, ``thread_ts``, ``ts``, ``metadata``,
``received_at`` (time.monotonic()), ``auth_ok``) and every request in ``requests`` (``method``,
``path``, ``status``, ``auth_ok``, ``error``, ``at`` (time.monotonic())). Tokens are never recorded.
Message ``ts`` values are the fake's clock (``time.time`` unless ``set_clock``), unique and
increasing, as Slack's are.

Fault controls. Queued, each answering the next N requests, API and webhook alike, first in first
out: ``fail_next(n, status=500)``, ``rate_limit_next(n, retry_after=1)`` (429 with ``Retry-After``),
``invalid_auth_next(n)``, ``error_next(n, error=...)`` (any Slack error code, HTTP 200 like Slack),
``stall_next(n, seconds)`` (the request is carried out, the answer comes ``seconds`` later: a
client timeout or a sender killed mid-request). Lasting until ``end_outage()``, after any queued
ones: ``set_outage(status=500)`` or ``set_outage(status=429, retry_after=...)``. Connection refused:
``await close_listener()`` / ``await reopen_listener()`` (same port), or ``go_offline()`` /
``go_online()`` from another thread in thread mode. Scopes: ``scopes`` (a set; drop
``channels:history`` to make reads answer ``missing_scope``). ``reset()`` clears records and faults.

Two ways to run it:

- ``with run_fake_slack() as slack:`` runs it on its own event loop in a background thread. Works
  from sync tests, async tests and tests that drive the daemon as a subprocess (point the daemon's
  ``notify.slack.base_url`` at ``slack.base_url``). The ``fake_slack`` fixture (function scope) is this.
- ``async with serve_fake_slack() as slack:`` runs it on the current event loop; the
  ``fake_slack_async`` fixture is this.

Attributes for clients: ``base_url`` (ends in ``/api/`` as slack-sdk's ``base_url`` expects),
``token``, ``channel`` (a default channel name to configure), ``webhook_url``; ``settings()`` is the
monitor's ``SlackSettings`` pointing at the fake.
Waiting: ``wait_for_messages(n, timeout=10)`` (blocking; thread mode) and
``await wait_for_messages_async(n, seconds=10)``. ``dedup_keys()`` lists the metadata keys posted.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import pytest

from tests.support.fake_slack_model import block_errors
from tests.support.fake_slack_server import DEFAULT_TOKEN, FakeSlack

__all__ = ["DEFAULT_TOKEN", "FakeSlack", "block_errors", "fake_slack", "fake_slack_async", "run_fake_slack"]


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
        # A stalled answer may still be sleeping: end it instead of leaving it to the closed loop.
        leftovers = asyncio.all_tasks(loop)
        for task in leftovers:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
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
