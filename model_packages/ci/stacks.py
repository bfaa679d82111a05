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
from model_packages.image.refs import is_digest_ref

TARGETS = ("local", "aws", "azure", "gcp")


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


KMS_PROVIDERS = ("awskms://", "azurekeyvault://", "gcpkms://", "hashivault://")


def check_backend(env: dict[str, str] | None = None, home: Path | None = None) -> str:
    """Refuse, naming the fix, a backend the workflows cannot use without a stored secret; the kind
    of backend otherwise. Pulumi Cloud (`$PULUMI_BACKEND_URL` empty or https://) needs an access
    token (`pulumi/auth-actions` exchanges the job's OIDC token for one; locally, `pulumi login`);
    `azblob://` needs the storage account; a bucket backend needs a KMS secrets provider, since a
    passphrase would be a stored secret. `file://` (a runner's throwaway state) may use a passphrase."""
    env = dict(os.environ) if env is None else env
    url = env.get("PULUMI_BACKEND_URL", "").strip()
    provider = env.get("PULUMI_SECRETS_PROVIDER", "").strip()
    if not url or url.startswith(("https://", "http://")):
        logged_in = ((home or Path.home()) / ".pulumi" / "credentials.json").is_file()
        if not env.get("PULUMI_ACCESS_TOKEN") and (env.get("GITHUB_ACTIONS") == "true" or not logged_in):
            raise StackError(
                f"the Pulumi Cloud backend ({url or 'PULUMI_BACKEND_URL is empty'}) needs PULUMI_ACCESS_TOKEN: in "
                "GitHub Actions the workflows get one by OIDC with pulumi/auth-actions (set the repository "
                "variable PULUMI_ORG and register GitHub as an OIDC issuer of that organization); no stored token")
        if provider == "passphrase":
            raise StackError("PULUMI_SECRETS_PROVIDER=passphrase needs PULUMI_CONFIG_PASSPHRASE, a stored secret: "
                             "leave it empty (Pulumi Cloud encrypts) or use a KMS provider")
        return "cloud"
    scheme = url.split("://", 1)[0]
    if scheme not in ("file", "s3", "gs", "azblob"):
        raise StackError(f"PULUMI_BACKEND_URL {url!r}: not Pulumi Cloud (https://) or file://, s3://, gs://, azblob://")
    if scheme == "azblob" and not env.get("AZURE_STORAGE_ACCOUNT") and "storage_account=" not in url:
        raise StackError(f"the backend {url} needs the storage account: set AZURE_STORAGE_ACCOUNT (the workflows "
                         "pass the repository variable AZURE_STORAGE_ACCOUNT) or add ?storage_account=NAME")
    if scheme != "file" and not provider.startswith(KMS_PROVIDERS):
        raise StackError(
            f"the bucket backend {url} would encrypt stack secrets with a passphrase "
            f"({'PULUMI_SECRETS_PROVIDER is empty' if not provider else f'PULUMI_SECRETS_PROVIDER={provider}'}), "
            "which CI could only get from a stored secret: set PULUMI_SECRETS_PROVIDER to a KMS key "
            "(awskms://, azurekeyvault://, gcpkms:// or hashivault://)")
    return scheme


def _engine_env() -> dict[str, str]:
    return {"PULUMI_SKIP_UPDATE_CHECK": "true", "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true"}


def check_digest_ref(image: str) -> str:
    if not is_digest_ref(image):
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


def _preview(stack: auto.Stack, project: Project, summary: Path) -> None:
    """`pulumi preview` of the stack as it will be updated; its text (what the comment shows) to `summary`."""
    try:
        result = stack.preview(on_output=project.echo, color="never", message="kaizen: preview")
    except auto.CommandError as err:
        raise StackError(f"`pulumi preview` of {stack.name} failed:\n{str(err)[-3000:]}") from None
    summary.write_text(result.stdout.strip() + "\n")


def outputs_of(project: Project, stack_name: str) -> dict[str, Any]:
    return _outputs(project.select(stack_name))


# ---- one stack per model package ------------------------------------------------------------------
def package_slug(package: str | Path) -> str:
    """The part of a stack name that names a model package: its repository path, lower-case, with
    every run of other characters as one `-` (`models/Iris_v2` -> `models-iris-v2`)."""
    path = Path(package)
    text = path.name if path.is_absolute() else path.as_posix()
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40].strip("-")
    if not slug:
        raise StackError(f"package {str(package)!r} gives no stack name")
    return slug


