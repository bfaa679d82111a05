"""A small loopback HTTP/1.1 reverse proxy: the stable front of a local endpoint.

The endpoint's URL is this proxy's port; the model container behind it listens on one of two
backend ports (blue/green). A rollout starts the new container on the spare port, waits until it is
ready, then tells the proxy to switch (``POST /_kaizen/proxy/upstream``), then stops the old one.
New requests go to the new upstream at once; requests in flight finish on the old one (the serving
runtime drains on SIGTERM). A request that fails on a reused keep-alive connection before any
response byte was read is retried once on a fresh connection, and a refused connection is retried
for a short while (a container that Docker is restarting), so a swap loses no request.

Standard library only: it runs on the plain Debian base image. Started as
``python3 proxy.py --listen 127.0.0.1:8080 --upstream 127.0.0.1:8081 --state /data/upstream``.
The upstream is persisted in ``--state`` so a restarted proxy keeps the last switch. The admin
routes need the token from ``KAIZEN_PROXY_TOKEN`` (header ``X-Kaizen-Proxy-Token``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import os
import signal
import sys
import time
import urllib.request

ADMIN_PREFIX = b"/_kaizen/proxy"
MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024
CONNECT_RETRY_SECONDS = 5.0
HOP_BY_HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"te",
    b"trailer",
    b"upgrade",
}


class BadRequest(Exception):
    pass


class UpstreamError(Exception):
    pass


class Head:
    __slots__ = ("first", "headers")

    def __init__(self, first: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.first = first
        self.headers = headers

    def get(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


async def read_head(reader: asyncio.StreamReader) -> Head | None:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise BadRequest("truncated head") from exc
    except asyncio.LimitOverrunError as exc:
        raise BadRequest("head too large") from exc
    lines = raw[:-4].split(b"\r\n")
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        key, sep, value = line.partition(b":")
        if not sep:
            raise BadRequest("malformed header line")
        headers.append((key.strip(), value.strip()))
    return Head(lines[0], headers)


async def read_body(reader: asyncio.StreamReader, head: Head) -> bytes:
    """The request body (a chunked body is de-chunked)."""
    te = (head.get(b"transfer-encoding") or b"").lower()
    if b"chunked" in te:
        parts: list[bytes] = []
        size_total = 0
        while True:
            line = await reader.readuntil(b"\r\n")
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return b"".join(parts)
            size_total += size
            if size_total > MAX_BODY:
                raise BadRequest("body too large")
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    length = head.get(b"content-length")
    if length is None:
        return b""
    n = int(length)
    if n < 0 or n > MAX_BODY:
        raise BadRequest("bad content-length")
    return await reader.readexactly(n)


class Upstream:
    """One backend (host, port) with a pool of idle keep-alive connections."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        deadline = time.monotonic() + CONNECT_RETRY_SECONDS
        while True:
            try:
                return await asyncio.open_connection(self.host, self.port, limit=MAX_HEAD * 2)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)

    def close_idle(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


class Proxy:
    def __init__(self, upstream: Upstream, state: str | None, token: str) -> None:
        self.upstream = upstream
        self.state = state
        self.token = token
        self.in_flight = 0
        self.switches = 0

    # ---- admin -------------------------------------------------------------------------------
    def status(self) -> dict[str, object]:
        return {
            "upstream": f"{self.upstream.host}:{self.upstream.port}",
            "port": self.upstream.port,
            "in_flight": self.in_flight,
            "switches": self.switches,
        }

    async def admin(self, method: bytes, path: bytes, head: Head, body: bytes) -> tuple[int, dict]:
        if self.token and not hmac.compare_digest(head.get(b"x-kaizen-proxy-token") or b"", self.token.encode()):
            return 403, {"error": "bad or missing X-Kaizen-Proxy-Token"}
        if method == b"GET" and path == ADMIN_PREFIX:
            return 200, self.status()
        if method == b"POST" and path == ADMIN_PREFIX + b"/upstream":
            try:
                doc = json.loads(body or b"{}")
                host = str(doc.get("host", "127.0.0.1"))
                port = int(doc["port"])
            except (ValueError, KeyError, TypeError):
                return 400, {"error": 'body must be {"port": N, "host": "127.0.0.1"}'}
            ready_path = str(doc.get("ready_path", "/health/ready"))
            ok = await asyncio.to_thread(_probe, host, port, ready_path)
            if not ok:
                return 409, {"error": f"upstream {host}:{port}{ready_path} is not ready"}
            self.switch(host, port)
            return 200, self.status()
        return 404, {"error": "unknown admin route"}

    def switch(self, host: str, port: int) -> None:
        old = self.upstream
        if (old.host, old.port) == (host, port):
            return
        self.upstream = Upstream(host, port)
        self.switches += 1
        old.close_idle()
        if self.state:
            tmp = self.state + ".tmp"
            with open(tmp, "w") as fh:
                fh.write(f"{host}:{port}\n")
            os.replace(tmp, self.state)

    # ---- proxying ----------------------------------------------------------------------------
    async def forward(self, head: Head, body: bytes, writer: asyncio.StreamWriter) -> bool:
        """Send one request upstream and stream the answer back; returns keep-alive."""
        method = head.first.split(b" ", 1)[0]
        out = [head.first]
        for key, value in head.headers:
            lk = key.lower()
            if lk in HOP_BY_HOP or lk == b"content-length":
                continue
            out.append(key + b": " + value)
        if body or method in (b"POST", b"PUT", b"PATCH"):
            out.append(b"content-length: " + str(len(body)).encode())
        out.append(b"connection: keep-alive")
        payload = b"\r\n".join(out) + b"\r\n\r\n" + body

        upstream = self.upstream
        for attempt in range(3):
            if upstream.idle:
                ureader, uwriter = upstream.idle.pop()
            else:
                try:
                    ureader, uwriter = await upstream.connect()
                except OSError as exc:
                    raise UpstreamError(f"connect {upstream.host}:{upstream.port}: {exc}") from exc
            try:
                uwriter.write(payload)
                await uwriter.drain()
                rhead = await read_head(ureader)
                if rhead is None:
                    raise ConnectionResetError("upstream closed the connection")
            except (OSError, asyncio.IncompleteReadError, BadRequest) as exc:
                uwriter.close()
                if attempt < 2:
                    # A reused connection closed under us, or the upstream was just switched away
                    # from: nothing was answered yet, so try again on the current upstream.
                    upstream = self.upstream
                    continue
                raise UpstreamError(str(exc)) from exc
            return await self.relay(method, rhead, ureader, uwriter, upstream, writer)
        raise UpstreamError("unreachable")

    async def relay(
        self,
        method: bytes,
        rhead: Head,
        ureader: asyncio.StreamReader,
        uwriter: asyncio.StreamWriter,
        upstream: Upstream,
        writer: asyncio.StreamWriter,
    ) -> bool:
        parts = rhead.first.split(b" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 502
        upstream_keep = (rhead.get(b"connection") or b"").lower() != b"close"
        no_body = method == b"HEAD" or status in (204, 304) or 100 <= status < 200
        te = (rhead.get(b"transfer-encoding") or b"").lower()
        length = rhead.get(b"content-length")
        lines = [rhead.first]
        for key, value in rhead.headers:
            lk = key.lower()
            if lk in (b"connection", b"keep-alive"):
                continue
            lines.append(key + b": " + value)
        if no_body:
            writer.write(b"\r\n".join(lines) + b"\r\n\r\n")
        elif b"chunked" in te:
            writer.write(b"\r\n".join(lines) + b"\r\n\r\n")
            while True:
                size_line = await ureader.readuntil(b"\r\n")
                writer.write(size_line)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while True:
                        trailer = await ureader.readuntil(b"\r\n")
                        writer.write(trailer)
                        if trailer == b"\r\n":
                            break
                    break
                writer.write(await ureader.readexactly(size + 2))
                await writer.drain()
        elif length is not None:
            writer.write(b"\r\n".join(lines) + b"\r\n\r\n")
            remaining = int(length)
            while remaining > 0:
                chunk = await ureader.read(min(remaining, 65536))
                if not chunk:
                    raise UpstreamError("upstream closed mid-body")
                writer.write(chunk)
                remaining -= len(chunk)
        else:
            # Close-delimited body: read it whole, then answer with a length.
            data = await ureader.read()
            upstream_keep = False
            lines.append(b"content-length: " + str(len(data)).encode())
            writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + data)
        await writer.drain()
        if upstream_keep and upstream is self.upstream and len(upstream.idle) < 64:
            upstream.idle.append((ureader, uwriter))
        else:
            uwriter.close()
        return True

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await read_head(reader)
                    if head is None:
                        return
                    body = await read_body(reader, head)
                except (
                    BadRequest,
                    ValueError,
                    asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError,
                ):
                    await respond(writer, 400, {"error": "bad request"}, keep=False)
                    return
                parts = head.first.split(b" ")
                if len(parts) != 3:
                    await respond(writer, 400, {"error": "bad request line"}, keep=False)
                    return
                method, target, version = parts
                client_keep = (head.get(b"connection") or b"").lower() != b"close" and (version == b"HTTP/1.1")
                path = target.split(b"?", 1)[0]
                if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + b"/"):
                    code, doc = await self.admin(method, path, head, body)
                    await respond(writer, code, doc, keep=client_keep)
                else:
                    self.in_flight += 1
                    try:
                        await self.forward(head, body, writer)
                    except (UpstreamError, OSError, asyncio.IncompleteReadError) as exc:
                        await respond(writer, 502, {"error": f"upstream: {exc}"}, keep=False)
                        return
                    finally:
                        self.in_flight -= 1
                if not client_keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()


