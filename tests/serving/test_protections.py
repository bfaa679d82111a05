"""The hostile-client attacks of the review (shared/reviews/attacks a01-a22) as bounded loopback tests.

Each test names the attack it replays. Timeouts are shortened through the settings so nothing waits long.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest
import requests

from tests.conftest import RunningServer, running_server
from tests.support import EXAMPLES

IRIS = EXAMPLES / "iris-classifier"
BODY = b'{"instances":[[5.1,3.5,1.4,0.2]]}'
FAST = {"KAIZEN_KEEPALIVE_TIMEOUT": "1", "KAIZEN_HEADER_TIMEOUT": "1", "KAIZEN_BODY_TIMEOUT": "1",
        "KAIZEN_LOG_REQUESTS": "false"}


def post(path: str = "/predict", body: bytes = BODY, extra: bytes = b"") -> bytes:
    return (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
            % (path.encode(), len(body), extra)) + body


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with 1 s timeouts, shared by the tests that do not stop it."""
    with running_server(IRIS, tmp_path_factory.mktemp("fast"), FAST) as server:
        yield server


def connect(server: RunningServer, timeout: float = 5) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=timeout)


def read_all(sock: socket.socket) -> bytes:
    """Read until the server closes (or the socket's timeout passes)."""
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return out


def read_response(reader: IO[bytes]) -> tuple[bytes, dict[bytes, bytes], bytes]:
    status = reader.readline().strip()
    headers: dict[bytes, bytes] = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, reader.read(int(headers.get(b"content-length", b"0")))


def statuses(raw: bytes) -> list[bytes]:
    return re.findall(rb"HTTP/1\.1 (\d{3})", raw)


def rss_mb(server: RunningServer) -> float:
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def ping_ok(server: RunningServer) -> bool:
    return requests.get(server.url + "/ping", timeout=5).status_code == 200


# -- a02-a04: head limits ------------------------------------------------------------------------
def test_huge_header_gets_431_and_close_without_growing_memory(fast: RunningServer) -> None:
    """a03/a04: 8 connections each sending an unterminated 16 MiB header used to cost 512 MB and stall the loop."""
    before = rss_mb(fast)
    answers = []
    for _ in range(8):
        with connect(fast) as sock:
            sock.sendall(b"GET /health/live HTTP/1.1\r\nX: ")
            sent = 0
            try:
                while sent < 16 << 20:
                    sock.sendall(b"a" * (1 << 20))
                    sent += 1 << 20
            except (BrokenPipeError, ConnectionResetError):
                pass
            answers.append(read_all(sock))
            assert sent < 16 << 20  # the server closed long before the end
    assert all(a.startswith(b"HTTP/1.1 431") for a in answers), answers[0][:200]
    assert rss_mb(fast) - before < 20
    assert ping_ok(fast)


@pytest.mark.parametrize(("request_head", "status"), [
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"414"),
    (b"GET /ping HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n", b"431"),
    (b"GET /ping HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", b"431"),
], ids=["url", "header-count", "header-size"])
def test_head_limits(fast: RunningServer, request_head: bytes, status: bytes) -> None:
    """a02: URL over 8 KiB -> 414; over 100 fields or 64 KiB of head -> 431; then the connection closes."""
    with connect(fast) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request_head)
        raw = read_all(sock)
    assert statuses(raw) == [status] and b"connection: close" in raw


def test_header_accumulation_is_linear(fast: RunningServer) -> None:
    """a04: a header delivered in 1-byte pieces is counted as it arrives; the limit answers in well under a second."""
    with connect(fast) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nX: ")
        started = time.monotonic()
        try:
            for _ in range(70):
                sock.sendall(b"a" * 1024)
        except (BrokenPipeError, ConnectionResetError):
            pass
        raw = read_all(sock)
    assert statuses(raw) == [b"431"] and time.monotonic() - started < 5


