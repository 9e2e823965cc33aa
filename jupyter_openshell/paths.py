"""Where jupyter-openshell keeps its per-user state on the host, and the one place its layout is spelled.

`Layout(root)` names every path under a state directory (docs/ARCHITECTURE.md, "State directory"); every
other module asks it (`layout()` for the current one) instead of joining names itself. Top level (mode
0700, never mounted into a sandbox):
  ca/            mitmproxy confdir: CA key (0600) and exported CA bundle
  secrets/       named secrets, one 0600 file each (file name = secret name)
  policies/      policy sources and their history
  sandboxes/     one directory per sandbox (record, sockets, channel, log)
  flows/         append-only JSON-lines flow logs
  run/           pid files and sockets of long-running services (proxy)
  jupyter/       the server extension's records (owners of REST-created sandboxes)
  kernels/       kernel homes (one per kernel sandbox of this host: relay sockets, markers, log)
  kubernetes/    the kubernetes backend's settings and kubeconfig

It must never create anything world-readable, and never return a path inside a sandbox's view. It imports
only os, pathlib and contextlib: the CLI's `sandbox exec` path reads a sandbox's record through it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

STATE_ENV = "OPENSHELL_STATE_DIR"
CA_BUNDLE = "ca-bundle.pem"  # in the CA's confdir


def state_dir() -> Path:
    """The per-user state directory, created 0700 on first use.

    $OPENSHELL_STATE_DIR wins; else $XDG_STATE_HOME/openshell; else ~/.local/state/openshell.
    """
    env = os.environ.get(STATE_ENV)
    if env:
        base = Path(env)
    else:
        xdg = os.environ.get("XDG_STATE_HOME")
        base = Path(xdg) / "openshell" if xdg else Path.home() / ".local" / "state" / "openshell"
    return ensure_private_dir(base)


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) and force mode 0700 on it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def shared_root_dir(name: str) -> Path:
    """A root-owned 0711 directory `name` in the system's temporary directory (made on first use), for
    root's short paths (ipc sockets must stay below 108 bytes); its entries must have unguessable names.
    OSError if something else (not a directory, or not root's) holds the name."""
    import stat
    import tempfile

    base = Path(tempfile.gettempdir()) / name
    with contextlib.suppress(FileExistsError):
        base.mkdir(mode=0o711)
    st = base.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0:
        raise OSError(f"{base} is not a directory owned by root; remove it and retry")
    base.chmod(0o711)
    return base


class Layout:
    """Every path under the state directory `root`. Pure names: nothing is created (`ensure_private_dir`,
    `sub` make directories)."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    # -- the proxy's CA and secrets -----------------------------------------------------------------------
    @property
    def ca_dir(self) -> Path:
        return self.root / "ca"

    @property
    def ca_bundle(self) -> Path:
        """System roots + the proxy's CA certificate (never its key): what sandboxes trust."""
        return self.ca_dir / CA_BUNDLE

    @property
    def secrets_dir(self) -> Path:
        return self.root / "secrets"

    def secret(self, name: str) -> Path:
        """One 0600 file per secret (the proxy reads it; nothing else does)."""
        return self.secrets_dir / name

    # -- policies ---------------------------------------------------------------------------------------
    @property
    def policies_dir(self) -> Path:
        return self.root / "policies"

    def policy(self, name: str) -> Path:
        """The current policy of sandbox `name` ("default": the host caller's), which the proxy watches."""
        return self.policies_dir / f"{name}.yaml"

    def policy_history(self, name: str) -> Path:
        return self.policies_dir / f"{name}.history"

    # -- sandboxes --------------------------------------------------------------------------------------
    @property
    def sandboxes_dir(self) -> Path:
        return self.root / "sandboxes"

    def sandbox_dir(self, name: str) -> Path:
        return self.sandboxes_dir / name

    def sandbox_record(self, name: str) -> Path:
        return self.sandbox_dir(name) / "sandbox.json"

    def sandbox_channel(self, name: str) -> Path:
        """The directory bound into the sandbox at /run/openshell (as root: a symlink to its exposed copy)."""
        return self.sandbox_dir(name) / "chan"

    def proxy_socket(self, name: str) -> Path:
        """Where the proxy's gateway listens for sandbox `name` alone (in its channel)."""
        return self.sandbox_channel(name) / "proxy.sock"

    def control_socket(self, name: str) -> Path:
        """Exec requests to the sandbox's agent (host only)."""
        return self.sandbox_dir(name) / "control.sock"

    def agent_dir(self, name: str) -> Path:
        """A container's agent makes its control socket here (bound at /run/openshell-agent)."""
        return self.sandbox_dir(name) / "agent"

    def agent_socket(self, name: str) -> Path:
        return self.agent_dir(name) / "control.sock"

    def private_workspace(self, name: str) -> Path:
        """The workspace of a container sandbox given none (a local one's lives in its exposed directory)."""
        return self.sandbox_dir(name) / "workspace"

    def sandbox_log(self, name: str) -> Path:
        return self.sandbox_dir(name) / "sandbox.log"

    def sandbox_ca_copy(self, name: str) -> Path:
        """A container's copy of the CA bundle (bound read-only at /etc/openshell/ca-bundle.pem)."""
        return self.sandbox_dir(name) / "ca-bundle.pem"

    # -- flows and running services ------------------------------------------------------------------------
    @property
    def flows_dir(self) -> Path:
        return self.root / "flows"

    @property
    def flow_log(self) -> Path:
        return self.flows_dir / "flows.jsonl"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def proxy_run_file(self) -> Path:
        return self.run_dir / "proxy.json"

    @property
    def proxy_auto_file(self) -> Path:
        return self.run_dir / "proxy-auto.json"

    @property
    def proxy_registrations(self) -> Path:
        return self.run_dir / "proxy-sandboxes.json"

    @property
    def proxy_control(self) -> Path:
        return self.run_dir / "proxy-control.sock"

    @property
    def proxy_log(self) -> Path:
        return self.run_dir / "proxy.log"

    @property
    def proxy_lock(self) -> Path:
        return self.run_dir / "proxy.lock"

    @property
    def proxy_users_lock(self) -> Path:
        return self.run_dir / "proxy-users.lock"

    # -- Jupyter, kernels, kubernetes, demo ----------------------------------------------------------------
    @property
    def jupyter_dir(self) -> Path:
        return self.root / "jupyter"

    @property
    def owners_file(self) -> Path:
        """Owners of REST-created sandboxes (the server extension's; its lock is owners.lock beside it)."""
        return self.jupyter_dir / "owners.json"

    @property
    def kernels_dir(self) -> Path:
        return self.root / "kernels"

    @property
    def kernel_channels_dir(self) -> Path:
        """Kernel channels of an unprivileged host (as root: outside, see runtime._kernel_channel)."""
        return self.root / "kernel-channels"

    @property
    def kubernetes_dir(self) -> Path:
        return self.root / "kubernetes"

    @property
    def kube_settings(self) -> Path:
        return self.kubernetes_dir / "settings.json"

    @property
    def kube_server_id(self) -> Path:
        return self.kubernetes_dir / "server-id"

    @property
    def kubeconfig(self) -> Path:
        """The kubeconfig `openshell cluster up` writes."""
        return self.kubernetes_dir / "kubeconfig"

    @property
    def cluster_record(self) -> Path:
        return self.kubernetes_dir / "cluster.json"

    @property
    def demo_dir(self) -> Path:
        return self.root / "demo"

    @property
    def demo_policy(self) -> Path:
        return self.demo_dir / "policy.yaml"


def layout(root: Path | str | None = None) -> Layout:
    """The layout of `root` (None: `state_dir()`, created 0700)."""
    return Layout(root if root is not None else state_dir())


def write_private(path: Path, data: str | bytes) -> None:
    """Replace `path` atomically with `data`, mode 0600, synced (readers see old or new, never half)."""
    import tempfile  # (here: the CLI's exec path reads state without loading it)

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # mkstemp created it 0600
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
