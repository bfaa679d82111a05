"""Stack operations of continuous deployment, on the Pulumi Automation API.

Every operation works on the project at `project_dir` (its `Pulumi.yaml` sets `stackConfigDir`),
with the backend and secrets provider the environment gives (`PULUMI_BACKEND_URL`,
`PULUMI_CONFIG_PASSPHRASE` or a cloud KMS). Each deploy's update message names its image, so the
stack's history in the backend is the record rollbacks read; every operation is also appended to
the audit trail (:mod:`model_packages.audit.trail`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pulumi import automation as auto

from model_packages.audit import trail
from model_packages.errors import KaizenError

TARGETS = ("local", "aws", "azure", "gcp")
DIGEST_REF = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")


class StackError(KaizenError):
    """A stack operation failed or was asked for something impossible."""


@dataclass(frozen=True)
class Project:
    """A Pulumi project directory and how to report progress."""

    directory: Path
    echo: Callable[[str], None] = lambda _line: None

    @property
    def config_dir(self) -> Path:
        doc = yaml.safe_load((self.directory / "Pulumi.yaml").read_text()) or {}
        return self.directory / str(doc.get("stackConfigDir", "."))

    def config_file(self, stack: str) -> Path:
        return self.config_dir / f"Pulumi.{stack}.yaml"

    def workspace(self) -> auto.LocalWorkspace:
        return auto.LocalWorkspace(work_dir=str(self.directory), env_vars=_engine_env())

    def stack_names(self) -> set[str]:
        return {s.name.rsplit("/", 1)[-1] for s in self.workspace().list_stacks()}

    def select(self, stack: str, *, create: bool = False) -> auto.Stack:
        make = auto.create_or_select_stack if create else auto.select_stack
        # A new stack takes $PULUMI_SECRETS_PROVIDER (awskms://, azurekeyvault://, gcpkms://);
        # unset, the backend's default (Pulumi Cloud, or a passphrase for a bucket backend).
        secrets = os.environ.get("PULUMI_SECRETS_PROVIDER") or None
        try:
            return make(stack_name=stack, work_dir=str(self.directory), opts=auto.LocalWorkspaceOptions(
                work_dir=str(self.directory), env_vars=_engine_env(), secrets_provider=secrets))
        except auto.StackNotFoundError:
            raise StackError(f"stack {stack} does not exist") from None


def _engine_env() -> dict[str, str]:
    return {"PULUMI_SKIP_UPDATE_CHECK": "true", "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true"}


def check_digest_ref(image: str) -> str:
    if not DIGEST_REF.match(image):
        raise StackError(f"image {image!r} is not pinned by digest (REGISTRY/REPO@sha256:<64 hex>)")
    return image


def _outputs(stack: auto.Stack) -> dict[str, Any]:
    return {k: v.value for k, v in stack.outputs().items()}


def _up(stack: auto.Stack, project: Project, message: str, summary: Path | None = None) -> dict[str, Any]:
    try:
        result = stack.up(on_output=project.echo, message=message, color="never")
    except auto.CommandError as err:
        raise StackError(f"`pulumi up` of {stack.name} failed:\n{str(err)[-3000:]}") from None
    if summary is not None:
        changes = result.summary.resource_changes or {}
        summary.write_text(f"pulumi up of {stack.name}: {result.summary.result}\n" + "".join(
            f"    {count} {kind}\n" for kind, count in sorted(changes.items())))
    return _outputs(stack)


def outputs_of(project: Project, stack_name: str) -> dict[str, Any]:
    return _outputs(project.select(stack_name))


# ---- deploy by digest, rollback -------------------------------------------------------------------
def deploy(project: Project, stack_name: str, image: str, *, event: str = "deploy", **audit: Any) -> dict[str, Any]:
    """Set `kaizen:image` of `stack_name` to `image` (digest-pinned), `pulumi up`, record it. The stack
    must exist or have its config file (`stacks/Pulumi.<stack>.yaml`), so a typo creates nothing."""
    check_digest_ref(image)
    stack = project.select(stack_name, create=project.config_file(stack_name).is_file())
    stack.set_config("kaizen:image", auto.ConfigValue(image))
    outputs = _up(stack, project, f"kaizen: {event} {image}")
    trail.append(event, stack=stack_name, image=image, **_who(), **audit)
    return outputs


def promote(project: Project, source: str, target: str) -> tuple[str, dict[str, Any]]:
    """Deploy to `target` exactly the digest-pinned image `source` runs (its `image` output)."""
    image = outputs_of(project, source).get("image")
    if not isinstance(image, str):
        raise StackError(f"stack {source} exports no `image`: deploy it first")
    return image, deploy(project, target, image, event="deploy", promoted_from=source)


def deployed_images(project: Project, stack_name: str) -> list[str]:
    """Images `kaizen ci deploy`/`rollback` put on `stack_name`, oldest first, from the stack's own
    update history in the backend (the durable record every backend keeps; each such update's
    message names its image)."""
    stack = project.select(stack_name)
    images = []
    for update in reversed(stack.history()):
        match = _DEPLOY_MESSAGE.match(update.message or "")
        if update.kind == "update" and update.result == "succeeded" and match:
            images.append(match.group(1))
    return images


_DEPLOY_MESSAGE = re.compile(r"^kaizen: (?:deploy|rollback) (\S+@sha256:[0-9a-f]{64})$")


def rollback(project: Project, stack_name: str) -> tuple[str, dict[str, Any]]:
    """Redeploy the image deployed before the current one; the rollback is recorded too."""
    history = deployed_images(project, stack_name)
    if not history:
        raise StackError(f"{stack_name} has no deployment by `kaizen ci deploy` in its history")
    current = history[-1]
    previous = next((image for image in reversed(history) if image != current), None)
    if previous is None:
        raise StackError(f"{stack_name} has only ever run {current}: nothing to roll back to")
    return previous, deploy(project, stack_name, previous, event="rollback", replaced=current)


def _who() -> dict[str, str]:
    return {
        "actor": os.environ.get("GITHUB_ACTOR") or os.environ.get("USER") or "unknown",
        "commit": os.environ.get("GITHUB_SHA", ""),
        "run": os.environ.get("GITHUB_RUN_ID", ""),
    }


# ---- preview stacks pr-N ---------------------------------------------------------------------------
def preview_stack_name(target: str, pr: int) -> str:
    if target not in TARGETS:
        raise StackError(f"target {target!r} is not one of {', '.join(TARGETS)}")
    return f"pr-{pr}" if target == "local" else f"{target}-pr-{pr}"


def local_preview_ports(pr: int) -> dict[str, int]:
    """Ports of the local pr-N: base = 20000 + (N mod 400) * 10, so previews run side by side."""
    base = 20000 + (pr % 400) * 10
    return {"REGISTRY_PORT": base + 1, "ENDPOINT_PORT": base + 2, "BACKEND_PORT_A": base + 3,
            "BACKEND_PORT_B": base + 4, "PROMETHEUS_PORT": base + 5}


def write_preview_config(project: Project, target: str, pr: int, *, image: str | None = None,
                         package: str | None = None) -> Path:
    """stacks/Pulumi.<stack>.yaml from stacks/templates/Pulumi.pr.<target>.yaml (kept when present)."""
    stack = preview_stack_name(target, pr)
    out = project.config_file(stack)
    if out.exists():
        return out
    template = project.config_dir / "templates" / f"Pulumi.pr.{target}.yaml"
    if not template.is_file():
        raise StackError(f"no preview template {template}")
    text = template.read_text()
    if target == "local":
        for key, port in local_preview_ports(pr).items():
            text = text.replace(f"__{key}__", str(port))
    doc = yaml.safe_load(text)
    config = doc.setdefault("config", {})
    if image is not None:
        config["kaizen:image"] = check_digest_ref(image)
        if target == "local":
            config.get("kaizen:local", {}).pop("package", None)
    if package is not None and target == "local" and image is None:
        config.setdefault("kaizen:local", {})["package"] = package
    elif package is not None:
        from model_packages.manifest import read_manifest

        manifest = read_manifest(project.directory / package)
        config["kaizen:model"] = {"name": manifest.name, "version": manifest.version}
    out.write_text(f"# written by `kaizen ci preview up` from {template.name}\n" + yaml.safe_dump(doc, sort_keys=False))
    return out


def preview_up(project: Project, target: str, pr: int, *, image: str | None = None,
               package: str | None = None, summary: Path | None = None) -> dict[str, Any]:
    """Create or update the preview stack of pull request `pr` and `pulumi up` it."""
    stack_name = preview_stack_name(target, pr)
    write_preview_config(project, target, pr, image=image, package=package)
    stack = project.select(stack_name, create=True)
    if image is not None:
        stack.set_config("kaizen:image", auto.ConfigValue(check_digest_ref(image)))
    outputs = _up(stack, project, f"kaizen: preview of pull request {pr}", summary)
    trail.append("preview_up", stack=stack_name, image=str(outputs.get("image", image or "")), **_who())
    return outputs


def preview_destroy(project: Project, target: str, pr: int) -> bool:
    """Destroy and remove pr-N and its config file. Idempotent: True when there was a stack."""
    stack_name = preview_stack_name(target, pr)
    existed = stack_name in project.stack_names()
    if existed:
        stack = project.select(stack_name)
        try:
            stack.destroy(on_output=project.echo, color="never", message=f"kaizen: pull request {pr} closed")
        except auto.CommandError as err:
            raise StackError(f"`pulumi destroy` of {stack_name} failed:\n{str(err)[-3000:]}") from None
        project.workspace().remove_stack(stack_name)
        trail.append("preview_destroy", stack=stack_name, **_who())
    project.config_file(stack_name).unlink(missing_ok=True)
    return existed


def preview_numbers(project: Project, target: str) -> list[int]:
    """Pull-request numbers that have a preview stack on `target`."""
    prefix = preview_stack_name(target, 0)[:-1]
    return sorted(int(name[len(prefix):]) for name in project.stack_names()
                  if name.startswith(prefix) and name[len(prefix):].isdigit())


def cleanup(project: Project, target: str, open_prs: Iterable[int]) -> list[int]:
    """Destroy the preview stacks whose pull request is no longer open; the numbers destroyed."""
    keep = set(open_prs)
    stale = [n for n in preview_numbers(project, target) if n not in keep]
    for number in stale:
        preview_destroy(project, target, number)
    return stale
