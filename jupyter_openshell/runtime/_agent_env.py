"""What the agent of every sandbox is told, whatever runs it (local, docker): the proxy it relays to
(127.0.0.1:3128 inside), the CA variables, HOME and PATH, the relay's connection cap, the default size of
/tmp; and the checks every backend makes of a policy before it builds a sandbox (its user, the paths it
binds). It must never let a policy run a sandbox as root, nor bind over the sandbox's own /, /proc, /dev,
/sys.
"""

from __future__ import annotations

import os
from typing import Any

from . import _bwrap
from ._types import SandboxError

PROXY_URL = "http://127.0.0.1:3128"
PROXY_PORT = 3128
HOME = "/tmp/home"
DEFAULT_TMP = 512 << 20
RELAY_MAX_ENV = "OPENSHELL_RELAY_MAX_CONNECTIONS"  # connections through a sandbox's relay at once
RELAY_MAX = 256
RESERVED = ("/proc", "/dev", "/sys", "/run/openshell", "/workspace", "/tmp/home")
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
CA_VARS = (
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "GIT_SSL_CAINFO",
    "PIP_CERT",
)


def inside(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def check_policy_paths(policy: Any) -> None:
    """Paths a policy binds must exist and must not replace the sandbox's own /, /proc, /dev, /sys."""
    fs = policy.filesystem
    for field, paths_ in (("read_only", fs.read_only), ("read_write", fs.read_write)):
        for index, path in enumerate(paths_):
            where = f"{policy.source}: filesystem.{field}[{index}] {path!r}"
            if os.path.realpath(path) == "/" or any(inside(os.path.realpath(path), d) for d in RESERVED):
                raise SandboxError(
                    f"{where}: / and {', '.join(RESERVED)} belong to the sandbox itself; "
                    "name the directories you need instead (e.g. /opt/data)"
                )
            if not os.path.exists(path):
                raise SandboxError(f"{where} does not exist on this host; create it or remove the entry")


def sandbox_user(policy: Any) -> tuple[str, int]:
    user = policy.process.user
    if user in (0, "0", "root"):
        raise SandboxError(
            f"{policy.source}: process.user: a sandbox never runs as root; use a name "
            "(e.g. 'sandbox') or a uid > 0"
        )
    if isinstance(user, int) or str(user).isdigit():
        return "sandbox", int(user)
    return str(user), _bwrap.SANDBOX_UID


def relay_max() -> int:
    value = os.environ.get(RELAY_MAX_ENV) or str(RELAY_MAX)
    if not value.isdigit() or not 1 <= int(value) <= 60000:
        raise SandboxError(
            f"{RELAY_MAX_ENV}={value!r}: give a number of connections from 1 to 60000 (default {RELAY_MAX})"
        )
    return int(value)