def package_stack(project: Project, stack_name: str, package: str) -> str:
    """`<stack>-<package slug>`: the stack of `package` in a multi-package repository. Its config file
    is written, once, from the shared `stacks/Pulumi.<stack>.yaml` with `kaizen:model` set to the
    package's manifest, so one file per cloud and environment serves every package."""
    from model_packages.manifest import read_manifest

    name = f"{stack_name}-{package_slug(package)}"
    out, shared = project.config_file(name), project.config_file(stack_name)
    if not out.exists() and shared.is_file():
        doc = yaml.safe_load(shared.read_text()) or {}
        manifest = read_manifest(project.directory / package)
        doc.setdefault("config", {})["kaizen:model"] = {"name": manifest.name, "version": manifest.version}
        out.write_text(f"# written by `kaizen ci` from {shared.name} for {package}\n"
                       + yaml.safe_dump(doc, sort_keys=False))
    return name


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
def preview_stack_name(target: str, pr: int, package: str | None = None) -> str:
    """`pr-N` (local) or `<cloud>-pr-N`; with a package, `...-pr-N-<package slug>` (one stack per
    changed package of the pull request)."""
    if target not in TARGETS:
        raise StackError(f"target {target!r} is not one of {', '.join(TARGETS)}")
    name = f"pr-{pr}" if target == "local" else f"{target}-pr-{pr}"
    return f"{name}-{package_slug(package)}" if package else name


def local_preview_ports(pr: int, package: str | None = None) -> dict[str, int]:
    """Ports of the local pr-N: base = 20000 + (N [+ crc32 of the package slug] mod 400) * 10, so
    previews (and the packages of one pull request) run side by side."""
    import zlib

    shift = zlib.crc32(package_slug(package).encode()) if package else 0
    base = 20000 + ((pr + shift) % 400) * 10
    return {"REGISTRY_PORT": base + 1, "ENDPOINT_PORT": base + 2, "BACKEND_PORT_A": base + 3,
            "BACKEND_PORT_B": base + 4, "PROMETHEUS_PORT": base + 5}


def write_preview_config(project: Project, target: str, pr: int, *, image: str | None = None,
                         package: str | None = None) -> Path:
    """stacks/Pulumi.<stack>.yaml from stacks/templates/Pulumi.pr.<target>.yaml (kept when present)."""
    stack = preview_stack_name(target, pr, package)
    out = project.config_file(stack)
    if out.exists():
        return out
    template = project.config_dir / "templates" / f"Pulumi.pr.{target}.yaml"
    if not template.is_file():
        raise StackError(f"no preview template {template}")
    text = template.read_text()
    if target == "local":
        for key, port in local_preview_ports(pr, package).items():
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
               package: str | None = None, summary: Path | None = None,
               preview_summary: Path | None = None) -> dict[str, Any]:
    """Create or update the preview stack of pull request `pr` and `pulumi up` it; with
    `preview_summary`, `pulumi preview` it first and write what the preview says there."""
    stack_name = preview_stack_name(target, pr, package)
    write_preview_config(project, target, pr, image=image, package=package)
    stack = project.select(stack_name, create=True)
    if image is not None:
        stack.set_config("kaizen:image", auto.ConfigValue(check_digest_ref(image)))
    if preview_summary is not None:
        _preview(stack, project, preview_summary)
    outputs = _up(stack, project, f"kaizen: preview of pull request {pr}", summary)
    trail.append("preview_up", stack=stack_name, image=str(outputs.get("image", image or "")), **_who())
    return outputs


def preview_stacks(project: Project, target: str, pr: int) -> list[str]:
    """The preview stacks of pull request `pr` on `target`: pr-N and every pr-N-<package>."""
    base = preview_stack_name(target, pr)
    return sorted(n for n in project.stack_names() if n == base or n.startswith(f"{base}-"))


def preview_destroy(project: Project, target: str, pr: int, package: str | None = None) -> list[str]:
    """Destroy and remove the preview stack of `package` in pull request `pr` (without a package:
    every preview stack of the pull request) and its config file. Idempotent: the stacks destroyed."""
    names = [preview_stack_name(target, pr, package)] if package else preview_stacks(project, target, pr)
    existing = project.stack_names()
    destroyed = []
    for stack_name in names:
        if stack_name in existing:
            stack = project.select(stack_name)
            try:
                stack.destroy(on_output=project.echo, color="never", message=f"kaizen: pull request {pr} closed")
            except auto.CommandError as err:
                raise StackError(f"`pulumi destroy` of {stack_name} failed:\n{str(err)[-3000:]}") from None
            project.workspace().remove_stack(stack_name)
            trail.append("preview_destroy", stack=stack_name, **_who())
            destroyed.append(stack_name)
        project.config_file(stack_name).unlink(missing_ok=True)
    if not package:
        base = preview_stack_name(target, pr)
        for leftover in project.config_dir.glob(f"Pulumi.{base}-*.yaml"):
            leftover.unlink()
    return destroyed


def preview_numbers(project: Project, target: str) -> list[int]:
    """Pull-request numbers that have a preview stack on `target`."""
    prefix = re.escape(preview_stack_name(target, 0)[:-1])
    found = (re.match(rf"^{prefix}(\d+)(?:-[a-z0-9-]+)?$", name) for name in project.stack_names())
    return sorted({int(m.group(1)) for m in found if m})


def cleanup(project: Project, target: str, open_prs: Iterable[int]) -> list[int]:
    """Destroy the preview stacks whose pull request is no longer open; the numbers destroyed."""
    keep = set(open_prs)
    stale = [n for n in preview_numbers(project, target) if n not in keep]
    for number in stale:
        preview_destroy(project, target, number)
    return stale
