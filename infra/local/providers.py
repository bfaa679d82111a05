"""Pulumi dynamic providers of the local target: real containers, volumes and images.

Each provider does create/diff/update/delete/read properly:
- ``diff`` compares the inputs recorded in the state with the new ones, so an unchanged stack is
  a no-op, and says which changes replace and which update in place;
- ``create`` is idempotent across an interrupted ``pulumi up``: names are deterministic and a
  leftover of the same name (created, but never recorded in the state) is replaced;
- ``delete`` removes the container, its volumes and images, and treats "already gone" as done;
- ``read`` (``pulumi refresh``) reports a resource that vanished as gone.

These classes are pickled by reference into the state, so the provider process imports this
module: keep it importable from the project root (the ``infra`` package).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

from pulumi.dynamic import (
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

from model_packages.serving import contract

from ..common.local_config import CaptureSettings
from . import docker_ops as ops

IGNORED = {"__provider"}


def inputs_hash(props: dict[str, Any], keys: list[str] | None = None) -> str:
    chosen = {k: v for k, v in sorted(props.items()) if k not in IGNORED and (keys is None or k in keys)}
    return hashlib.sha256(json.dumps(chosen, sort_keys=True, default=str).encode()).hexdigest()


def changed_keys(olds: dict[str, Any], news: dict[str, Any], keys: list[str]) -> list[str]:
    return [k for k in keys if olds.get(k) != news.get(k)]


class _Base(ResourceProvider):
    serialize_as_secret_always = False
    # Input keys; a change of any of them replaces, unless listed in UPDATABLE.
    KEYS: ClassVar[list[str]] = []
    UPDATABLE: ClassVar[list[str]] = []
    DELETE_BEFORE_REPLACE = False

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changes = changed_keys(olds, news, self.KEYS)
        replaces = [k for k in changes if k not in self.UPDATABLE]
        return DiffResult(
            changes=bool(changes),
            replaces=replaces,
            stables=[k for k in self.KEYS if k not in changes],
            delete_before_replace=self.DELETE_BEFORE_REPLACE and bool(replaces),
        )


# ---- tools image --------------------------------------------------------------------------------
class ToolsImageProvider(_Base):
    """`kaizen-local/tools:<hash>`: the Debian registry, Prometheus, promtool and the proxy on top
    of the local runtime base image (their Debian binaries need bookworm's libc)."""

    KEYS: ClassVar[list[str]] = ["scope", "base", "binaries", "proxy_source", "tag"]

    def create(self, props: dict[str, Any]) -> CreateResult:
        from model_packages.image.base import ensure_bases
        from model_packages.image.settings import ImageSettings

        c = ops.client()
        base = props["base"]
        if base.startswith("kaizen-base/"):
            ensure_bases(c, kinds=("runtime",), log=lambda _m: None, settings=ImageSettings.from_env())
        with tempfile.TemporaryDirectory(prefix="kaizen-tools-") as tmp:
            ctx = Path(tmp)
            lines = [f"FROM {base}"]
            for name, src in sorted(props["binaries"].items()):
                shutil.copy2(src, ctx / name)
                lines.append(f"COPY {name} /usr/local/bin/{name}")
            (ctx / "proxy.py").write_text(props["proxy_source"])
            lines.append("COPY proxy.py /opt/kaizen/proxy.py")
            lines.append(f'LABEL {ops.LABEL_SCOPE}="{props["scope"]}" {ops.LABEL_ROLE}="tools"')
            (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")
            image, _ = c.images.build(path=str(ctx), tag=props["tag"], network_mode="host", rm=True, pull=False)
        return CreateResult(props["tag"], {**props, "image_id": image.id})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        import docker.errors

        try:
            image = ops.client().images.get(id_)
        except docker.errors.ImageNotFound:
            return ReadResult("", {})
        return ReadResult(id_, {**props, "image_id": image.id})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        ops.remove_image(id_)


# ---- long-running services (registry, Prometheus) -----------------------------------------------
class ServiceProvider(_Base):
    """A supervised container (Docker restarts it) with config files copied in and named volumes.

    Inputs: name, scope, role, image, command, env, files, volumes, ready_url, restart_policy,
    reload_url (files change -> copy in + POST reload_url instead of replacing), check (a command
    run in a throwaway container with the same files before anything starts, e.g. promtool).
    """

    KEYS: ClassVar[list[str]] = [
        "name",
        "scope",
        "role",
        "image",
        "command",
        "env",
        "files",
        "volumes",
        "ready_url",
        "restart_policy",
        "reload_url",
        "check",
    ]
    DELETE_BEFORE_REPLACE = True  # fixed loopback port: the old one must go first

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        result = super().diff(_id, olds, news)
        changes = changed_keys(olds, news, self.KEYS)
        if changes == ["files"] and news.get("reload_url"):
            return DiffResult(changes=True, replaces=[], stables=[k for k in self.KEYS if k != "files"])
        return result

    def _check(self, props: dict[str, Any]) -> None:
        if props.get("check"):
            code, out = ops.run_once(props["image"], props["check"], props.get("files"))
            if code != 0:
                raise ops.LocalResourceError(f"{props['role']}: `{' '.join(props['check'])}` failed:\n{out}")

    def create(self, props: dict[str, Any]) -> CreateResult:
        self._check(props)
        container = ops.run_container(
            name=props["name"],
            image=props["image"],
            command=props["command"],
            scope=props["scope"],
            role=props["role"],
            env=props.get("env"),
            files=props.get("files"),
            volumes=props.get("volumes"),
            restart_policy=props.get("restart_policy", "unless-stopped"),
        )
        try:
            ops.wait_ready(container, props["ready_url"], timeout=60)
        except Exception:
            self.delete(container.id, props)
            raise
        return CreateResult(container.id, {**props, "container_id": container.id})

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        self._check(news)
        container = ops.get_container(id_)
        if container is None:
            raise ops.LocalResourceError(f"container {olds['name']} is gone: run `pulumi refresh`")
        container.put_archive("/", ops.files_tar(news.get("files") or {}))
        code, body = ops.http_post_json(news["reload_url"], {})
        if code != 200:
            raise ops.LocalResourceError(f"reload of {news['name']} failed: HTTP {code} {body}")
        return UpdateResult({**news, "container_id": id_})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        container = ops.get_container(id_)
        if container is None:
            return ReadResult("", {})
        return ReadResult(id_, {**props, "container_id": id_})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        ops.remove_container(id_ or props["name"], stop_timeout=10)
        ops.remove_container(props["name"], stop_timeout=10)
        for vol in props.get("volumes") or {}:
            ops.remove_volume(vol)


# ---- model image --------------------------------------------------------------------------------
class ModelImageProvider(_Base):
    """Build the model package's image with the packaging module and push it to the local registry;
    the output `ref` is digest-pinned. A new package content (hash) builds and pushes again (an
    update: the digest changes, so the containers using it are replaced)."""

    KEYS: ClassVar[list[str]] = [
        "package_dir",
        "package_hash",
        "registry",
        "registry_id",
        "base",
        "scope",
    ]
    UPDATABLE: ClassVar[list[str]] = [
        "package_dir",
        "package_hash",
        "registry",
        "registry_id",
        "base",
    ]

    def _build_push(self, props: dict[str, Any]) -> dict[str, Any]:
        from . import images

        ref, local_tag = images.build_and_push(
            props["package_dir"], registry=props["registry"], base=props.get("base") or None
        )
        digest = ref.rsplit("@", 1)[1]
        return {**props, "ref": ref, "digest": digest, "local_tag": local_tag}

    def create(self, props: dict[str, Any]) -> CreateResult:
        outs = self._build_push(props)
        return CreateResult(outs["ref"], outs)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._build_push(news))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, props)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        # The registry's data goes with the registry; drop the pulled/pushed copies.
        ref = props.get("ref")
        if ref:
            repo = ref.split("@", 1)[0]
            for image in ops.client().images.list(name=repo):
                for tag in image.tags or []:
                    if tag.startswith(repo + ":"):
                        ops.remove_image(tag)
            ops.remove_image(ref)
        # The local build tag (kaizen/<name>:<version>) stays: it is the build cache of the next
        # `pulumi up` and may be shared with `kaizen build`.


