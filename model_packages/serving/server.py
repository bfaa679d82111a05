"""HTTP/1.1 transport: asyncio (uvloop when present) + httptools, with the protections of a production server.

Measured on 2 cores it costs far less CPU per request than uvicorn or granian serving the same `App`
(bench/serving/run.py --servers kaizen,kaizen-uvicorn,kaizen-granian). What it guarantees:

- limits: request head <= 64 KiB (431), URL <= 8 KiB (414), <= 100 header fields (431), body
  <= KAIZEN_MAX_BODY_BYTES answered 413 as soon as it is declared or exceeded, without reading the rest;
- timeouts: head (KAIZEN_HEADER_TIMEOUT, 408), body (KAIZEN_BODY_TIMEOUT, 408), keep-alive idle
  (KAIZEN_KEEPALIVE_TIMEOUT, closed), a client that reads nothing of its answer for 60 s (aborted);
- at most KAIZEN_MAX_CONNECTIONS connections: above it the oldest idle one is shed, else 503;
- flow control: reading pauses while the write buffer is above its high-water mark or 8 requests wait;
- `Expect: 100-continue` answered; `Upgrade` offers ignored (the request is served as plain HTTP/1.1);
- bodies over 16 KiB are handled in a worker thread, so health checks never wait for a big batch;
- SIGTERM: readiness turns 503, connections the kernel already accepted are still served, complete
  requests are answered (`connection: close`), idle and half-sent ones are closed within a second.

The model's life (load, readiness, drift, the load-failure report) is `runtime.Runtime`'s, the same under
the ASGI adapter (`asgi.py`); this module only speaks HTTP to `App.handle`.

It deliberately does not do HTTP/2, TLS, compression or chunked responses: the cloud front ends do those.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import signal
import socket
from collections import deque
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from email.utils import formatdate
from functools import partial
from http import HTTPStatus
from typing import Any, cast

import httptools

from model_packages.errors import PackageError
from model_packages.serving.logs import JsonLog
from model_packages.serving.messages import Request, Response, error_response
from model_packages.serving.runtime import Runtime
from model_packages.serving.settings import Settings

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
MAX_HEAD = 65_536  # request line + headers, like h11's default limit
MAX_URL = 8_192
MAX_HEADERS = 100
MAX_PIPELINE = 8  # complete requests waiting for an answer before reading pauses
INLINE_BODY = 16_384  # larger bodies are decoded and predicted in the inference thread
SEND_TIMEOUT = 60.0  # a client that reads nothing of its answer for this long is dropped
DRAIN_IDLE_GRACE = 0.25  # at SIGTERM an idle connection may still send one request this long
DRAIN_PARTIAL_GRACE = 1.0  # ... and a half-sent request may complete this long
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
IDLE, HEAD, BODY = 0, 1, 2  # what a connection is reading


class _Stop(Exception):
    """Raised from a parser callback: the answer is queued, read nothing more on this connection."""


class _Clock:
    """The Date header, formatted once a second."""

    value = formatdate(usegmt=True).encode()


def _encode(response: Response, keep_alive: bool, head: bool = False, http10: bool = False) -> bytes:
    lines = [
        b"HTTP/1.1 %d %s" % (response.status, _REASONS.get(response.status, b"Unknown")),
        b"date: " + _Clock.value,
        b"content-type: " + response.content_type.encode(),
        b"content-length: %d" % len(response.body),
    ]
    lines.extend(f"{k}: {v}".encode("latin-1") for k, v in response.headers)
    if not keep_alive:
        lines.append(b"connection: close")
    elif http10:
        lines.append(b"connection: keep-alive")
    return b"\r\n".join(lines) + b"\r\n\r\n" + (b"" if head else response.body)


class HttpProtocol(asyncio.Protocol):
    """One connection: parse requests with httptools, answer them in order, one at a time."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.app = server.app
        self.limit = server.app.settings.max_body_bytes
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.reading = IDLE
        self.since = self.loop.time()  # when the current reading state began
        self.served = 0
        self.head_bytes = 0
        self.url: list[bytes] = []
        self.url_size = 0
        self.headers: dict[bytes, bytes] = {}
        self.header_count = 0
        self.body: list[bytes] = []
        self.size = 0
        self.upgrade = False
        # Complete requests (request, keep-alive, HEAD, HTTP/1.0) or a final error answer, in order.
        self.queue: deque[tuple[Request, bool, bool, bool] | Response] = deque()
        self.running = False  # a request is in the inference thread
        self.stopped = False  # nothing more is read from this connection
        self.write_paused = False
        self.read_paused = False
        self.paused_since = 0.0

    # -- asyncio callbacks ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.transport = transport
        if not self.server.admit(self):
            self.stopped = True
            transport.write(_encode(error_response(503, "too many connections"), keep_alive=False))
            transport.close()
            return
        self.server.idle[self] = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.forget(self)
        self.transport = None
        self.stopped = True
        self.queue.clear()

    def pause_writing(self) -> None:
        self.write_paused = True
        self.paused_since = self.loop.time()
        self._update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._update_reading()
        self._process()

    def data_received(self, data: bytes) -> None:
        if self.stopped:
            return
        if self.reading == IDLE:
            self._set_reading(HEAD)
        while data and not self.stopped:
            if self.reading == BODY:
                chunk, data = data, b""
            else:  # count head bytes before httptools sees them: its header accumulation is quadratic
                budget = MAX_HEAD - self.head_bytes
                chunk, data = data[:budget], data[budget:]
                self.head_bytes += len(chunk)
            try:
                self.parser.feed_data(chunk)
            except httptools.HttpParserUpgrade as upgrade:
                data = self._without_upgrade(chunk[upgrade.args[0]:]) + data
            except httptools.HttpParserError as error:
                if not self.stopped:  # not a _Stop: the request itself is malformed
                    self._reject(400, f"malformed HTTP request: {error}")
                return
            if self.reading == HEAD and self.head_bytes >= MAX_HEAD and not self.stopped:
                self._reject(431, f"request head exceeds {MAX_HEAD} bytes")

    # -- httptools callbacks --------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._set_reading(HEAD)
        self.url, self.url_size = [], 0
        self.headers, self.header_count = {}, 0
        self.body, self.size = [], 0
        self.upgrade = False

    def on_url(self, url: bytes) -> None:
        self.url_size += len(url)
        if self.url_size > MAX_URL:
            self._reject(414, f"request URL exceeds {MAX_URL} bytes")
            raise _Stop
        self.url.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        if self.header_count > MAX_HEADERS:
            self._reject(431, f"request has more than {MAX_HEADERS} header fields")
            raise _Stop
        self.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self._set_reading(BODY)
        if self.parser.should_upgrade():
            self.upgrade = True  # served as plain HTTP once httptools stops at the upgrade (_without_upgrade)
            return
        length = self.headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            self._too_large()
        if self.headers.get(b"expect", b"").lower() == b"100-continue" and not self.queue and not self.running:
            assert self.transport is not None
            self.transport.write(CONTINUE)

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.limit:
            self._too_large()
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.upgrade:
            return
        request = self._request(too_large=False)
        self.served += 1
        self.head_bytes = 0  # the next request's head starts here
        self._set_reading(IDLE)
        keep_alive = self.parser.should_keep_alive()
        self._enqueue((request, keep_alive, request.method == "HEAD", self.parser.get_http_version() == "1.0"))

    # -- requests -------------------------------------------------------------------------------
    def _request(self, too_large: bool) -> Request:
        method = self.parser.get_method().decode("latin-1")
        try:
            path = httptools.parse_url(b"".join(self.url)).path.decode("utf-8")
        except (httptools.HttpParserInvalidURLError, UnicodeDecodeError):
            self._reject(400, "malformed request URL")
            raise _Stop from None
        return Request(method, path, self.headers, b"" if too_large else b"".join(self.body), too_large)

    def _too_large(self) -> None:
        """Answer 413 (or 404/405 for a wrong route) now, and read none of the body."""
        self._enqueue((self._request(too_large=True), False, False, False))
        self._stop_reading()
        raise _Stop

    def _without_upgrade(self, rest: bytes) -> bytes:
        """httptools stops at an Upgrade offer: continue with a fresh parser on the same request, minus the offer."""
        method = self.parser.get_method()
        if method == b"CONNECT":
            self._reject(400, "CONNECT is not supported")
            return b""
        version = self.parser.get_http_version().encode()
        fields = [
            b"%s: %s" % (k, v) for k, v in self.headers.items()
            if k != b"upgrade" and not (k == b"connection" and v.lower() == b"upgrade")
        ]
        self.parser = httptools.HttpRequestParser(self)
        head = b"%s %s HTTP/%s\r\n%s\r\n\r\n" % (method, b"".join(self.url), version, b"\r\n".join(fields))
        self._set_reading(HEAD)
        self.head_bytes = 0
        return head + rest

    def _reject(self, status: int, message: str) -> None:
        """Queue a final error answer (after those already owed) and stop reading."""
        self._enqueue(error_response(status, message))
        self._stop_reading()

    def _stop_reading(self) -> None:
        self.stopped = True
        self._update_reading()

    def _enqueue(self, item: tuple[Request, bool, bool, bool] | Response) -> None:
        self.server.idle.pop(self, None)
        self.queue.append(item)
        self._update_reading()
        self._process()

    def _process(self) -> None:
        """Answer queued requests in order; small ones inline, large ones in the inference thread."""
        while self.queue and not self.running and not self.write_paused and self.transport is not None:
            item = self.queue.popleft()
            if isinstance(item, Response):
                self.transport.write(_encode(item, keep_alive=False))
                self.transport.close()
                return
            request = item[0]
            if len(request.body) > INLINE_BODY:
                self.running = True
                future = self.server.executor.submit(self.app.handle, request)
                future.add_done_callback(partial(self._from_thread, item))
                return
            self._respond(item, self.app.handle(request))
        if self.transport is None or self.running or self.queue:
            return
        self._update_reading()
        if self.reading == IDLE and not self.stopped:
            self.since = self.loop.time()
            self.server.idle[self] = None

    def _from_thread(self, item: tuple[Request, bool, bool, bool], future: Future[Response]) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: the process is exiting
            self.loop.call_soon_threadsafe(self._thread_done, item, future)

    def _thread_done(self, item: tuple[Request, bool, bool, bool], future: Future[Response]) -> None:
        self.running = False
        if self.transport is None:
            return
        try:
            response = future.result()
        except (Exception, CancelledError) as error:  # App.handle answers every exception itself: a last resort
            response = error_response(500, f"internal error: {type(error).__name__}")
        self._respond(item, response)
        self._process()

    def _respond(self, item: tuple[Request, bool, bool, bool], response: Response) -> None:
        request, keep_alive, head, http10 = item
        keep_alive = keep_alive and not self.server.closing and not request.too_large
        assert self.transport is not None
        self.transport.write(_encode(response, keep_alive, head=head, http10=http10))
        if not keep_alive:
            self.queue.clear()
            self.stopped = True
            self.transport.close()

    def _set_reading(self, state: int) -> None:
        if state != self.reading:
            self.reading = state
            self.since = self.loop.time()
        if state != IDLE:
            self.server.idle.pop(self, None)

    def _update_reading(self) -> None:
        if self.transport is None:
            return
        pause = self.stopped or self.write_paused or len(self.queue) >= MAX_PIPELINE
        if pause and not self.read_paused:
            self.transport.pause_reading()
        elif not pause and self.read_paused:
            self.transport.resume_reading()
        self.read_paused = pause

    # -- timers (called by the server's sweep) --------------------------------------------------
    @property
    def owes_answer(self) -> bool:
        return bool(self.queue) or self.running

    def expire(self, now: float) -> None:
        """Enforce the read, idle and send timeouts."""
        if self.transport is None:
            return
        if self.owes_answer:
            if self.write_paused and now - self.paused_since > SEND_TIMEOUT:
                self.transport.abort()
            return
        settings = self.app.settings
        waited = now - self.since
        if self.reading == IDLE and waited > settings.keepalive_timeout:
            self.close()
        elif self.reading == HEAD and waited > settings.header_timeout:
            self._reject(408, f"request head not received within {settings.header_timeout:g} s")
        elif self.reading == BODY and waited > settings.body_timeout:
            self._reject(408, f"request body not received within {settings.body_timeout:g} s")

    def drain(self, now: float, since: float) -> None:
        """SIGTERM: close once no answer is owed and the connection is idle or its request is stuck."""
        if self.transport is None or self.owes_answer:
            return
        idle_over = self.reading == IDLE and now - max(since, self.since) >= DRAIN_IDLE_GRACE
        if idle_over or (self.reading != IDLE and now - since >= DRAIN_PARTIAL_GRACE):
            self.close()

    def close(self) -> None:
        self.stopped = True
        if self.transport is not None:
            self.transport.close()


