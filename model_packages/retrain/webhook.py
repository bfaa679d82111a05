"""`kaizen retrain-webhook`: Alertmanager's webhook receiver that starts one retraining run per alert.

POST (any path) with `Authorization: Bearer <token>` and Alertmanager's webhook payload (version 4):

* 401: the token is missing or wrong;
* 400: the payload is malformed (the answer names the field);
* 202: a run was started for at least one new firing alert;
* 200: nothing new (every firing alert was already handled, or only resolved / other alerts);
* 500: the alert could not be recorded in the audit trail (nothing is run; Alertmanager retries).

An alert instance is its `fingerprint` plus `startsAt`: Alertmanager repeats a notification while
the alert fires, and one instance is one run. Handled instances are kept in a small JSON state file
(written atomically: temp file + rename), so a restarted webhook does not run them again; a run cut
short by a restart is marked `interrupted`, not repeated. Runs go one at a time on a worker thread.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import queue
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from model_packages.errors import KaizenError

MAX_BODY = 1 << 20


class PayloadError(ValueError):
    """The webhook payload is not Alertmanager's (the message names the field)."""


@dataclass(frozen=True)
class Alert:
    name: str
    fingerprint: str
    starts_at: str
    labels: dict[str, str]
    annotations: dict[str, str]

    @property
    def key(self) -> str:
        return f"{self.fingerprint}@{self.starts_at}"


def parse_payload(body: bytes) -> tuple[list[Alert], int]:
    """The firing alerts of one notification, and how many resolved ones it also held."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise PayloadError("the body is not JSON") from None
    if not isinstance(doc, dict):
        raise PayloadError("the body is not a JSON object")
    if doc.get("version") != "4":
        raise PayloadError(f"version: {doc.get('version')!r}, expected Alertmanager's webhook version '4'")
    alerts = doc.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError("alerts: missing or not a list")
    firing: list[Alert] = []
    resolved = 0
    for i, item in enumerate(alerts):
        where = f"alerts[{i}]"
        if not isinstance(item, dict):
            raise PayloadError(f"{where}: not an object")
        status = item.get("status")
        if status not in ("firing", "resolved"):
            raise PayloadError(f"{where}.status: {status!r}, expected 'firing' or 'resolved'")
        for key in ("fingerprint", "startsAt"):
            if not isinstance(item.get(key), str) or not item[key]:
                raise PayloadError(f"{where}.{key}: missing or not a string")
        labels = item.get("labels")
        if not isinstance(labels, dict) or not isinstance(labels.get("alertname"), str):
            raise PayloadError(f"{where}.labels.alertname: missing")
        annotations = item.get("annotations") or {}
        if not isinstance(annotations, dict):
            raise PayloadError(f"{where}.annotations: not an object")
        if status == "resolved":
            resolved += 1
            continue
        firing.append(Alert(labels["alertname"], item["fingerprint"], item["startsAt"],
                            {str(k): str(v) for k, v in labels.items()},
                            {str(k): str(v) for k, v in annotations.items()}))
    return firing, resolved


class State:
    """Handled alert instances by key, in a JSON file written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.runs: dict[str, dict[str, Any]] = {}
        if path.exists():
            try:
                doc = json.loads(path.read_text())
                self.runs = dict(doc["runs"])
            except (ValueError, KeyError, TypeError):
                raise KaizenError(f"{path}: not a webhook state file (move it away to start afresh)") from None
        changed = False
        for run in self.runs.values():
            if run.get("status") in ("queued", "running"):
                run["status"] = "interrupted"  # handled: a restart does not run it again
                changed = True
        if changed:
            self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        with os.fdopen(fd, "w") as handle:
            json.dump({"runs": self.runs}, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)

    def claim(self, alert: Alert) -> bool:
        """Record `alert` as queued; False if it was handled before."""
        with self.lock:
            if alert.key in self.runs:
                return False
            self.runs[alert.key] = {"alert": alert.name, "labels": alert.labels, "status": "queued",
                                    "received_at": _now()}
            self._write()
            return True

    def release(self, key: str) -> None:
        with self.lock:
            self.runs.pop(key, None)
            self._write()

    def update(self, key: str, **fields: Any) -> None:
        with self.lock:
            self.runs[key].update(fields)
            self._write()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return json.loads(json.dumps(self.runs))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


