"""ARM set-up and build costs under QEMU user emulation (what CI pays for linux/arm64).

    flock -x /tmp/kaizen-cpu.lock .venv/bin/python bench/bench_multiarch.py [--bases] \
        [--out bench/results/multiarch.json]

Measures a cold arm64 and amd64 image build of the compiled iris example (no build cache, unique tags,
removed afterwards), the arm64 image size and its start to first good answer under emulation; with
`--bases`, the arm64 root file systems from scratch (mmdebstrap --arch=arm64, in a temporary cache
directory, so the real cache is untouched). Needs Docker, mmdebstrap, qemu-user-static with binfmt.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model_packages.image import base  # noqa: E402
from model_packages.image.build import build_package, docker_client  # noqa: E402
from model_packages.image.context import Bases  # noqa: E402
from tests.support import free_port  # noqa: E402

CPUINFO = ROOT / "tests" / "image" / "arm64-cpuinfo.txt"


def _bases_from_scratch() -> dict[str, float]:
    out: dict[str, float] = {}
    saved = os.environ.get("KAIZEN_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="kaizen-bench-bases-") as tmp:
        os.environ["KAIZEN_CACHE_DIR"] = tmp
        try:
            for kind in ("runtime", "builder"):
                started = time.monotonic()
                base.build_rootfs(base.variant_spec(kind, (), "arm64"), log=lambda _m: None)
                out[f"arm64_{kind}_rootfs_s"] = round(time.monotonic() - started, 1)
        finally:
            if saved is None:
                os.environ.pop("KAIZEN_CACHE_DIR", None)
            else:
                os.environ["KAIZEN_CACHE_DIR"] = saved
    return out


def _first_answer(client: Any, tag: str) -> float:
    port = free_port()
    started = time.monotonic()
    container = client.containers.run(
        tag, command=["serve"], detach=True, network_mode="host", read_only=True, tmpfs={"/tmp": "rw"},
        environment={"KAIZEN_HOST": "127.0.0.1", "KAIZEN_PORT": str(port), "KAIZEN_WORKERS": "1"},
        volumes={str(CPUINFO): {"bind": "/proc/cpuinfo", "mode": "ro"}},
    )
    try:
        while time.monotonic() - started < 300:
            with contextlib.suppress(requests.RequestException):
                resp = requests.post(f"http://127.0.0.1:{port}/invocations", timeout=5,
                                     json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
                if resp.status_code == 200:
                    return round(time.monotonic() - started, 1)
            time.sleep(0.2)
        raise RuntimeError(f"{tag} gave no answer in 300 s:\n{container.logs().decode()[-2000:]}")
    finally:
        container.remove(force=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bases", action="store_true", help="also build the arm64 root file systems from scratch")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "multiarch.json"))
    args = parser.parse_args()
    base.require_emulation("arm64")
    client = docker_client(timeout=1800)
    results: dict[str, Any] = {"load_average_at_start": os.getloadavg()[0]}
    if args.bases:
        results |= _bases_from_scratch()
    base.ensure_bases(client, log=lambda _m: None)
    base.ensure_bases(client, arch="arm64", log=lambda _m: None)
    run = uuid.uuid4().hex[:8]
    tags = []
    try:
        for platform in ("linux/amd64", "linux/arm64"):
            arch = platform.split("/")[1]
            tag = f"kaizen-bench/iris-{arch}:{run}"
            built = build_package(ROOT / "examples" / "iris-classifier", bases=Bases.local(), tag=tag,
                                  client=client, nocache=True, platform=platform)
            tags.append(tag)
            results[f"{arch}_cold_build_s"] = round(built.seconds, 1)
            results[f"{arch}_image_mb"] = round(built.size / 1e6, 1)
        results["arm64_start_to_first_answer_s"] = _first_answer(client, tags[1])
    finally:
        for tag in tags:
            with contextlib.suppress(Exception):
                client.images.remove(tag)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