# -- a05, a06, a21: timeouts and the connection cap -----------------------------------------------
def test_slowloris_idle_and_silent_connections_are_closed(fast: RunningServer) -> None:
    """a05/a21: trickled heads get 408, idle keep-alive and silent connections are closed (1 s timeouts here)."""
    silent = connect(fast)
    idle = connect(fast)
    idle.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    idle_file = idle.makefile("rb")
    assert read_response(idle_file)[0].startswith(b"HTTP/1.1 200")
    slow = connect(fast)
    started = time.monotonic()
    trickled = b""
    try:
        for byte in b"GET /ping HTTP/1.1\r\nHost: x\r\n":
            slow.sendall(bytes([byte]))
            time.sleep(0.1)
            trickled += bytes([byte])
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert len(trickled) < 30  # cut off after about 1 s, mid-head
    assert statuses(read_all(slow)) == [b"408"]
    assert idle_file.read() == b"" and read_all(silent) == b""  # both closed by the server
    assert time.monotonic() - started < 6
    for sock in (silent, idle, slow):
        sock.close()


def test_body_trickle_gets_408(fast: RunningServer) -> None:
    """a07 (trickled body): a body that never completes is cut off by the body timeout."""
    with connect(fast) as sock:
        sock.sendall(post()[:-5])
        assert statuses(read_all(sock)) == [b"408"]


def test_connection_cap_sheds_idle_connections_first(server_factory: Callable[..., RunningServer]) -> None:
    """a06: idle connections up to the descriptor limit used to lock every new client (readiness too) out."""
    server = server_factory(IRIS, {"KAIZEN_MAX_CONNECTIONS": "20", "KAIZEN_KEEPALIVE_TIMEOUT": "60"})
    idle = [connect(server) for _ in range(40)]
    time.sleep(0.2)
    assert ping_ok(server)
    closed = 0
    for sock in idle:
        sock.settimeout(0.2)
        with contextlib.suppress(TimeoutError):
            closed += sock.recv(1) == b""
        sock.close()
    assert closed >= 20  # the oldest idle ones made room
    busy = [connect(server) for _ in range(20)]
    for sock in busy:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n")  # half-sent heads: shed (oldest first) when needed
    assert ping_ok(server)
    for sock in busy:
        sock.close()


# -- a07, Expect: early 413 and 100 Continue ----------------------------------------------------
@pytest.mark.parametrize(("head", "status"), [
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n", b"413"),
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n", None),
    (b"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n", b"404"),
], ids=["1GiB", "2^64-1", "unknown-route"])
def test_declared_oversize_body_is_answered_at_once(fast: RunningServer, head: bytes, status: bytes | None) -> None:
    """a07: the whole declared body used to be read (or waited for, forever) before the 413."""
    with connect(fast, timeout=3) as sock:
        sock.sendall(head + b"x" * 1000)
        raw = read_all(sock)
    found = statuses(raw)
    assert len(found) == 1 and (found[0] == status if status else found[0] in (b"400", b"413"))
    assert b"connection: close" in raw


def test_chunked_body_over_the_limit_stops_at_the_limit(fast: RunningServer) -> None:
    with connect(fast, timeout=5) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        sent = 0
        try:
            while sent < 64 << 20:
                sock.sendall(b"100000\r\n" + b"1" * 0x100000 + b"\r\n")
                sent += 0x100000
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert sent < 16 << 20 and statuses(read_all(sock)) == [b"413"]