Runner = Callable[[Alert], dict[str, Any]]


class RetrainWebhook:
    """The HTTP server, the state and the worker that calls `runner(alert)` for each new alert."""

    def __init__(self, *, token: str, state: Path, runner: Runner, alerts: tuple[str, ...] = ("KaizenDrift",),
                 host: str = "127.0.0.1", port: int = 9400) -> None:
        if len(token) < 16:
            raise KaizenError("the webhook token must have at least 16 characters")
        self.token = token.encode()
        self.state = State(state)
        self.runner = runner
        self.alerts = alerts
        self.queue: queue.Queue[Alert | None] = queue.Queue()
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.server.daemon_threads = True
        self.worker = threading.Thread(target=self._work, name="kaizen-retrain-worker", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self.worker.start()
        threading.Thread(target=self.server.serve_forever, name="kaizen-webhook", daemon=True).start()

    def serve_forever(self) -> None:
        self.worker.start()
        self.server.serve_forever()

    def stop(self, timeout: float = 600) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.queue.put(None)
        if self.worker.is_alive():
            self.worker.join(timeout)

    def _work(self) -> None:
        while True:
            alert = self.queue.get()
            if alert is None:
                return
            self.state.update(alert.key, status="running", started_at=_now())
            try:
                outcome = self.runner(alert)
            except Exception as error:  # a failed run is recorded; the webhook keeps serving
                self.state.update(alert.key, status="failed", error=f"{type(error).__name__}: {error}"[:2000],
                                  finished_at=_now())
            else:
                self.state.update(alert.key, status="done", outcome=outcome, finished_at=_now())

    def handle(self, authorization: str | None, body: bytes) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON answer) for one request."""
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token):
            return 401, {"error": "missing or wrong bearer token"}
        try:
            firing, resolved = parse_payload(body)
        except PayloadError as error:
            return 400, {"error": f"malformed Alertmanager payload: {error}"}
        started, duplicates, ignored = [], [], []
        for alert in firing:
            if alert.name not in self.alerts:
                ignored.append(alert.key)
            elif self.state.claim(alert):
                from model_packages.audit import trail

                try:
                    trail.append("drift_alert", alert=alert.name, fingerprint=alert.fingerprint,
                                 starts_at=alert.starts_at, labels=alert.labels,
                                 summary=alert.annotations.get("summary", ""))
                except KaizenError as error:  # not recorded, not run: Alertmanager retries the notification
                    self.state.release(alert.key)
                    return 500, {"error": f"cannot record the alert in the audit trail: {error}"}
                self.queue.put(alert)
                started.append(alert.key)
            else:
                duplicates.append(alert.key)
        answer = {"started": started, "duplicates": duplicates, "ignored": ignored, "resolved": resolved}
        return (202 if started else 200), answer

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "kaizen-retrain-webhook"

            def _send(self, code: int, doc: dict[str, Any]) -> None:
                data = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if code == 401:
                    self.send_header("WWW-Authenticate", 'Bearer realm="kaizen"')
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                if not 0 <= length <= MAX_BODY:
                    self._send(400, {"error": f"malformed Alertmanager payload: Content-Length must be 0..{MAX_BODY}"})
                    return
                code, doc = hook.handle(self.headers.get("Authorization"), self.rfile.read(length))
                self._send(code, doc)

            def do_GET(self) -> None:
                if self.path == "/healthz":
                    self._send(200, {"ok": True})
                    return
                scheme, _, given = (self.headers.get("Authorization") or "").partition(" ")
                if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), hook.token):
                    self._send(401, {"error": "missing or wrong bearer token"})
                    return
                self._send(200, {"runs": hook.state.snapshot()})

            def log_message(self, format: str, *args: Any) -> None:
                with contextlib.suppress(Exception):
                    print(f"webhook: {self.address_string()} {format % args}", flush=True)

        return Handler
