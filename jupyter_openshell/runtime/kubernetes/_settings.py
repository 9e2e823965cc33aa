"""Configuration of the Kubernetes backend: where (namespace, kubeconfig), what (images, runtime class,
seccomp profile) and who (this server's id, the Jupyter server's pods).

Read from the environment (`OPENSHELL_K8S_*`), else `<state>/kubernetes/settings.json`, else the defaults
below; `KubeSettings.with_changes(...)` for the CLI. The server id names this server's anchor object and
labels everything it creates; it is made once per state directory and kept, so a restarted server finds
(re-attaches to) its sandboxes. Plain data: it must never talk to a cluster.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import jupyter_openshell

from ... import paths

K8S_VERSION = "1.31.0"  # the API version manifests are validated against (tests, `openshell k8s render`)
SANDBOX_UID = 1000  # the sandbox image's unprivileged user (uid and gid)
PROXY_UID = 10001  # the proxy's (no passwd entry needed: numeric)
PROXY_PORT = 3128
KERNEL_PORTS = (50001, 50002, 50003, 50004, 50005)  # shell, iopub, stdin, control, hb of a kernel pod
LOCALHOST_PROFILE = "openshell-sandbox-seccomp.json"  # in the kubelet seccomp root of every node
_DNS1123 = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
ENV_PREFIX = "OPENSHELL_K8S_"


class SettingsError(ValueError):
    """A setting is invalid; the message names it and says what is expected."""


@dataclass(frozen=True)
class KubeSettings:
    namespace: str = "openshell"
    kubeconfig: str = ""  # "" = $KUBECONFIG / ~/.kube/config / <state>/kubernetes/kubeconfig / in-cluster
    context: str = ""
    image: str = f"jupyter-openshell/sandbox:{jupyter_openshell.__version__}"
    proxy_image: str = f"jupyter-openshell/proxy:{jupyter_openshell.__version__}"
    image_pull_policy: str = "IfNotPresent"
    runtime_class: str = ""  # e.g. "gvisor" or "kata": the pods' runtimeClassName
    seccomp: str = "RuntimeDefault"  # or "Localhost": the project's profile, installed on every node
    server_id: str = ""  # "" = this state directory's (made once, kept)
    jupyter_labels: dict[str, str] = field(
        default_factory=lambda: {"app.kubernetes.io/component": "jupyter-server"}
    )
    proxy_service: str = "openshell-proxy"
    workspace_size: str = "1Gi"  # sizeLimit of a sandbox's emptyDir workspace
    start_timeout: float = 120.0  # seconds a pod may take to be Running

    def check(self) -> KubeSettings:
        for name in ("namespace", "proxy_service"):
            if not _DNS1123.match(getattr(self, name)):
                raise SettingsError(
                    f"kubernetes setting {name}={getattr(self, name)!r}: use 1-63 lower-case "
                    "letters, digits and '-' (a DNS label, e.g. 'openshell')"
                )
        if self.seccomp not in ("RuntimeDefault", "Localhost"):
            raise SettingsError(
                f"kubernetes setting seccomp={self.seccomp!r}: use RuntimeDefault or Localhost "
                f"(Localhost needs {LOCALHOST_PROFILE} on every node: `openshell k8s render`)"
            )
        if self.image_pull_policy not in ("IfNotPresent", "Always", "Never"):
            raise SettingsError(
                f"kubernetes setting image_pull_policy={self.image_pull_policy!r}: use "
                "IfNotPresent, Always or Never"
            )
        if self.runtime_class and not _DNS1123.match(self.runtime_class):
            raise SettingsError(
                f"kubernetes setting runtime_class={self.runtime_class!r}: a RuntimeClass name"
            )
        if self.server_id and not re.fullmatch(r"[a-z0-9]{6,32}", self.server_id):
            raise SettingsError(f"kubernetes setting server_id={self.server_id!r}: 6-32 of a-z, 0-9")
        return self

    def with_changes(self, **changes: object) -> KubeSettings:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v not in (None, "")}).check()


def settings_file() -> Path:
    layout = paths.layout()
    paths.ensure_private_dir(layout.kubernetes_dir)
    return layout.kube_settings


def _server_id() -> str:
    layout = paths.layout()
    paths.ensure_private_dir(layout.kubernetes_dir)
    path = layout.kube_server_id
    try:
        value = path.read_text().strip()
        if re.fullmatch(r"[a-z0-9]{6,32}", value):
            return value
    except OSError:
        pass
    value = secrets.token_hex(6)
    paths.write_private(path, value + "\n")
    return value


def load() -> KubeSettings:
    """The settings in force (environment over settings.json over defaults), checked."""
    values: dict[str, object] = {}
    try:
        values.update(json.loads(settings_file().read_text()))
    except FileNotFoundError:
        pass
    except ValueError as exc:
        raise SettingsError(f"{settings_file()}: not valid JSON ({exc})") from None
    known = {f.name: f for f in dataclasses.fields(KubeSettings)}
    for key in list(values):
        if key not in known:
            raise SettingsError(f"{settings_file()}: unknown setting {key!r}; known: {', '.join(known)}")
    for name, f in known.items():
        env = os.environ.get(ENV_PREFIX + name.upper())
        if env is None:
            continue
        if name == "jupyter_labels":
            values[name] = dict(p.split("=", 1) for p in env.split(",") if "=" in p)
        elif f.type in ("float", float):
            values[name] = float(env)
        else:
            values[name] = env
    settings = KubeSettings(**values).check()  # type: ignore[arg-type]
    return settings if settings.server_id else dataclasses.replace(settings, server_id=_server_id())
