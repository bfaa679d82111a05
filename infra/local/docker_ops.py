"""Docker operations behind the local dynamic providers (docker-py, host networking only).

Every container, volume and image created here carries the labels ``kaizen.scope`` (project and
stack) and ``kaizen.role``, so ``leftovers(scope)`` finds anything of a stack and the e2e tests can
check that ``pulumi destroy`` left nothing behind.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

LABEL_SCOPE = "kaizen.scope"
LABEL_ROLE = "kaizen.role"
LABEL_PORT = "kaizen.port"
LABEL_INPUTS = "kaizen.inputs-hash"


class LocalResourceError(Exception):
    """A local resource could not be created, updated or deleted."""


def client() -> Any:
    import docker

    return docker.from_env(timeout=600)


def _not_found() -> type[Exception]:
    import docker.errors

    return docker.errors.NotFound


def get_container(name_or_id: str) -> Any | None:
    try:
        return client().containers.get(name_or_id)
    except _not_found():
        return None


def remove_container(name_or_id: str, *, stop_timeout: int = 30) -> None:
    """Stop (SIGTERM, then SIGKILL after `stop_timeout` s) and remove; absent is fine."""
    container = get_container(name_or_id)
    if container is None:
        return
    # No restart by Docker while we stop it on purpose.
    with contextlib.suppress(Exception):
        container.update(restart_policy={"Name": "no"})
    try:
        if container.status in ("running", "restarting"):
            container.stop(timeout=stop_timeout)
    except _not_found():
        return
    try:
        container.remove(force=True, v=True)
    except _not_found():
        return


def remove_volume(name: str) -> None:
    try:
        client().volumes.get(name).remove(force=True)
    except _not_found():
        return


def remove_image(ref: str) -> None:
    import docker.errors

    try:
        client().images.remove(ref, force=True, noprune=False)
    except (docker.errors.NotFound, docker.errors.ImageNotFound):
        return
    except docker.errors.APIError as exc:  # still used by a container we do not own: keep it
        if exc.status_code != 409:
            raise


def files_tar(files: Mapping[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, content in sorted(files.items()):
            data = content.encode()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def http_get(url: str, *, timeout: float = 2.0, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def http_post_json(
    url: str, doc: Any, *, timeout: float = 10.0, headers: Mapping[str, str] | None = None
) -> tuple[int, Any]:
    data = json.dumps(doc).encode()
    req = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={"content-type": "application/json", **dict(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return int(exc.code), json.loads(body)
        except ValueError:
            return int(exc.code), body.decode(errors="replace")


def logs_tail(container: Any, lines: int = 30) -> str:
    try:
        return container.logs(tail=lines).decode(errors="replace")
    except Exception:
        return "(no logs)"


def wait_ready(container: Any, url: str, *, timeout: float) -> None:
    """Wait until GET `url` answers 200; fail early, with the logs, if the container exits."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            code, _ = http_get(url, timeout=2)
            if code == 200:
                return
            last = f"HTTP {code}"
        except OSError as exc:
            last = str(exc)
        container.reload()
        restarts = int(container.attrs.get("RestartCount") or 0)
        if container.status in ("exited", "dead") or restarts >= 3:
            raise LocalResourceError(
                f"container {container.name} exited before {url} was ready "
                f"(exit code {container.attrs['State'].get('ExitCode')}, {restarts} restarts):\n"
                f"{logs_tail(container)}"
            )
        time.sleep(0.1)
    raise LocalResourceError(
        f"{url} not ready after {timeout:.0f}s ({last}); logs of {container.name}:\n{logs_tail(container)}"
    )


def run_container(
    *,
    name: str,
    image: str,
    command: Sequence[str] | None,
    scope: str,
    role: str,
    env: Mapping[str, str] | None = None,
    files: Mapping[str, str] | None = None,
    volumes: Mapping[str, str] | None = None,
    binds: Mapping[str, str] | None = None,
    restart_policy: str = "unless-stopped",
    labels: Mapping[str, str] | None = None,
    init: bool = True,
) -> Any:
    """Create (replacing a leftover of the same name), copy `files` in, and start a container."""
    remove_container(name, stop_timeout=5)
    c = client()
    all_labels = {LABEL_SCOPE: scope, LABEL_ROLE: role, **dict(labels or {})}
    mounts = {}
    for vol, path in (volumes or {}).items():
        try:
            c.volumes.get(vol)
        except _not_found():
            c.volumes.create(name=vol, labels=all_labels)
        mounts[vol] = {"bind": path, "mode": "rw"}
    for host, path in (binds or {}).items():  # host directories (absolute paths), read-write
        mounts[host] = {"bind": path, "mode": "rw"}
    policy: dict[str, Any] = {"Name": restart_policy}
    if restart_policy == "on-failure":
        policy["MaximumRetryCount"] = 10
    container = c.containers.create(
        image,
        command=list(command) if command is not None else None,
        name=name,
        environment=dict(env or {}),
        network_mode="host",
        restart_policy=policy,
        labels=all_labels,
        volumes=mounts,
        init=init,
        detach=True,
    )
    if files:
        container.put_archive("/", files_tar(files))
    container.start()
    container.reload()
    return container


def run_once(
    image: str,
    command: Sequence[str],
    files: Mapping[str, str] | None = None,
    *,
    timeout: float = 60,
) -> tuple[int, str]:
    """Run a throwaway container (files copied in first); returns (exit code, output)."""
    c = client()
    container = c.containers.create(image, command=list(command), network_mode="host", detach=True)
    try:
        if files:
            container.put_archive("/", files_tar(files))
        container.start()
        result = container.wait(timeout=timeout)
        out = container.logs().decode(errors="replace")
        return int(result.get("StatusCode", 1)), out
    finally:
        container.remove(force=True)


def leftovers(scope: str) -> dict[str, list[str]]:
    """Containers, volumes and `kaizen-local/*` images still labelled with `scope`."""
    c = client()
    flt = {"label": f"{LABEL_SCOPE}={scope}"}
    return {
        "containers": [x.name for x in c.containers.list(all=True, filters=flt)],
        "volumes": [v.name for v in c.volumes.list(filters=flt)],
        "images": [t for i in c.images.list(filters=flt) for t in (i.tags or [i.id])],
    }


def purge(scope: str) -> dict[str, list[str]]:
    """Last resort (tests, a lost state): remove everything labelled with `scope`."""
    found = leftovers(scope)
    for name in found["containers"]:
        remove_container(name, stop_timeout=5)
    for name in found["volumes"]:
        remove_volume(name)
    for ref in found["images"]:
        remove_image(ref)
    return found
