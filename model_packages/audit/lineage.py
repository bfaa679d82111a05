"""`kaizen lineage IMAGE@sha256:...`: image -> package -> training run -> data -> parent version,
from the audit trail and the package store; exported as OpenLineage run events."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from model_packages.audit import trail
from model_packages.errors import KaizenError

NAMESPACE = "kaizen"
PRODUCER = "https://kaizen.dev/lineage"


def lineage(image: str, records: list[dict[str, Any]], store: Path | None = None) -> list[dict[str, Any]]:
    """The chain of nodes behind `image`, newest first."""
    push = next((r for r in reversed(records) if r.get("event") == "image_push" and r.get("image") == image), None)
    if push is None:
        raise KaizenError(f"the audit trail records no push of {image}")
    nodes: list[dict[str, Any]] = [{"kind": "image", "image": image, "pushed_at": push["at"], "seq": push["seq"]}]
    name, version = str(push["model"]), str(push["version"])
    seen: set[str] = set()
    while version and version not in seen:
        seen.add(version)
        package: dict[str, Any] = {"kind": "package", "model": name, "version": version}
        manifest = store / name / version / "kaizen.yaml" if store else None
        if manifest is not None and manifest.is_file():
            from model_packages.manifest import read_manifest

            read = read_manifest(manifest.parent)
            package.update(artifact_sha256=read.artifact_sha256, data_sha256=read.lineage.data_sha256,
                           code_revision=read.lineage.code_revision)
        nodes.append(package)
        made = next((r for r in reversed(records) if r.get("event") == "package" and r.get("name") == name
                     and r.get("version") == version), None)
        if made is None:  # not produced by a recorded pipeline run: the first version
            break
        nodes.append({"kind": "training_run", "pipeline": made.get("pipeline"),
                      "pipeline_version": made.get("pipeline_version"), "at": made["at"], "seq": made["seq"]})
        nodes.append({"kind": "data", "sha256": made.get("data_sha256")})
        version = str(made.get("parent") or "")
    return nodes


def openlineage_events(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One COMPLETE RunEvent per training run (inputs: its data and parent package; output: the
    package) and one per image push (input: the package; output: the image)."""
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.serde import Serde

    events = []
    image, packages = nodes[0], [n for n in nodes if n["kind"] == "package"]
    events.append(RunEvent(
        eventType=RunState.COMPLETE, eventTime=image["pushed_at"], producer=PRODUCER,
        run=Run(runId=str(uuid.uuid5(uuid.NAMESPACE_URL, image["image"]))),
        job=Job(namespace=NAMESPACE, name="image-push"),
        inputs=[InputDataset(namespace=NAMESPACE, name=f"package/{packages[0]['model']}/{packages[0]['version']}")],
        outputs=[OutputDataset(namespace=NAMESPACE, name=f"image/{image['image']}")],
    ))
    for i, node in enumerate(nodes):
        if node["kind"] != "training_run":
            continue
        built, data = nodes[i - 1], nodes[i + 1]
        parent = nodes[i + 2] if i + 2 < len(nodes) and nodes[i + 2]["kind"] == "package" else None
        inputs = [InputDataset(namespace=NAMESPACE, name=f"data/sha256:{data['sha256']}")]
        if parent is not None:
            inputs.append(InputDataset(namespace=NAMESPACE, name=f"package/{parent['model']}/{parent['version']}"))
        events.append(RunEvent(
            eventType=RunState.COMPLETE, eventTime=node["at"], producer=PRODUCER,
            run=Run(runId=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{node['pipeline_version']}/{data['sha256']}"))),
            job=Job(namespace=NAMESPACE, name=f"retrain/{node['pipeline']}"),
            inputs=inputs,
            outputs=[OutputDataset(namespace=NAMESPACE, name=f"package/{built['model']}/{built['version']}")],
        ))
    return [json.loads(Serde.to_json(event)) for event in events]


def lineage_command(
    image: str,
    store: Path | None = None,
    openlineage: Path | None = None,
    path: Path | None = None,
) -> list[dict[str, Any]]:
    nodes = lineage(image, trail.read(path), store)
    if openlineage is not None:
        with openlineage.open("w") as handle:
            for event in openlineage_events(nodes):
                handle.write(json.dumps(event, sort_keys=True) + "\n")
    return nodes
