"""Run a helper command quietly: its stripped output, or None when it cannot say (git, az, ...)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path


def run_quiet(cmd: Sequence[str], *, cwd: str | Path | None = None, timeout: float = 5.0) -> str | None:
    """`cmd`'s stripped stdout; None when it is missing, fails, times out or prints nothing."""
    try:
        out = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None