def _probe(host: str, port: int, path: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


async def respond(writer: asyncio.StreamWriter, code: int, doc: dict, *, keep: bool) -> None:
    reasons = {
        200: "OK",
        400: "Bad Request",
        403: "Forbidden",
        404: "Not Found",
        409: "Conflict",
        502: "Bad Gateway",
    }
    data = json.dumps(doc).encode()
    head = (
        f"HTTP/1.1 {code} {reasons.get(code, 'Error')}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(data)}\r\n"
        f"connection: {'keep-alive' if keep else 'close'}\r\n\r\n"
    ).encode()
    writer.write(head + data)
    with contextlib.suppress(ConnectionError):
        await writer.drain()


def parse_hostport(text: str) -> tuple[str, int]:
    host, _, port = text.strip().rpartition(":")
    return host or "127.0.0.1", int(port)


async def main_async(args: argparse.Namespace) -> None:
    upstream = parse_hostport(args.upstream)
    if args.state and os.path.exists(args.state):
        with contextlib.suppress(ValueError, OSError), open(args.state) as fh:
            upstream = parse_hostport(fh.read())
    proxy = Proxy(Upstream(*upstream), args.state, os.environ.get("KAIZEN_PROXY_TOKEN", ""))
    host, port = parse_hostport(args.listen)
    server = await asyncio.start_server(proxy.handle, host, port, limit=MAX_HEAD, backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"kaizen proxy on {host}:{port} -> {upstream[0]}:{upstream[1]}", flush=True)
    async with server:
        await stop.wait()
        server.close()
        deadline = time.monotonic() + 10
        while proxy.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--state", default=None)
    args = parser.parse_args(argv)
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
