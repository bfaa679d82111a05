"""Run pipeline steps as Ray tasks on a running cluster (`kaizen retrain --backend ray`).

Each step is one task, spread over the cluster's nodes. The task loads the pipeline file itself,
checks that the step's code is the code the run was keyed on, reads its inputs from the step cache
and writes its output there with the same safe store (never pickle): the cache directory and the
data must be on a file system every node sees (one machine, or shared storage). Keys, cache hits
and outputs are those of the in-process run. Ray is imported only when this backend is chosen.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from pathlib import Path
from types import TracebackType
from typing import Any

from model_packages.errors import KaizenError
from model_packages.retrain.pipeline import Pipeline, PipelineError, Step

# Ray replaces a 127.0.0.1 node address by the machine's outward address, and then listens on all
# interfaces, unless multi-node support is switched off; a loopback cluster keeps it off.
_LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# What a step reads from the driver's environment to make its artifact reproducible (model_packages/reproducible.py).
CARRIED_ENV = ("SOURCE_DATE_EPOCH", "KAIZEN_CODE_REVISION")


def _run_step(pipeline_file: str, step_name: str, code: str, inputs: dict[str, tuple[str, Any]],
              staging: str, env: dict[str, str | None]) -> str:
    """The body of a step's Ray task; returns the id of the node that ran it."""
    import ray

    from model_packages.reproducible import pinned_env
    from model_packages.retrain import store
    from model_packages.retrain.pipeline import call_step, load_pipeline

    pipeline = load_pipeline(Path(pipeline_file))
    step = next((s for s in pipeline.steps if s.name == step_name), None)
    if step is None or step.source_hash != code:
        raise PipelineError(f"step {step_name} of {pipeline_file} changed while the run was going on")
    kwargs = {name: store.load(Path(value)) if kind == "step" else value for name, (kind, value) in inputs.items()}
    unset = [k for k, v in env.items() if v is None]
    with pinned_env(**{k: v for k, v in env.items() if v is not None}, **dict.fromkeys(unset, "")):
        for key in unset:  # unset on the driver: unset here too
            os.environ.pop(key, None)
        store.save(call_step(step, kwargs), Path(staging))
    return ray.get_runtime_context().get_node_id()


def _host(address: str) -> str:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise KaizenError(f"--ray-address {address!r} is not HOST:PORT of a Ray cluster's head (GCS)")
    return host


class RayBackend:
    """`with RayBackend("127.0.0.1:6379") as backend: pipeline.run(..., backend=backend)`."""

    def __init__(self, address: str | None = None) -> None:
        address = address or os.environ.get("RAY_ADDRESS")
        if not address:
            raise KaizenError("the ray backend needs the cluster's address: give --ray-address HOST:PORT "
                              "or set RAY_ADDRESS")
        self.address = address
        self.host = _host(address)
        self._remote: Any = None

    def __enter__(self) -> RayBackend:
        try:
            loopback = ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            loopback = self.host == "localhost"
        if loopback:
            os.environ.setdefault(_LOOPBACK_ONLY, "0")
        try:
            import ray
            from ray._private import ray_constants
        except ImportError:
            raise KaizenError("the ray backend needs Ray: pip install 'kaizen-ml[ray]'") from None
        if loopback:  # Ray was imported before the variable was set: the same switch, in this driver
            ray_constants.ENABLE_RAY_CLUSTER = False
        root = str(Path(__file__).resolve().parents[2])  # workers import this same Kaizen
        pythonpath = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        try:
            ray.init(address=self.address, _node_ip_address="127.0.0.1" if loopback else None,
                     runtime_env={"env_vars": {"PYTHONPATH": pythonpath}}, logging_level=logging.WARNING,
                     log_to_driver=False, include_dashboard=False)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise KaizenError(f"cannot reach the Ray cluster at {self.address}: {err}") from None
        self._remote = ray.remote(num_cpus=1, max_retries=0, scheduling_strategy="SPREAD")(_run_step)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        import ray

        ray.shutdown()

    def run_step(self, pipeline: Pipeline, step: Step, inputs: dict[str, tuple[str, Any]], staging: Path) -> str:
        import ray
        from ray.exceptions import RayTaskError

        if pipeline.source_file is None:
            raise PipelineError(f"pipeline {pipeline.name} was not loaded from a file: the ray backend "
                                "runs pipelines given as a file (load_pipeline)")
        if self._remote is None:
            raise PipelineError("the ray backend is used outside `with RayBackend(...)`")
        ref = self._remote.remote(str(pipeline.source_file), step.name, step.source_hash, inputs, str(staging),
                                  {k: os.environ.get(k) for k in CARRIED_ENV})
        try:
            return str(ray.get(ref))
        except RayTaskError as err:
            cause = err.cause
            if isinstance(cause, KaizenError):
                raise cause from None
            raise PipelineError(f"step {step.name} failed on Ray: {type(cause).__name__}: {cause}") from None