class Server:
    """Listens first (so health checks get answers at once), then has the runtime load the model."""

    def __init__(self, settings: Settings, log: JsonLog | None = None, worker: Any = None) -> None:
        self.settings = settings
        self.log = log or JsonLog()
        self.worker = worker  # model_packages.serving.workers.WorkerContext when one of several
        self.runtime = Runtime(settings, self.log, worker)
        self.app = self.runtime.app
        self.loop = asyncio.get_event_loop()
        self.connections: set[HttpProtocol] = set()
        self.idle: dict[HttpProtocol, None] = {}  # connections owing nothing and waiting, oldest first
        self.max_connections = max(1, min(settings.max_connections, raise_fd_limit() - 64))
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kaizen-inference")
        self.closing = False
        self._stopped: asyncio.Event | None = None

    def admit(self, connection: HttpProtocol) -> bool:
        """Count a new connection; at the cap, shed the oldest idle (then oldest half-sent) one first."""
        if len(self.connections) >= self.max_connections:
            victim = next(iter(self.idle), None)
            if victim is None:
                waiting = [c for c in self.connections if not c.owes_answer]
                victim = min(waiting, key=lambda c: c.since, default=None)
            if victim is None:
                return False
            self.forget(victim)
            victim.close()
        self.connections.add(connection)
        return True

    def forget(self, connection: HttpProtocol) -> None:
        self.connections.discard(connection)
        self.idle.pop(connection, None)

    def _listen(self) -> socket.socket:
        host, port = self.settings.host, self.settings.port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.worker is not None:  # several processes share the port; the kernel spreads connections
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.setblocking(False)
        return sock

    async def serve(self) -> int:
        loop = self.loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        sock = self._listen()
        backlog = sock.dup()  # keeps the listener open after server.close()
        server = await loop.create_server(lambda: HttpProtocol(self), sock=sock, backlog=2048)
        self.log.event("listening", host=self.settings.host, port=self.settings.port,
                       model_dir=str(self.settings.model_dir), max_connections=self.max_connections,
                       **({"worker": self.worker.index} if self.worker else {}))
        self.log.flush()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        tasks = [loop.create_task(self.runtime.flush_logs()), loop.create_task(self._sweep())]
        loader = loop.run_in_executor(self.executor, self.runtime.load)
        stopped = loop.create_task(self._stopped.wait())
        await asyncio.wait({loader, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if loader.done():
            try:
                runner = loader.result()
            except PackageError as error:
                self.runtime.fail(error)
                self.stop()
            else:
                self.runtime.start(runner)
        await stopped
        server.close()
        await self._accept_backlog(backlog)
        await self._drain()
        for task in tasks:
            task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.runtime.close()
        return self.runtime.exit_code

    def stop(self) -> None:
        """SIGTERM: fail readiness, stop accepting, answer complete requests, close the rest."""
        if self.closing:
            return
        self.closing = True
        self.runtime.drain()
        self.log.event("draining", connections=len(self.connections))
        if self._stopped is not None:
            self._stopped.set()

    async def _accept_backlog(self, listener: socket.socket) -> None:
        """Serve the connections the kernel accepted before the listener closed, then close it.

        The queue is emptied in one synchronous pass and the listener closed before any is served:
        served clients that reconnect at once would otherwise keep the queue full forever.
        """
        accepted: list[socket.socket] = []
        with listener:
            while len(accepted) < 2048:
                try:
                    conn, _ = listener.accept()
                except OSError:  # BlockingIOError: the queue is empty
                    break
                accepted.append(conn)
        for conn in accepted:
            conn.setblocking(False)
            try:
                await self.loop.connect_accepted_socket(lambda: HttpProtocol(self), conn)
            except OSError:
                conn.close()

    async def _drain(self) -> None:
        since = self.loop.time()
        deadline = since + self.settings.drain_seconds
        while self.connections and self.loop.time() < deadline:
            now = self.loop.time()
            for connection in list(self.connections):
                connection.drain(now, since)
            await asyncio.sleep(0.01)

    async def _sweep(self) -> None:
        """Once every 0.25 s: the Date header and every connection's timeouts."""
        ticks = 0
        while True:
            await asyncio.sleep(0.25)
            _Clock.value = formatdate(usegmt=True).encode()
            now = self.loop.time()
            for connection in list(self.connections):
                connection.expire(now)
            ticks += 1


def raise_fd_limit() -> int:
    """Raise the soft descriptor limit to the hard one; returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def run(settings: Settings | None = None, worker: Any = None) -> int:
    """Serve until SIGTERM; returns the process exit code."""
    settings = settings or Settings.from_env()

    async def serve() -> int:
        return await Server(settings, worker=worker).serve()

    try:
        import uvloop

        return uvloop.run(serve())
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(serve())