def test_expect_100_continue(fast: RunningServer) -> None:
    """Item 9 of the report: curl waited 1 s per large POST for a 100 Continue that never came."""
    with connect(fast) as sock:
        sock.sendall(post(extra=b"Expect: 100-continue\r\n").split(b"\r\n\r\n")[0] + b"\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(BODY)
        status, _, body = read_response(sock.makefile("rb"))
        assert status.startswith(b"HTTP/1.1 200") and b"setosa" in body


# -- a19: Upgrade ----------------------------------------------------------------------------------
def test_upgrade_offer_is_ignored_and_answered_once(fast: RunningServer) -> None:
    """a19: a request with Upgrade: h2c got its answer plus a stray 400; a POST lost its body."""
    upgrade = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
    with connect(fast) as sock:
        reader = sock.makefile("rb")
        sock.sendall(b"GET /health/ready HTTP/1.1\r\nHost: x\r\n" + upgrade + b"\r\n")
        assert read_response(reader)[0].startswith(b"HTTP/1.1 200")
        sock.sendall(post())  # the same connection, reused: its answer must be its own
        status, _, body = read_response(reader)
        assert status.startswith(b"HTTP/1.1 200") and json.loads(body) == {"predictions": ["setosa"]}
        sock.sendall(post(extra=upgrade))  # a POST with an upgrade offer keeps its body
        status, _, body = read_response(reader)
        assert status.startswith(b"HTTP/1.1 200") and json.loads(body) == {"predictions": ["setosa"]}
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert statuses(read_response(reader)[0] + reader.read()) == [b"200"]


def test_connect_is_refused(fast: RunningServer) -> None:
    with connect(fast) as sock:
        sock.sendall(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n")
        assert statuses(read_all(sock)) == [b"400"]


# -- a01, a17: framing and pipelining still strict --------------------------------------------------
@pytest.mark.parametrize("raw", [
    b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    b"GET /ping HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
], ids=["cl-te", "two-cl", "obs-fold"])
def test_smuggling_shapes_get_400(fast: RunningServer, raw: bytes) -> None:
    with connect(fast) as sock:
        sock.sendall(raw)
        assert statuses(read_all(sock)) == [b"400"]


def test_pipelined_requests_answered_in_order_and_nothing_after_close(fast: RunningServer) -> None:
    """a17: after Connection: close the rest of the pipeline is neither answered nor run."""
    ping = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
    close = b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with connect(fast) as sock:
        sock.sendall(ping + post() + close + post() * 20)
        raw = read_all(sock)
    assert statuses(raw) == [b"200"] * 3 and raw.count(b"setosa") == 1


# -- a10, a11: inference off the loop, rows cap, write backpressure --------------------------------
def test_slow_reader_is_not_answered_ahead(server_factory: Callable[..., RunningServer]) -> None:
    """a11: pipelined probability requests whose answers are never read were all computed and buffered."""
    server = server_factory(IRIS, {"KAIZEN_LOG_REQUESTS": "false"})
    body = json.dumps({"instances": [[1, 1, 1, 1]] * 20_000, "parameters": {"probabilities": True}}).encode()
    socks = []
    for _ in range(2):
        sock = connect(server)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(post(body=body) * 5)
        socks.append(sock)
    time.sleep(2)
    metrics = requests.get(server.url + "/metrics", timeout=5).text
    done = re.search(r'kaizen_requests_total\{route="predict",status="200"\} (\S+)', metrics)
    assert done is not None and float(done.group(1)) <= 4, "answers were computed for a client that reads none"
    for sock in socks:
        sock.close()
    assert ping_ok(server)


def test_health_answers_while_a_big_batch_runs(fast: RunningServer) -> None:
    """a10: a maximal request used to hold the event loop, /ping included, for the whole prediction."""
    body = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]] * 20_000, "parameters": {"probabilities": True}}).encode()
    finished: list[float] = []

    def big() -> None:
        with connect(fast, timeout=30) as sock:
            sock.sendall(post(body=body))
            read_response(sock.makefile("rb"))
            finished.append(time.monotonic())

    worker = threading.Thread(target=big)
    worker.start()
    time.sleep(0.05)
    pings = []
    while worker.is_alive() and len(pings) < 200:
        assert ping_ok(fast)
        pings.append(time.monotonic())
    worker.join()
    assert len([t for t in pings if t < finished[0]]) >= 3  # health kept answering during the batch


