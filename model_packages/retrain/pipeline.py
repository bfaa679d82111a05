"""A retraining pipeline: plain Python functions as steps, versioned and cached by content.

    pipeline = Pipeline("iris-classifier", params={"C": 1.0, "seed": 0})

    @pipeline.step
    def load(data):             # `data`: the file given to `kaizen retrain --data`
        ...
    @pipeline.step
    def train(load, C, seed):   # arguments name earlier steps (their outputs) or params
        ...

A step's cache key is the SHA-256 of its source code, the parameters it takes, the keys of the
steps it reads and (for `data`) the data file's hash. Re-running with unchanged inputs executes
no step; changing one parameter re-runs only the steps that depend on it. The pipeline's version
is the hash of every step's code, its parameters, the lock files and the base image.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from model_packages.errors import KaizenError
from model_packages.retrain import store

DATA = "data"
# values the runner gives, not steps or params (`version`: the package version to write, None for the
# champion's next patch version; see model_packages/retrain/steps.py package_candidate)
CONTEXT = ("data", "champion", "work_dir", "version")


class PipelineError(KaizenError):
    """A pipeline is malformed, or one of its steps failed."""


@dataclass(frozen=True)
class Step:
    name: str
    fn: Callable[..., Any]
    inputs: tuple[str, ...]

    @property
    def source_hash(self) -> str:
        return hashlib.sha256(inspect.getsource(self.fn).encode()).hexdigest()


@dataclass
class RunResult:
    outputs: dict[str, Any]
    keys: dict[str, str]
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    version: str = ""
    nodes: dict[str, str] = field(default_factory=dict)  # step -> node that ran it (Ray backend)


class Backend(Protocol):
    """Runs one step elsewhere: `inputs` maps each argument to ("step", cached output directory) or
    ("value", a parameter or context value); the step's output is saved with `store.save` into
    `staging`. Returns the name of the node that ran it."""

    def run_step(self, pipeline: Pipeline, step: Step, inputs: dict[str, tuple[str, Any]], staging: Path) -> str: ...


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _lock_and_base() -> str:
    from model_packages.image.base import RUNTIME_BASE

    locks = Path(__file__).resolve().parents[1] / "image" / "locks"
    digest = hashlib.sha256(RUNTIME_BASE.encode())
    for lock in sorted(locks.glob("*.txt")):
        digest.update(lock.name.encode() + lock.read_bytes())
    return digest.hexdigest()


class Pipeline:
    def __init__(self, name: str, params: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.params = dict(params or {})
        self.steps: list[Step] = []
        self.source_file: Path | None = None  # set by load_pipeline; a remote backend loads it there

    def step(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Register `fn` as the next step; its argument names say what it reads."""
        inputs = tuple(inspect.signature(fn).parameters)
        known = {s.name for s in self.steps} | set(self.params) | set(CONTEXT)
        unknown = [i for i in inputs if i not in known]
        if unknown:
            raise PipelineError(f"step {fn.__name__}: {', '.join(unknown)} is neither an earlier step, "
                                f"a parameter ({', '.join(self.params) or 'none'}) nor one of {', '.join(CONTEXT)}")
        if fn.__name__ in known:
            raise PipelineError(f"step {fn.__name__}: the name is already a step, a parameter or {CONTEXT}")
        self.steps.append(Step(fn.__name__, fn, inputs))
        return fn

    def version(self, params: Mapping[str, Any] | None = None) -> str:
        merged = {**self.params, **(params or {})}
        digest = hashlib.sha256(json.dumps(merged, sort_keys=True, default=str).encode())
        for step in self.steps:
            digest.update(step.name.encode() + step.source_hash.encode())
        digest.update(_lock_and_base().encode())
        return digest.hexdigest()

    def run(self, data: Path, *, cache_dir: Path, params: Mapping[str, Any] | None = None,
            context: Mapping[str, Any] | None = None, until: str | None = None,
            backend: Backend | None = None) -> RunResult:
        """Run every step in order (up to `until`), reusing cached outputs whose key is unchanged.
        Steps run in this process, or on `backend` (same keys, same cache, same outputs)."""
        unknown = set(params or {}) - set(self.params)
        if unknown:
            raise PipelineError(f"unknown pipeline parameter {', '.join(sorted(unknown))} "
                                f"(the pipeline has {', '.join(self.params) or 'none'})")
        merged = {**self.params, **(params or {})}
        if not data.is_file():
            raise PipelineError(f"data file {data} does not exist")
        context = {"version": None, **(context or {})}
        values: dict[str, Any] = {DATA: data, **context}
        # Where a step writes is not what it computes: `work_dir` is left out of the keys.
        context_keys = {DATA: sha256_file(data)} | {k: _context_key(v) for k, v in context.items()
                                                      if k != "work_dir"}
        result = RunResult({}, {}, version=self.version(params))
        for step in self.steps:
            key_parts = {"step": step.name, "code": step.source_hash, "inputs": {}}
            for name in step.inputs:
                if name in result.keys:
                    key_parts["inputs"][name] = result.keys[name]
                elif name in merged:
                    key_parts["inputs"][name] = json.dumps(merged[name], sort_keys=True, default=str)
                else:
                    key_parts["inputs"][name] = context_keys.get(name, "")
            key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()
            result.keys[step.name] = key
            where = cache_dir / self.name / step.name / key
            if where.is_dir():
                result.outputs[step.name] = store.load(where)
                result.cached.append(step.name)
            else:
                staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=_mkdir(where.parent)))
                shutil.rmtree(staging)
                if backend is None:
                    kwargs = {n: result.outputs[n] if n in result.outputs else merged.get(n, values.get(n))
                              for n in step.inputs}
                    store.save(call_step(step, kwargs), staging)
                else:
                    inputs = {n: ("step", str((cache_dir / self.name / n / result.keys[n]).resolve()))
                              if n in result.outputs else ("value", _absolute(merged.get(n, values.get(n))))
                              for n in step.inputs}
                    result.nodes[step.name] = backend.run_step(self, step, inputs, staging.resolve())
                staging.rename(where)
                result.outputs[step.name] = store.load(where)
                result.executed.append(step.name)
            if step.name == until:
                break
        return result


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _absolute(value: Any) -> Any:
    """A path as the same file seen from another working directory (a remote worker's)."""
    return value.resolve() if isinstance(value, Path) else value


def _context_key(value: Any) -> str:
    if isinstance(value, Path) and value.is_dir() and (value / "kaizen.yaml").is_file():
        return sha256_file(value / "kaizen.yaml")
    return json.dumps(value, sort_keys=True, default=str)


def call_step(step: Step, kwargs: dict[str, Any]) -> Any:
    try:
        return step.fn(**kwargs)
    except KaizenError:
        raise
    except Exception as err:
        raise PipelineError(f"step {step.name} failed: {type(err).__name__}: {err}") from err


def load_pipeline(path: Path) -> Pipeline:
    """The `pipeline` object defined in the Python file `path`."""
    spec = importlib.util.spec_from_file_location(f"kaizen_pipeline_{path.stem}", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise PipelineError(f"{path} is not a pipeline file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pipeline = getattr(module, "pipeline", None)
    if not isinstance(pipeline, Pipeline):
        raise PipelineError(f"{path} defines no `pipeline = Pipeline(...)`")
    pipeline.source_file = path.resolve()
    return pipeline
