"""The connection pool under the client's httpx interface: aiohttp's (the default) or httpx's own (httpcore).

Why aiohttp: httpx's own pool (httpcore) costs 0.5 to 3 ms of CPU per request on loopback and gets
slower as connections are added (its pool bookkeeping grows with connections and waiting requests);
aiohttp's costs about a tenth of that, so one core polls several times more runs (figures in
bench/README.md, `client_throughput.py`). httpx stays the interface: requests, responses, headers,
URLs and the exceptions the client maps are httpx's, and `api.transport: httpcore` goes back to
httpx's own pool.

`AiohttpTransport` keeps what the client relies on from httpcore, where aiohttp's defaults differ
(and where the PyPI package httpx-aiohttp 0.2.0 does not):
- The path goes out byte for byte as built: the URL is handed over already encoded, so a run id's
  `%2E` stays `%2E` (aiohttp would decode it to `.`, a dot segment a server may collapse).
- The body comes as sent (content coding kept: `monitor.api.body` inflates it under the size cap),
  chunk by chunk as it arrives; a body left unread closes its connection instead of draining it.
- Every failure is the httpx exception of the same meaning, and nothing of aiohttp's leaks: a refused
  connect is ConnectError (not a timeout), a timeout a TimeoutException, a broken answer
  RemoteProtocolError, a lost connection a NetworkError.
- No cookies, redirects or headers of its own (httpx decides them); user info in the URL is not sent.
- No retry of its own: a request is sent once per attempt of the client, which counts each.
- HTTP/1.1 with keep-alive: idle connections are kept `keepalive_expiry` seconds, at most
  `max_connections` in all. TLS is verified with httpx's context (certifi, or SSL_CERT_FILE /
  SSL_CERT_DIR). Proxies from the environment (HTTPS_PROXY, ...) are routed by httpx through its
  own proxy transport, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Literal

import aiohttp
import httpx
from aiohttp.http_exceptions import HttpProcessingError
from yarl import URL

TransportName = Literal["aiohttp", "httpcore"]
TRANSPORTS: tuple[TransportName, ...] = ("aiohttp", "httpcore")
KEEPALIVE_SECONDS = 5.0  # httpx's default keepalive_expiry


def make_transport(name: TransportName, *, max_connections: int) -> httpx.AsyncBaseTransport:
    """The pool the client sends through: at most `max_connections` open, all of them kept alive when idle."""
    if name == "aiohttp":
        return AiohttpTransport(max_connections=max_connections)
    if name == "httpcore":
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        return httpx.AsyncHTTPTransport(limits=limits)
    raise ValueError(f"unknown transport {name!r}: one of {', '.join(TRANSPORTS)}")


def _as_httpx_error(exc: Exception) -> httpx.TransportError | None:
    """The httpx exception that means what an aiohttp one means; None for what is not aiohttp's to map."""
    message = str(exc) or type(exc).__name__
    # Order matters: the timeouts are ServerConnectionErrors, the connector errors ClientOSErrors.
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message)
    if isinstance(exc, asyncio.TimeoutError):  # aiohttp's socket timeouts are TimeoutErrors too
        return httpx.ReadTimeout(message)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(message)
    if isinstance(exc, HttpProcessingError):  # an answer aiohttp's parser refused (bad status line, header too long)
        return httpx.RemoteProtocolError(f"malformed answer: {exc.message or message}")
    if isinstance(exc, aiohttp.NonHttpUrlClientError):
        return httpx.UnsupportedProtocol(message)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.LocalProtocolError(message)
    if isinstance(exc, aiohttp.ClientConnectionError):
        return httpx.NetworkError(message)
    if isinstance(exc, aiohttp.ClientError):
        return httpx.TransportError(message)
    return None


@contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        mapped = _as_httpx_error(exc)
        if mapped is None:
            raise
        raise mapped from exc


def _headers(request: httpx.Request) -> list[tuple[str, str]]:
    """The request's headers as httpx built them, names in their own case; aiohttp frames the body itself.

    httpx holds them as bytes, ASCII for every header it encodes; latin-1 maps each byte to itself.
    """
    return [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in request.headers.raw
        if name.lower() != b"transfer-encoding"
    ]


class _ResponseBody(httpx.AsyncByteStream):
    """The body of one aiohttp response, as it arrives; closing it gives the connection back (or drops it)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        # A body read to the end returns its connection to the pool; one cut short closes it.
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx requests sent over one aiohttp session, opened on first use (it needs the running loop)."""

    def __init__(self, *, max_connections: int, keepalive_expiry: float = KEEPALIVE_SECONDS) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.max_connections = max_connections
        self.keepalive_expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        # The client sends the same httpx timeout on every request: build aiohttp's once per value.
        self._timeouts: dict[tuple[float | None, ...], aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise httpx.TransportError("the transport is closed")
        connector = aiohttp.TCPConnector(
            limit=self.max_connections,
            limit_per_host=0,
            keepalive_timeout=self.keepalive_expiry,
            ssl=httpx.create_ssl_context(),
        )
        session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None),
            trust_env=False,
        )
        # aiohttp resends a GET or DELETE once, unseen, when a kept-alive connection drops before the
        # answer. The client decides every retry in one place and counts each attempt: no second one here.
        # (No public switch for it: the attribute is the one aiohttp's own request loop reads.)
        if hasattr(session, "_retry_connection"):
            session._retry_connection = False
        self._session = session
        return session

    def _timeout(self, request: httpx.Request) -> aiohttp.ClientTimeout:
        phases = request.extensions.get("timeout", {})
        key = (phases.get("connect"), phases.get("read"), phases.get("pool"))
        timeout = self._timeouts.get(key)
        if timeout is None:
            connect, read, pool = key
            # aiohttp's `connect` covers waiting for a pooled connection and opening one.
            wait = None if pool is None or connect is None else pool + connect
            timeout = aiohttp.ClientTimeout(total=None, connect=wait, sock_connect=connect, sock_read=read)
            self._timeouts = {key: timeout}
        return timeout

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        url = request.url
        # Already encoded, without user info: aiohttp must neither re-quote the path nor see credentials.
        target = URL(f"{url.scheme}://{url.netloc.decode('ascii')}{url.raw_path.decode('ascii')}", encoded=True)
        content = await request.aread()
        with _httpx_errors():
            response = await session.request(
                request.method,
                target,
                headers=_headers(request),
                data=content or None,
                allow_redirects=False,
                timeout=self._timeout(request),
            )
        extensions = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("latin-1", "replace")
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_ResponseBody(response),
            extensions=extensions,
        )

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()

    def __del__(self) -> None:
        # A client dropped without aclose() (one a reload replaced just before shutdown, say) closes its
        # sockets here, instead of aiohttp logging "Unclosed client session" as an error in plain text.
        # The connector's own close() needs a running loop; _close() is the synchronous part of it.
        session = self._session
        if session is None or session.closed:
            return
        connector = session.connector
        session.detach()
        if connector is not None:
            with contextlib.suppress(Exception):
                connector._close()
