"""Image benchmark: cold build, model-only rebuild, sizes, bytes pushed, start to first answer.

    .venv/bin/python bench/bench_image.py [--runs 5] [--out bench/results/image.json]

Needs a Docker engine (scripts/start-docker.sh), mmdebstrap and docker-registry. Uses the local
mmdebstrap bases, a private docker-registry on 127.0.0.1 and unique tags; removes its images.
Targets (issue 3): sklearn image <= 300 MB, ONNX <= 150 MB, model-only rebuild <= 2 s, bytes
pushed for a model-only change <= 1.1x the model layer, start to first good answer <= 1.5 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model_packages.image.base import ensure_bases  # noqa: E402
from model_packages.image.build import build_package, docker_client  # noqa: E402
from model_packages.image.context import Bases  # noqa: E402
from model_packages.image.localregistry import LocalRegistry  # noqa: E402
from model_packages.image.registry import push_image  # noqa: E402
from model_packages.manifest import read_manifest, write_manifest  # noqa: E402
from model_packages.package import copy_without_serving_artifact  # noqa: E402
from tests.support import free_port  # noqa: E402

EXAMPLES = ROOT / "examples"
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
DIABETES_ROW = [0.03, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, 0.0, 0.02, -0.02]
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


def bump(src: Path, dst: Path, version: str) -> Path:
    package = Path(shutil.copytree(src, dst))
    manifest = read_manifest(package)
    write_manifest(manifest.model_copy(update={"version": version}), package)
    return package


def forest_package(out: Path, version: str, seed: int) -> Path:
    import numpy as np
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    from model_packages.package import create_package

    x, y = load_iris(return_X_y=True)
    model = RandomForestClassifier(n_estimators=150, random_state=seed).fit(x, y)
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    return create_package(
        model,
        np.asarray(x),
        y,
        out_dir=out,
        name="iris-forest",
        version=version,
        feature_names=names,
    )


def first_answer(client: Any, image: str, path: str, payload: Any) -> float:
    """Seconds from `docker run` (create + start) to the first 200 answer with predictions."""
    port = free_port()
    started = time.monotonic()
    container = client.containers.run(
        image,
        command=["serve"],
        detach=True,
        network_mode="host",
        read_only=True,
        tmpfs={"/tmp": "rw,size=64m"},
        environment={"KAIZEN_HOST": "127.0.0.1", "KAIZEN_PORT": str(port)},
    )
    try:
        url = f"http://127.0.0.1:{port}{path}"
        while time.monotonic() - started < 60:
            try:
                resp = requests.post(url, json=payload, timeout=2)
                if resp.status_code == 200 and resp.json().get("predictions"):
                    return time.monotonic() - started
            except requests.RequestException:
                pass
            time.sleep(0.01)
        raise RuntimeError(f"{image} gave no good answer in 60 s")
    finally:
        container.remove(force=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="container starts per image")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "image.json"))
    parser.add_argument("--skip-cold", action="store_true", help="do not run a no-cache build")
    args = parser.parse_args(argv)

    client = docker_client()
    ensure_bases(client, log=lambda _m: None)
    bases = Bases.local()
    run = uuid.uuid4().hex[:8]
    tags: list[str] = []
    results: dict[str, Any] = {"run": run}
    tmp = Path(tempfile.mkdtemp(prefix="kaizen-bench-"))
    try:

        def build(package: Path, name: str, nocache: bool = False) -> Any:
            tag = f"kaizen-bench/{name}:{run}"
            started = time.monotonic()
            result = build_package(package, bases=bases, tag=tag, client=client, nocache=nocache)
            result.seconds = time.monotonic() - started
            tags.append(tag)
            return result

        # The sklearn flavor: the iris example served by scikit-learn (no compiled artifact).
        iris = copy_without_serving_artifact(EXAMPLES / "iris-classifier", tmp / "iris-source")
        compiled = build(EXAMPLES / "iris-classifier", "iris-compiled")
        results["compiled_sklearn_image_mb"] = round(compiled.size / 1e6, 1)
        if not args.skip_cold:
            cold = build(iris, "iris-cold", nocache=True)
            results["sklearn_cold_build_s"] = round(cold.seconds, 2)
        warm = build(iris, "iris")
        results["sklearn_cached_build_s"] = round(warm.seconds, 2)
        rebuild = build(bump(iris, tmp / "iris-101", "1.0.1"), "iris-101")
        assert rebuild.layers[:-1] == warm.layers[:-1]
        results["sklearn_model_only_rebuild_s"] = round(rebuild.seconds, 2)
        results["sklearn_image_mb"] = round(warm.size / 1e6, 1)
        onnx = build(EXAMPLES / "diabetes-regressor", "diabetes")
        results["onnx_image_mb"] = round(onnx.size / 1e6, 1)
        results["runtime_base_mb"] = round(client.images.get(bases.runtime).attrs["Size"] / 1e6, 1)

        with LocalRegistry() as registry:
            first = push_image(warm.tag, registry.address, client=client, records_path=None)
            results["sklearn_first_push_s"] = round(first.seconds, 2)
            results["sklearn_first_push_mb"] = round(first.bytes_pushed / 1e6, 1)
            second = push_image(rebuild.tag, registry.address, client=client, records_path=None)
            results["example_model_only_push_bytes"] = second.bytes_pushed
            results["example_model_only_push_s"] = round(second.seconds, 2)
            # A realistic model (a 150-tree random forest): model layer vs bytes pushed.
            forest = [
                build(forest_package(tmp / v, v, seed), f"forest-{v}") for v, seed in (("2.0.0", 1), ("2.0.1", 2))
            ]
            push_image(forest[0].tag, registry.address, client=client, records_path=None)
            change = push_image(forest[1].tag, registry.address, client=client, records_path=None)
            manifest = requests.get(
                f"{registry.url}/v2/kaizen/iris-forest/manifests/{change.digest}",
                headers={"Accept": MANIFEST_V2},
                timeout=10,
            ).json()
            layer = int(manifest["layers"][-1]["size"])
            results["forest_model_layer_bytes"] = layer
            results["forest_model_only_push_bytes"] = change.bytes_pushed
            results["forest_push_ratio"] = round(change.bytes_pushed / layer, 3)
            results["forest_layers_pushed"] = change.layers_pushed

        starts = [first_answer(client, warm.tag, "/invocations", {"instances": IRIS_ROWS}) for _ in range(args.runs)]
        results["sklearn_start_to_answer_s"] = {
            "median": round(statistics.median(starts), 3),
            "min": round(min(starts), 3),
            "max": round(max(starts), 3),
        }
        starts = [
            first_answer(client, compiled.tag, "/invocations", {"instances": IRIS_ROWS}) for _ in range(args.runs)
        ]
        results["compiled_sklearn_start_to_answer_s"] = {
            "median": round(statistics.median(starts), 3),
            "min": round(min(starts), 3),
            "max": round(max(starts), 3),
        }
        starts = [
            first_answer(client, onnx.tag, "/invocations", {"instances": [DIABETES_ROW]}) for _ in range(args.runs)
        ]
        results["onnx_start_to_answer_s"] = {
            "median": round(statistics.median(starts), 3),
            "min": round(min(starts), 3),
            "max": round(max(starts), 3),
        }
    finally:
        for tag in tags:
            with contextlib.suppress(Exception):
                client.images.remove(tag, noprune=True)
        shutil.rmtree(tmp, ignore_errors=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
