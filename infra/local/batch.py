"""The local target's batch job: the model image run once as a container over mounted directories.

`LocalBatchJob` declares one `BatchRun` (a dynamic resource): its create runs
`IMAGE batch /data/in/<file>... --out /data/out/<run>` with the input directory mounted read-only and
the output directory read-write, waits for it, and records rows, rejects and rows/s as outputs (and
in the audit trail). A changed input file (size or mtime), image or setting runs it again; the
output of each run is kept under its own name, so an interrupted `pulumi up` resumes the same run.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pulumi
from pulumi.dynamic import CreateResult, ReadResult, Resource

from ..batch_config import BatchSettings
from . import docker_ops as ops
from .providers import _Base, inputs_hash

IN, OUT = "/data/in", "/data/out"


def fingerprint(input_dir: str, names: list[str]) -> str:
    """Size and mtime of each input: a changed file runs the job again."""
    h = hashlib.sha256()
    for name in names:
        stat = (Path(input_dir) / name).stat()
        h.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()


class BatchRunProvider(_Base):
    KEYS: ClassVar[list[str]] = ["scope", "image", "input_dir", "output_dir", "inputs", "fingerprint",
                                 "chunk_rows", "probabilities", "timeout_minutes"]

    def create(self, props: dict[str, Any]) -> CreateResult:
        run = f"run-{inputs_hash(props, self.KEYS)[:12]}"
        out_dir = Path(props["output_dir"]) / run
        out_dir.mkdir(parents=True, exist_ok=True)
        out_dir.chmod(0o777)  # the image runs as a non-root user
        command = ["batch", *(f"{IN}/{n}" for n in props["inputs"]), "--out", f"{OUT}/{run}",
                   "--chunk-rows", str(int(props["chunk_rows"]))]
        if props.get("probabilities"):
            command.append("--probabilities")
        c = ops.client()
        name = f"{props['scope']}-batch-{run[4:]}"
        ops.remove_container(name, stop_timeout=5)
        container = c.containers.run(
            props["image"], command=command, name=name, network_mode="host", read_only=True,
            tmpfs={"/tmp": "rw,size=64m"}, detach=True,
            labels={ops.LABEL_SCOPE: props["scope"], ops.LABEL_ROLE: "batch"},
            volumes={props["input_dir"]: {"bind": IN, "mode": "ro"}, props["output_dir"]: {"bind": OUT, "mode": "rw"}},
        )
        try:
            code = int(container.wait(timeout=float(props["timeout_minutes"]) * 60)["StatusCode"])
            logs = container.logs().decode(errors="replace")
        finally:
            container.remove(force=True)
        lines = [json.loads(x) for x in logs.splitlines() if x.startswith("{")]
        if code != 0 or not lines or lines[-1].get("event") != "batch_done":
            tail = "\n".join(logs.splitlines()[-10:])
            raise ops.LocalResourceError(f"batch job {name} failed (exit {code}):\n{tail}")
        done = lines[-1]
        outputs = {**props, "run": run, "output_path": str(out_dir), "rows": done["rows"],
                   "rejects": done["rejects"], "rows_per_second": done["rows_per_second"]}
        _audit(outputs, done)
        return CreateResult(f"{props['scope']}-{run}", outputs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        manifest = Path(props.get("output_path", "")) / "manifest.json"
        return ReadResult(id_, props) if manifest.is_file() else ReadResult("", {})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """The scores stay on disk (they are the job's product); nothing else outlives a run."""


def _audit(outputs: dict[str, Any], done: dict[str, Any]) -> None:
    if os.environ.get("KAIZEN_AUDIT", "1") == "0":
        return
    from model_packages.audit import trail

    trail.append("batch_run", target="local", image=outputs["image"], model=done.get("model", ""),
                 version=done.get("version", ""), inputs=outputs["inputs"], out=outputs["output_path"],
                 rows=outputs["rows"], rejects=outputs["rejects"], rows_per_second=outputs["rows_per_second"])


class BatchRun(Resource, module="kaizen-local", name="BatchRun"):
    rows: pulumi.Output[int]
    rejects: pulumi.Output[int]
    rows_per_second: pulumi.Output[float]
    output_path: pulumi.Output[str]


@dataclass
class LocalBatchJobArgs:
    scope: str
    image: pulumi.Input[str]
    settings: BatchSettings


class LocalBatchJob(pulumi.ComponentResource):
    """The model image as a one-shot job over the stack's `kaizen:local.batch` directories."""

    def __init__(self, name: str, args: LocalBatchJobArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kaizen:local:BatchJob", name, None, opts)
        s = args.settings
        run = BatchRun(
            BatchRunProvider(),
            f"{name}-run",
            {
                "scope": args.scope, "image": args.image, "input_dir": s.input, "output_dir": s.output,
                "inputs": list(s.inputs), "fingerprint": fingerprint(s.input, list(s.inputs)),
                "chunk_rows": s.chunk_rows, "probabilities": s.probabilities, "timeout_minutes": s.timeout_minutes,
                "rows": None, "rejects": None, "rows_per_second": None, "output_path": None,
            },
            pulumi.ResourceOptions(parent=self),
        )
        self.rows, self.rejects, self.rows_per_second = run.rows, run.rejects, run.rows_per_second
        self.output_path = run.output_path
        self.register_outputs({"rows": run.rows, "rejects": run.rejects, "rows_per_second": run.rows_per_second,
                               "output_path": run.output_path})