def test_rows_per_request_are_capped(server_factory: Callable[..., RunningServer]) -> None:
    server = server_factory(IRIS, {"KAIZEN_MAX_ROWS": "100"})
    answer = requests.post(server.url + "/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]] * 101}, timeout=5)
    assert answer.status_code == 413 and "KAIZEN_MAX_ROWS" in answer.json()["error"]
    csv = requests.post(server.url + "/invocations", data="5.1,3.5,1.4,0.2\n" * 101,
                        headers={"Content-Type": "text/csv"}, timeout=5)
    assert csv.status_code == 413
    ok = requests.post(server.url + "/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]] * 100}, timeout=5)
    assert ok.status_code == 200


# -- a13, a14: shutdown ---------------------------------------------------------------------------
def test_sigterm_with_a_half_sent_request_exits_quickly(server_factory: Callable[..., RunningServer]) -> None:
    """a14: one half-sent header held SIGTERM for the whole 20 s drain."""
    server = server_factory(IRIS)
    with connect(server) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Le")
        time.sleep(0.1)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=10) == 0
    assert time.monotonic() - started < 3


def test_sigterm_under_load_loses_no_accepted_request(server_factory: Callable[..., RunningServer]) -> None:
    """a13: requests on connections accepted just before the listener closed were lost."""
    server = server_factory(IRIS, {"KAIZEN_LOG_REQUESTS": "false"})
    host, port = server.url.removeprefix("http://").split(":")
    stop = threading.Event()
    counts = {"ok": 0, "lost": 0, "refused": 0}
    lock = threading.Lock()

    def client() -> None:
        while not stop.is_set():
            try:
                sock = socket.create_connection((host, int(port)), timeout=5)
            except OSError:
                with lock:
                    counts["refused"] += 1
                time.sleep(0.02)
                continue
            reader = sock.makefile("rb")
            try:
                while not stop.is_set():
                    sock.sendall(post())
                    status, headers, _ = read_response(reader)
                    if not status:
                        raise ConnectionResetError
                    with lock:
                        counts["ok"] += 1
                    if headers.get(b"connection") == b"close":
                        break
            except OSError:
                with lock:
                    counts["lost"] += 1
            finally:
                sock.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(16)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=10) == 0
        time.sleep(0.3)
    finally:  # the clients stop whatever happens, or they would keep pytest from exiting
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    assert counts["ok"] > 20, counts  # load was really running when SIGTERM came
    assert counts["lost"] == 0, counts


def test_date_header_and_http10_keep_alive_acknowledged(fast: RunningServer) -> None:
    """Report item 24: no Date header; HTTP/1.0 keep-alive kept open without saying so."""
    with connect(fast) as sock:
        reader = sock.makefile("rb")
        sock.sendall(b"GET /ping HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        status, headers, _ = read_response(reader)
        assert status.startswith(b"HTTP/1.1 200") and headers[b"connection"] == b"keep-alive"
        assert headers[b"date"].endswith(b" GMT")


def test_abrupt_disconnects_leak_nothing(fast: RunningServer) -> None:
    """a12: resets mid-body, mid-response and half-closes leave no descriptor behind and no answer pending."""
    fds = Path(f"/proc/{fast.process.pid}/fd")
    before = len(list(fds.iterdir()))
    big = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]] * 5000, "parameters": {"probabilities": True}}).encode()
    for i in range(60):
        sock = connect(fast)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
        if i % 3 == 0:
            sock.sendall(post()[:-10])  # mid-body
        elif i % 3 == 1:
            sock.sendall(post(body=big))  # mid-response (5,000 rows with probabilities)
        else:
            sock.sendall(post())
            sock.shutdown(socket.SHUT_WR)  # half-close after a complete request
            sock.recv(10)
        sock.close()
    deadline = time.monotonic() + 5
    while len(list(fds.iterdir())) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(list(fds.iterdir())) <= before
    assert ping_ok(fast)


def test_descriptor_limit_is_raised_to_the_hard_limit() -> None:
    """a06: the runtime raises its soft descriptor limit at start, and caps connections below it."""
    import resource

    from model_packages.serving.server import raise_fd_limit

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        expected = hard if hard != resource.RLIM_INFINITY else 1 << 16
        assert raise_fd_limit() == resource.getrlimit(resource.RLIMIT_NOFILE)[0] == expected
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
