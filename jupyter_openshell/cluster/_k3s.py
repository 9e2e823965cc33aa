"""A single-node K3s run in Docker through the `docker` SDK, for the Kubernetes backend on one machine.

`up()`: checks first (the engine answers; the pinned K3s image and the sandbox image are on this machine:
nothing is pulled unless `pull=True`), then a named volume for K3s's state and a privileged container
(K3s needs it: it runs containerd and the kubelet inside) with the API published on 127.0.0.1 only;
waits for the API and the node; writes the kubeconfig to `<state>/kubernetes/kubeconfig` (0600), where
the backend finds it; imports the sandbox image (`docker save` | `ctr images import`, no registry);
applies the project's manifests (`openshell k8s install`). Any failure after the first object was made
removes everything `up` made (container, volume, kubeconfig): nothing is left half-started. `down()`
removes the container, the kubeconfig and (unless kept) the volume. `status()` says what runs. It must
never publish the API beyond 127.0.0.1 and never start a cluster it could not finish setting up.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import paths
from ..runtime import SandboxError

K3S_IMAGE = "rancher/k3s:v1.31.4-k3s1"  # pinned: the Kubernetes minor the manifests are validated for
CONTAINER = "openshell-k3s"
VOLUME = "openshell-k3s-data"
LABEL = "org.jupyter-openshell.cluster"
READY_TIMEOUT = 180.0


def _docker() -> Any:
    from ..runtime.docker import _engine

    return _engine.client()


def _errors() -> Any:
    from ..runtime.docker import _engine

    return _engine.errors()


def kubeconfig_path() -> Path:
    layout = paths.layout()
    paths.ensure_private_dir(layout.kubernetes_dir)
    return layout.kubeconfig


def _missing_image(image: str, why: str) -> SandboxError:
    return SandboxError(
        f"the K3s image {image} is not on this machine ({why}), and `openshell cluster up` pulls nothing "
        f"unless asked (--pull). Provide it: on a machine with registry access run `docker pull {image}` "
        f"and `docker save {image} -o k3s.tar`, copy k3s.tar here and run `docker load -i k3s.tar`, then "
        "`openshell cluster up` again. Without any registry, also give the cluster its own images (pause, "
        "CoreDNS) from the K3s release of the same version: `--airgap-images k3s-airgap-images-amd64.tar`. "
        "Nothing was started."
    )


def _check(client: Any, image: str, sandbox_image: str, pull: bool, log: Callable[[str], None]) -> None:
    errors = _errors()
    try:
        client.images.get(image)
    except errors.ImageNotFound:
        if not pull:
            raise _missing_image(image, "not found locally") from None
        log(f"pulling {image}")
        try:
            client.images.pull(image)
        except errors.DockerException as exc:
            raise _missing_image(image, f"the pull failed: {exc}") from None
    try:
        client.images.get(sandbox_image)
    except errors.ImageNotFound:
        raise SandboxError(
            f"the sandbox image {sandbox_image} is not on this machine: build it with "
            "`openshell image build`, then run `openshell cluster up` again. Nothing was started."
        ) from None
    with contextlib.suppress(errors.NotFound):
        found = client.containers.get(CONTAINER)
        raise SandboxError(
            f"a container {CONTAINER} exists already ({found.status}): `openshell cluster status`, "
            "or `openshell cluster down` first"
        )


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def up(
    *,
    port: int = 6443,
    image: str = K3S_IMAGE,
    sandbox_image: str | None = None,
    airgap: Path | None = None,
    pull: bool = False,
    log: Callable[[str], None] = print,
) -> dict:
    """Start the cluster (see the module docstring); returns `status()`."""
    from ..runtime.docker._image import default_image
    from ..runtime.docker._runtime_image import prepare

    client = _docker()
    sandbox_image = sandbox_image or default_image()
    _check(client, image, sandbox_image, pull, log)
    if not _free(port):
        raise SandboxError(f"127.0.0.1:{port} is in use: pick another with --port. Nothing was started.")
    made: list[Callable[[], None]] = []
    try:
        volume = client.volumes.create(VOLUME, labels={LABEL: "data"})
        made.append(lambda: volume.remove(force=True))
        log(f"starting K3s ({image}) in container {CONTAINER}, API on 127.0.0.1:{port}")
        container = client.containers.create(
            image,
            [
                "server",
                "--disable=traefik",
                "--disable=metrics-server",
                "--tls-san=127.0.0.1",
                "--write-kubeconfig-mode=600",
            ],
            name=CONTAINER,
            privileged=True,
            labels={LABEL: "server"},
            volumes={VOLUME: {"bind": "/var/lib/rancher/k3s", "mode": "rw"}},
            tmpfs={"/run": "", "/var/run": ""},
            ports={"6443/tcp": ("127.0.0.1", port)},
        )
        made.append(lambda: container.remove(force=True))
        if airgap is not None:  # K3s loads these at start (no registry needed for its own pods)
            container.put_archive("/var/lib/rancher/k3s/agent/images", _tar(airgap))
        container.start()
        config = _kubeconfig(container, port)
        path = kubeconfig_path()
        made.append(lambda: path.unlink(missing_ok=True))
        paths.write_private(path, config)
        _wait_node(path, container)
        runtime = prepare(sandbox_image)  # the image plus this package (the OpenShell kernel imports it)
        from ..runtime.kubernetes import _proxy_image

        proxy_image = _proxy_image.build(log=log)
        for tag in (runtime.tag, sandbox_image, proxy_image):
            log(f"importing {tag} into the cluster")
            _import(client, container, tag)
        _retag(container, runtime.tag, sandbox_image)
        from ..runtime.kubernetes import _install, _settings

        _install.install(_settings.load().with_changes(kubeconfig=str(path)), log=log)
        paths.write_private(
            paths.layout().cluster_record,
            json.dumps({"container": container.id, "volume": VOLUME, "port": port, "image": image}),
        )
    except BaseException as exc:
        for undo in reversed(made):
            with contextlib.suppress(Exception):
                undo()
        if isinstance(exc, _errors().DockerException):
            raise SandboxError(f"K3s did not start ({exc}); what `cluster up` made was removed") from None
        raise
    return status()


def _tar(path: Path) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(str(path), arcname=path.name)
    return buf.getvalue()


def _kubeconfig(container: Any, port: int) -> str:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        container.reload()
        if container.status not in ("created", "running"):
            tail = container.logs(tail=30).decode(errors="replace").strip()
            raise SandboxError(f"K3s did not start (container {container.status}):\n{tail or '(no log)'}")
        code, out = container.exec_run(["cat", "/etc/rancher/k3s/k3s.yaml"])
        if code == 0 and out:
            return out.decode().replace("https://127.0.0.1:6443", f"https://127.0.0.1:{port}")
        time.sleep(1)
    raise SandboxError(f"K3s wrote no kubeconfig within {READY_TIMEOUT:.0f} s; see `docker logs {CONTAINER}`")


def _wait_node(kubeconfig: Path, container: Any) -> None:
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    core = client.CoreV1Api(client.ApiClient(cfg))
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            for node in core.list_node().items:
                if any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or []):
                    return
        container.reload()
        if container.status != "running":
            raise SandboxError(
                f"K3s stopped while starting: {container.logs(tail=30).decode(errors='replace')}"
            )
        time.sleep(1)
    raise SandboxError(
        f"the K3s node was not Ready within {READY_TIMEOUT:.0f} s; see `docker logs {CONTAINER}`"
    )


def _import(client: Any, container: Any, image: str) -> None:
    """`docker save IMAGE` piped into `ctr images import` inside the K3s container (no registry)."""
    api = client.api
    exec_id = api.exec_create(container.id, ["ctr", "-n", "k8s.io", "images", "import", "-"], stdin=True)[
        "Id"
    ]
    sock = api.exec_start(exec_id, socket=True)
    raw = getattr(sock, "_sock", sock)
    try:
        for chunk in client.images.get(image).save(named=True):
            raw.sendall(chunk)
        raw.shutdown(socket.SHUT_WR)
        while raw.recv(65536):
            pass
    finally:
        raw.close()
    if api.exec_inspect(exec_id).get("ExitCode") not in (0, None):
        raise SandboxError(
            f"importing {image} into K3s failed (ctr images import); see `docker logs {CONTAINER}`"
        )


def _retag(container: Any, runtime_tag: str, sandbox_image: str) -> None:
    """Pods name the sandbox image; in the cluster it is the runtime image (with the kernel's package)."""
    for ref in (f"docker.io/{sandbox_image}", sandbox_image):
        container.exec_run(["ctr", "-n", "k8s.io", "images", "rm", ref])
    code, out = container.exec_run(
        ["ctr", "-n", "k8s.io", "images", "tag", f"docker.io/{runtime_tag}", f"docker.io/{sandbox_image}"]
    )
    if code != 0:
        raise SandboxError(f"tagging the sandbox image in K3s failed: {out.decode(errors='replace')}")


def down(keep_data: bool = False) -> list[str]:
    """Remove the container, the kubeconfig and (unless `keep_data`) the volume; returns what went."""
    client = _docker()
    errors = _errors()
    gone = []
    with contextlib.suppress(errors.NotFound):
        client.containers.get(CONTAINER).remove(force=True)
        gone.append(f"container {CONTAINER}")
    if not keep_data:
        with contextlib.suppress(errors.NotFound):
            client.volumes.get(VOLUME).remove(force=True)
            gone.append(f"volume {VOLUME}")
    for path in (kubeconfig_path(), paths.layout().cluster_record):
        if path.exists():
            path.unlink()
            gone.append(str(path))
    return gone


def status() -> dict:
    client = _docker()
    errors = _errors()
    out: dict[str, Any] = {"container": None, "volume": None, "kubeconfig": None, "nodes": None}
    with contextlib.suppress(errors.NotFound):
        found = client.containers.get(CONTAINER)
        out["container"] = {"name": CONTAINER, "status": found.status, "image": found.image.tags}
    with contextlib.suppress(errors.NotFound):
        out["volume"] = client.volumes.get(VOLUME).name
    path = kubeconfig_path()
    if path.exists():
        out["kubeconfig"] = str(path)
        with contextlib.suppress(Exception):
            from kubernetes import client as k8s
            from kubernetes import config

            cfg = k8s.Configuration()
            config.load_kube_config(config_file=str(path), client_configuration=cfg)
            nodes = k8s.CoreV1Api(k8s.ApiClient(cfg)).list_node(_request_timeout=5).items
            out["nodes"] = {
                n.metadata.name: next((c.status for c in n.status.conditions or [] if c.type == "Ready"), "?")
                for n in nodes
            }
    return out
