"""Run Debian's ``docker-registry`` (distribution 2.8) on 127.0.0.1 with its own config.

Never the package's default config (all interfaces, password auth, /var/lib storage): the
config is written to a temporary directory, with storage under it, bound to 127.0.0.1.

    python -m model_packages.image.localregistry --port 5000 --pidfile /tmp/reg.pid

runs one in the foreground (scripts/start-registry.sh starts it in the background).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path, PurePath
from types import TracebackType

from model_packages.errors import KaizenError


class RegistryStartError(KaizenError):
    """The local registry did not start."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def registry_config(port: int, root: PurePath, htpasswd: Path | None = None) -> str:
    """The one docker-registry config: bound to 127.0.0.1:`port`, storage at `root`."""
    auth = ""
    if htpasswd is not None:
        auth = f"auth:\n  htpasswd:\n    realm: kaizen-test\n    path: {htpasswd}\n"
    return (
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {root}\n"
        "  delete:\n    enabled: true\n"
        "  cache:\n    blobdescriptor: inmemory\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        "  headers:\n    X-Content-Type-Options: [nosniff]\n"
        f"{auth}"
    )


class LocalRegistry:
    """A docker-registry process on 127.0.0.1:`port`; a context manager."""

    def __init__(
        self,
        port: int | None = None,
        workdir: str | Path | None = None,
        htpasswd: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="kaizen-registry-"))
        self.htpasswd = htpasswd
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def start(self, timeout: float = 20.0) -> LocalRegistry:
        binary = shutil.which("docker-registry")
        if binary is None:
            raise RegistryStartError("docker-registry not found: apt-get install -y docker-registry")
        storage = self.workdir / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "config.yml"
        config.write_text(registry_config(self.port, storage, self.htpasswd))
        log = (self.workdir / "registry.log").open("ab")
        self.proc = subprocess.Popen(
            [binary, "serve", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = (self.workdir / "registry.log").read_text()[-2000:]
                raise RegistryStartError(f"docker-registry exited at start:\n{tail}")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except urllib.error.HTTPError as error:
                if error.code == 401:  # htpasswd-protected: up and answering
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RegistryStartError(f"docker-registry did not answer on {self.address} in {timeout}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalRegistry:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--dir", default=None, help="config and storage directory")
    parser.add_argument("--pidfile", default=None)
    args = parser.parse_args(argv)
    reg = LocalRegistry(args.port, args.dir)
    reg.start()
    if args.pidfile and reg.proc is not None:
        Path(args.pidfile).write_text(f"{reg.proc.pid}\n")
    print(f"registry on {reg.address} (pid {reg.proc.pid if reg.proc else '?'}, dir {reg.workdir})")
    stop = False

    def _stop(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not stop and reg.proc is not None and reg.proc.poll() is None:
            time.sleep(0.5)
    finally:
        reg.stop()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