# ---- model containers (blue/green backends) -----------------------------------------------------
def capture_directory(path: str) -> str:
    """Create the host capture directory, writable by the image's non-root user (uid 10001) only."""
    import os

    from model_packages.image.context import USER_ID

    os.makedirs(path, mode=0o750, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(path, USER_ID, USER_ID)
    elif not os.access(path, os.W_OK):
        raise ops.LocalResourceError(f"capture directory {path} is not writable")
    return path


class ModelContainerProvider(_Base):
    """One model container, by digest, on a free one of the two backend ports.

    Any input change replaces it, create-before-delete: the new container starts on the spare
    port and must be ready before the router switches to it; the old one is deleted last (SIGTERM:
    it drains its in-flight requests)."""

    KEYS: ClassVar[list[str]] = [
        "scope",
        "image",
        "ports",
        "env",
        "restart_policy",
        "ready_path",
        "model",
        "capture_dir",
    ]

    def create(self, props: dict[str, Any]) -> CreateResult:
        scope = props["scope"]
        digest = props["image"].rsplit("@", 1)[-1].split(":")[-1]
        name = f"{scope}-model-{digest[:12]}-{inputs_hash(props, self.KEYS)[:8]}"
        ops.remove_container(name, stop_timeout=5)  # leftover of an interrupted up
        c = ops.client()
        busy = {
            int(x.labels.get(ops.LABEL_PORT, "0"))
            for x in c.containers.list(all=True, filters={"label": f"{ops.LABEL_SCOPE}={scope}"})
        }
        candidates = [int(p) for p in props["ports"]]  # numbers arrive as floats
        port = next((p for p in candidates if p not in busy and ops.port_is_free(p)), None)
        if port is None:
            raise ops.LocalResourceError(
                f"no free backend port among {props['ports']} (both taken: a leftover container "
                f"of {scope}? see `docker ps -a --filter label={ops.LABEL_SCOPE}={scope}`)"
            )
        self._pull(props["image"])
        env = {**props.get("env", {}), contract.ENV_HOST: "127.0.0.1", contract.ENV_PORT: str(port)}
        binds = {}
        if props.get("capture_dir"):
            mount = env.get(contract.ENV_CAPTURE_DIR, CaptureSettings.CONTAINER_DIR)
            binds[capture_directory(props["capture_dir"])] = mount
        container = ops.run_container(
            name=name,
            image=props["image"],
            command=None,
            scope=scope,
            role="model",
            env=env,
            binds=binds,
            restart_policy=props.get("restart_policy", "unless-stopped"),
            labels={ops.LABEL_PORT: str(port)},
        )
        try:
            ops.wait_ready(
                container,
                f"http://127.0.0.1:{port}{props['ready_path']}",
                timeout=float(props.get("ready_timeout", 120)),
            )
        except Exception:
            ops.remove_container(container.id, stop_timeout=5)
            raise
        return CreateResult(container.id, {**props, "name": name, "port": port, "container_id": container.id})

    def _pull(self, image: str) -> None:
        import docker.errors

        c = ops.client()
        try:
            c.images.get(image)
        except docker.errors.ImageNotFound:
            c.images.pull(image)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        container = ops.get_container(id_)
        if container is None:
            return ReadResult("", {})
        return ReadResult(id_, props)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        ops.remove_container(id_, stop_timeout=30)
        if props.get("name"):
            ops.remove_container(props["name"], stop_timeout=30)


# ---- router (the endpoint's stable port) --------------------------------------------------------
class RouterProvider(_Base):
    """The loopback reverse proxy on the endpoint port. A new upstream port is an in-place update:
    the proxy checks that the new backend is ready, then switches; nothing restarts."""

    KEYS: ClassVar[list[str]] = [
        "name",
        "scope",
        "image",
        "port",
        "upstream_port",
        "ready_path",
        "restart_policy",
    ]
    UPDATABLE: ClassVar[list[str]] = ["upstream_port"]
    DELETE_BEFORE_REPLACE = True

    def _admin(self, port: int) -> str:
        return f"http://127.0.0.1:{port}/_kaizen/proxy"

    def create(self, props: dict[str, Any]) -> CreateResult:
        token = secrets.token_hex(16)
        port, upstream = int(props["port"]), int(props["upstream_port"])
        volume = f"{props['name']}-state"
        container = ops.run_container(
            name=props["name"],
            image=props["image"],
            command=[
                "python3",
                "/opt/kaizen/proxy.py",
                "--listen",
                f"127.0.0.1:{port}",
                "--upstream",
                f"127.0.0.1:{upstream}",
                "--state",
                "/data/upstream",
            ],
            scope=props["scope"],
            role="router",
            env={"KAIZEN_PROXY_TOKEN": token},
            volumes={volume: "/data"},
            restart_policy=props.get("restart_policy", "unless-stopped"),
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                code, _ = ops.http_get(self._admin(port), headers={"X-Kaizen-Proxy-Token": token})
                if code == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                logs = ops.logs_tail(container)
                ops.remove_container(container.id, stop_timeout=2)
                ops.remove_volume(volume)
                raise ops.LocalResourceError(f"router on port {port} did not start:\n{logs}")
            time.sleep(0.1)
        return CreateResult(container.id, {**props, "token": token, "volume": volume, "container_id": container.id})

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        code, body = ops.http_post_json(
            self._admin(int(news["port"])) + "/upstream",
            {
                "host": "127.0.0.1",
                "port": int(news["upstream_port"]),
                "ready_path": news["ready_path"],
            },
            headers={"X-Kaizen-Proxy-Token": olds["token"]},
            timeout=30,
        )
        if code != 200:
            raise ops.LocalResourceError(f"router switch to {news['upstream_port']} failed: HTTP {code} {body}")
        return UpdateResult({**news, "token": olds["token"], "volume": olds["volume"], "container_id": id_})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        if ops.get_container(id_) is None:
            return ReadResult("", {})
        outs = dict(props)
        try:  # the upstream the proxy really uses (an interrupted up may have switched it)
            code, body = ops.http_get(
                self._admin(int(props["port"])),
                headers={"X-Kaizen-Proxy-Token": props.get("token") or ""},
            )
            if code == 200:
                outs["upstream_port"] = int(json.loads(body)["port"])
        except (OSError, ValueError, KeyError):
            pass
        return ReadResult(id_, outs)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        ops.remove_container(id_, stop_timeout=15)
        ops.remove_container(props["name"], stop_timeout=15)
        ops.remove_volume(props.get("volume") or f"{props['name']}-state")
