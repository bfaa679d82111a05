"""Drive the Pulumi CLI on a local stack: the e2e tests and the benchmark use it (test tooling, not
part of the installed `infra` package; `scripts/lib.sh` pulumi_env is its shell twin).

Every run uses the local file backend, a passphrase secrets provider, and no update checks or
plugin downloads. The engine comes from ``scripts/install-pulumi.sh`` (a `pulumi` on PATH, or the
pinned build cached under ``~/.cache/kaizen/pulumi``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import ROOT


class PulumiError(RuntimeError):
    def __init__(self, args: list[str], proc: subprocess.CompletedProcess[str]) -> None:
        self.proc = proc
        tail = (proc.stdout[-4000:] + "\n" + proc.stderr[-4000:]).strip()
        super().__init__(f"`pulumi {' '.join(args)}` exited {proc.returncode}:\n{tail}")


def engine_bin() -> str:
    """The directory holding `pulumi` (installs/builds it when needed)."""
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install-pulumi.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/install-pulumi.sh failed:\n{proc.stderr[-3000:]}")
    return proc.stdout.strip().splitlines()[-1]


def base_env(backend_dir: Path, *, passphrase: str = "kaizen-local") -> dict[str, str]:
    env = dict(os.environ)
    bin_dir = engine_bin()
    venv_bin = str(ROOT / ".venv" / "bin")
    env["PATH"] = os.pathsep.join([bin_dir, venv_bin, env.get("PATH", "")])
    backend_dir.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "PULUMI_BACKEND_URL": f"file://{backend_dir}",
            "PULUMI_CONFIG_PASSPHRASE": passphrase,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
            "PULUMI_SKIP_CONFIRMATIONS": "true",
            "PULUMI_HOME": str(backend_dir / ".pulumi-home"),
            "NO_COLOR": "1",
        }
    )
    env.pop("PULUMI_ACCESS_TOKEN", None)
    return env


@dataclass
class LocalStack:
    """One stack of the project at `cwd`, with its config in `config_file` (outside the checkout
    when given) and its state in `backend_dir`."""

    name: str
    backend_dir: Path
    config_file: Path | None = None
    cwd: Path = ROOT
    env: dict[str, str] = field(default_factory=dict)
    log_file: Path | None = None

    def __post_init__(self) -> None:
        if not self.env:
            self.env = base_env(self.backend_dir)

    # ---- raw ------------------------------------------------------------------------------------
    def run(
        self, *args: str, check: bool = True, timeout: float = 900, stack: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [*args, "--non-interactive"]
        if stack:
            argv += ["--stack", self.name]
            if self.config_file is not None and args[0] in ("up", "preview", "destroy", "config"):
                argv += ["--config-file", str(self.config_file)]
        proc = subprocess.run(
            ["pulumi", *argv],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if self.log_file is not None:
            with self.log_file.open("a") as fh:
                fh.write(f"\n$ pulumi {' '.join(argv)}  # exit {proc.returncode}\n")
                fh.write(proc.stdout + proc.stderr)
        if check and proc.returncode != 0:
            raise PulumiError(argv, proc)
        return proc

    def popen(self, *args: str) -> subprocess.Popen[str]:
        argv = [*args, "--non-interactive", "--stack", self.name]
        if self.config_file is not None:
            argv += ["--config-file", str(self.config_file)]
        return subprocess.Popen(
            ["pulumi", *argv],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    # ---- verbs ----------------------------------------------------------------------------------
    def init(self) -> None:
        self.run("login", f"file://{self.backend_dir}", stack=False)
        existing = self.run("stack", "ls", "--json", stack=False)
        names = {s["name"] for s in json.loads(existing.stdout or "[]")}
        if self.name not in names:
            self.run("stack", "init", self.name, stack=False)

    def up(self, *extra: str, timeout: float = 900) -> tuple[float, subprocess.CompletedProcess[str]]:
        start = time.monotonic()
        proc = self.run("up", "--yes", "--skip-preview", *extra, timeout=timeout)
        return time.monotonic() - start, proc

    def preview(self, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("preview", "--diff", *extra, check=check)

    def destroy(self, *extra: str) -> tuple[float, subprocess.CompletedProcess[str]]:
        start = time.monotonic()
        proc = self.run("destroy", "--yes", "--skip-preview", *extra)
        return time.monotonic() - start, proc

    def recover(self) -> None:
        """After a killed `pulumi up`: drop its stale lock (the process is gone). The next
        `pulumi up --refresh` then reconciles the state with what really runs."""
        self.run("cancel", "--yes", check=False)

    def processes(self) -> list[int]:
        """PIDs of processes started for this stack's state (CLI, language host, providers)."""
        needle = f"PULUMI_BACKEND_URL=file://{self.backend_dir}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                env = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if needle in env:
                found.append(int(entry.name))
        return found

    def kill_all(self) -> list[int]:
        """SIGKILL every process of this stack (an interrupted run: CLI and plugins alike; the
        engine starts plugins in their own process groups)."""
        pids = self.processes()
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def remove(self) -> None:
        """`pulumi stack rm`; with a config file elsewhere, also drop the stacks/Pulumi.<stack>.yaml
        that `stack init` wrote (it only holds the passphrase salt)."""
        if self.config_file is None:
            self.run("stack", "rm", "--yes", "--force", "--preserve-config")
        else:
            self.run("stack", "rm", "--yes", "--force")

    def outputs(self) -> dict[str, Any]:
        proc = self.run("stack", "output", "--json", "--show-secrets")
        return json.loads(proc.stdout or "{}")

    def resources(self) -> list[dict[str, Any]]:
        proc = self.run("stack", "export")
        doc = json.loads(proc.stdout)
        return list(doc.get("deployment", {}).get("resources") or [])


def write_config(path: Path, config: dict[str, Any]) -> None:
    """Write a stack config file (JSON is YAML) from {"kaizen:key": value}."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"config": config}, indent=2) + "\n")


def have_docker() -> bool:
    if shutil.which("docker") is None and not Path("/usr/bin/docker").exists():
        return False
    try:
        import docker

        docker.from_env(timeout=5).ping()
    except Exception:
        return False
    return True
