"""Benchmark of the local stack (the README's main command), each phase timed separately.

    .venv/bin/python bench/bench_local_stack.py [--fresh-engine] [--fresh-base] [--out FILE]

Phases: engine install (scripts/install-pulumi.sh; `--fresh-engine` builds into an empty cache
with an empty Go build cache, as on a fresh machine), base image (`kaizen base` equivalent;
`--fresh-base` removes the local base images first), first `pulumi up`, a second `pulumi up`
with no change (target <= 10 s), a model-version rollout (target <= 20 s from `pulumi up` to the
new version serving), and `pulumi destroy`. Prints one JSON document; `--out` also writes it.
Uses its own ports (KAIZEN_BENCH_PORT_BASE, default 16100) and a throwaway state directory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from tests.support.pulumi_cli import LocalStack, write_config  # noqa: E402

TARGETS = {"noop_up_s": 10.0, "rollout_to_serving_s": 20.0}


def _version_served(url: str) -> str | None:
    for line in requests.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith("kaizen_model_info{") and 'version="' in line:
            return line.split('version="', 1)[1].split('"', 1)[0]
    return None


def _engine(fresh: bool, tmp: Path) -> float:
    env = dict(os.environ)
    if fresh:
        env.update(
            KAIZEN_PULUMI_FORCE_BUILD="1",
            KAIZEN_PULUMI_CACHE=str(tmp / "engine-cache"),
            GOCACHE=str(tmp / "gocache"),
        )
    start = time.monotonic()
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "install-pulumi.sh")], env=env, check=True, stdout=subprocess.DEVNULL
    )
    return time.monotonic() - start


def _base(fresh: bool) -> float:
    import docker
    import docker.errors

    from model_packages.image.base import BUILDER_BASE, RUNTIME_BASE, ensure_bases

    client = docker.from_env()
    if fresh:
        for ref in (RUNTIME_BASE, BUILDER_BASE):
            with contextlib.suppress(docker.errors.ImageNotFound):
                client.images.remove(ref, force=True)
    start = time.monotonic()
    ensure_bases(client, log=lambda _m: None)
    return time.monotonic() - start


def _package(tmp: Path, version: str) -> Path:
    out = tmp / f"iris-{version}"
    shutil.copytree(ROOT / "examples" / "iris-classifier", out)
    manifest = out / "kaizen.yaml"
    manifest.write_text(manifest.read_text().replace("version: 1.0.0", f"version: {version}", 1))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--fresh-engine", action="store_true")
    parser.add_argument("--fresh-base", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    base = int(os.environ.get("KAIZEN_BENCH_PORT_BASE", "16100"))
    result: dict[str, object] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "targets": TARGETS,
    }
    with tempfile.TemporaryDirectory(prefix="kaizen-bench-") as tmpdir:
        tmp = Path(tmpdir)
        result["engine_install_s"] = round(_engine(args.fresh_engine, tmp), 1)
        result["engine_fresh_build"] = args.fresh_engine
        result["base_image_s"] = round(_base(args.fresh_base), 1)

        stack = LocalStack(
            name=f"bench-{os.getpid()}", backend_dir=tmp / "state", config_file=tmp / "Pulumi.bench.yaml"
        )
        config = {
            "kaizen:target": "local",
            "kaizen:stackKind": "dev",
            "kaizen:owner": "bench",
            "kaizen:costCenter": "bench",
            "kaizen:local": {
                "package": str(_package(tmp, "1.0.0")),
                "registryPort": base + 1,
                "endpointPort": base + 80,
                "backendPorts": [base + 81, base + 82],
                "prometheusPort": base + 90,
            },
        }
        write_config(stack.config_file or tmp / "cfg", config)
        stack.init()
        url = f"http://127.0.0.1:{base + 80}"
        try:
            seconds, _ = stack.up()
            result["first_up_s"] = round(seconds, 1)
            seconds, _ = stack.up("--expect-no-changes")
            result["noop_up_s"] = round(seconds, 1)
            config["kaizen:local"]["package"] = str(_package(tmp, "1.1.0"))  # type: ignore[index]
            write_config(stack.config_file or tmp / "cfg", config)
            start = time.monotonic()
            proc = stack.popen("up", "--yes", "--skip-preview")
            serving = None
            while proc.poll() is None or serving is None:
                try:
                    if _version_served(url) == "1.1.0":
                        serving = time.monotonic() - start
                        break
                except requests.RequestException:
                    pass
                if proc.poll() is not None and proc.returncode != 0:
                    raise RuntimeError((proc.stdout.read() if proc.stdout else "")[-3000:])
                time.sleep(0.05)
            proc.wait(timeout=600)
            result["rollout_to_serving_s"] = round(serving or float("nan"), 1)
            result["rollout_up_total_s"] = round(time.monotonic() - start, 1)
            seconds, _ = stack.destroy()
            result["destroy_s"] = round(seconds, 1)
        finally:
            stack.run("destroy", "--yes", "--skip-preview", check=False)
            stack.run("stack", "rm", "--yes", "--force", check=False)
    result["meets_targets"] = all(
        isinstance(result.get(k), float) and result[k] <= v  # type: ignore[operator]
        for k, v in TARGETS.items()
    )
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
