"""The bubblewrap command line of one sandbox: namespaces, the filesystem view, seccomp, identity.

`Command` collects bwrap arguments and the fds they refer to (generated files as memfds, never a
path in the host's private state directory, which bwrap running as the sandbox uid cannot reach).
The view is an allowlist: system dirs read-only, a curated /etc, one writable workspace, private
/tmp, /dev, /proc. It must never bind the state directory, home directories, /run or any host
socket unless a policy names them explicitly, and never the CA private key.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass, field

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# /etc entries a sandbox may see: what dynamic linking, TLS, locales, time and shells need; no
# credentials stores (pip.conf, npmrc, gitconfig, ssh, ssl/private, shadow) and no host identity.
ETC_ENTRIES = (
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "mime.types",
    "protocols",
    "services",
    "os-release",
    "debian_version",
    "lsb-release",
    "gai.conf",
    "host.conf",
    "ssl/certs",
    "ssl/openssl.cnf",
    "ca-certificates",
    "ca-certificates.conf",
    "python3",
    "python3.11",
    "python3.12",
    "fonts",
    "terminfo",
    "inputrc",
    "bash.bashrc",
    "profile",
    "magic",
    "magic.mime",
    "xattr.conf",
    "login.defs",
    "locale.alias",
    "locale.gen",
    "papersize",
    "mailcap",
    "subversion",
)
CA_PATH = "/etc/openshell/ca-bundle.pem"
CHAN_PATH = "/run/openshell"
WORKSPACE = "/workspace"
SANDBOX_UID = 1000
MAX_COPY = 1 << 20  # /etc files up to this size are copied into the sandbox rather than bound


@dataclass
class Command:
    args: list[str] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)  # to pass to bwrap; closed by `close()`

    def add(self, *args: str) -> None:
        self.args.extend(args)

    def fd(self, fd: int) -> str:
        os.set_inheritable(fd, True)
        self.fds.append(fd)
        return str(fd)

    def data(self, text: str | bytes, target: str, mode: str = "0444", mount: bool = True) -> None:
        """`target` holds `text`: a read-only bind over whatever is there (mount=True), or a file bwrap
        writes into the sandbox's root tmpfs (mount=False: no mount, read-only once / is remounted)."""
        fd = os.memfd_create("openshell-data", os.MFD_CLOEXEC)
        os.write(fd, text.encode() if isinstance(text, str) else text)
        os.lseek(fd, 0, os.SEEK_SET)
        self.add("--perms", mode, "--ro-bind-data" if mount else "--file", self.fd(fd), target)

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()


def _system(cmd: Command) -> None:
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            cmd.add("--symlink", os.readlink(path), path)
        elif os.path.isdir(path):
            cmd.add("--ro-bind", path, path)
    cmd.add("--dir", "/etc")
    # Each mount costs bwrap ~0.2 ms: world-readable files are copied in (what the sandbox could read
    # anyway) and links into the system dirs recreated; only directories and the rest are bound.
    for entry in ETC_ENTRIES:
        src = f"/etc/{entry}"
        try:
            st = os.lstat(src)
        except OSError:
            continue
        if stat.S_ISLNK(st.st_mode) and _in_system(os.path.realpath(src)):
            cmd.add("--symlink", os.readlink(src), src)
        elif stat.S_ISREG(st.st_mode) and st.st_mode & stat.S_IROTH and st.st_size <= MAX_COPY:
            with open(src, "rb") as fh:
                cmd.data(fh.read(MAX_COPY + 1), src, f"{stat.S_IMODE(st.st_mode) & 0o755:04o}", mount=False)
        else:
            cmd.add("--ro-bind", src, src)


def _in_system(path: str) -> bool:
    return any(_inside(path, d) for d in SYSTEM_DIRS if os.path.isdir(d) and not os.path.islink(d))


def _identity(cmd: Command, name: str, user: str, uid: int) -> None:
    cmd.data(
        f"root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n{user}:x:{uid}:{uid}::/tmp/home:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        "/etc/passwd",
        mount=False,
    )
    cmd.data(f"root:x:0:\n{user}:x:{uid}:\nnogroup:x:65534:\n", "/etc/group", mount=False)
    cmd.data(
        f"127.0.0.1\tlocalhost {name}\n::1\tlocalhost ip6-localhost ip6-loopback\n", "/etc/hosts", mount=False
    )
    cmd.data(f"{name}\n", "/etc/hostname", mount=False)
    cmd.data(
        "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\n"
        "protocols: files\nservices: files\n",
        "/etc/nsswitch.conf",
        mount=False,
    )
    # Nothing listens on port 53 in the sandbox: lookups are refused at once (no 5 s wait). Names
    # are resolved by the proxy, after it allows a request.
    cmd.data(
        "# openshell: no DNS inside the sandbox; use the HTTP(S) proxy\nnameserver 127.0.0.1\n"
        "options attempts:1 timeout:1\n",
        "/etc/resolv.conf",
        mount=False,
    )


def build(
    cmd: Command,
    *,
    name: str,
    user: str,
    uid: int,
    workspace: str,
    chan: str,
    ca_pem: bytes,
    tmp_size: int,
    read_only: list[str],
    read_write: list[str],
    hidden: list[str],
    runtime_paths: list[str],
    state_dir: str,
    gpu: list[tuple[str, str]] | None,
    binds: list[tuple[str, str, bool]] = (),
    protect: list[tuple[str, int, bool]] = (),
) -> None:
    """Append namespaces, mounts and identity to `cmd` (the command to run comes after).

    `protect`: (path relative to the workspace, O_PATH fd of it already in `cmd.fds`, writable), each
    bound onto itself, in order (see `_protect.plan`)."""
    cmd.add(
        "--unshare-user",
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-cgroup",
        "--disable-userns",
        "--uid",
        str(uid),
        "--gid",
        str(uid),
        "--hostname",
        name,
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--clearenv",
    )
    _system(cmd)
    _identity(cmd, name, user, uid)
    cmd.add("--proc", "/proc", "--dev", "/dev")
    cmd.add("--perms", "1777", "--size", str(tmp_size), "--tmpfs", "/tmp")
    cmd.add("--perms", "1777", "--size", str(tmp_size), "--tmpfs", "/dev/shm")
    # After the private /tmp and /dev/shm, which would hide a Python or venv installed below them.
    for path in runtime_paths:  # the agent's Python and package, read-only
        cmd.add("--ro-bind", path, path)
    cmd.add("--dir", "/run", "--ro-bind", chan, CHAN_PATH, "--bind", workspace, WORKSPACE)
    for rel, fd, writable in protect:  # (the fd, not the name: nothing can be swapped in between)
        cmd.add("--bind-fd" if writable else "--ro-bind-fd", str(fd), f"{WORKSPACE}/{rel}")
    if ca_pem:
        cmd.data(ca_pem, CA_PATH, mount=False)
    for path in read_only:
        cmd.add("--ro-bind", path, path)
    for path in read_write:
        cmd.add("--bind", path, path)
    for src, dest, writable in binds:
        cmd.add("--bind" if writable else "--ro-bind", src, dest)
    for src, dest in gpu or []:
        cmd.add("--dev-bind" if src.startswith("/dev/") else "--ro-bind", src, dest)
    masked = [(p, p) for p in hidden if os.path.lexists(p)]  # (path inside, path on the host)
    if any(_inside(state_dir, p) for p in read_only + read_write):
        masked.append((state_dir, state_dir))  # the state directory is never visible, whatever the policy
    for src, dest in ((workspace, WORKSPACE), *((s, d) for s, d, _w in binds)):
        if _inside(state_dir, src):  # nor through the workspace or a bind that holds it
            rel = os.path.relpath(os.path.realpath(state_dir), os.path.realpath(src))
            masked.append((os.path.normpath(os.path.join(dest, rel)), state_dir))
    for path, host in masked:
        if os.path.isdir(host):
            cmd.add("--perms", "0000", "--tmpfs", path, "--remount-ro", path)
        else:
            cmd.data(b"", path, "0000")
    # /dev is a tmpfs without a size: writable, it would hold files past `resources.disk` (and, with
    # rlimits, past any memory limit). Only its device nodes, /dev/shm and /dev/pts stay writable.
    cmd.add("--remount-ro", "/dev", "--remount-ro", "/", "--chdir", WORKSPACE)


def _inside(child: str, parent: str) -> bool:
    child, parent = os.path.realpath(child), os.path.realpath(parent)
    return child == parent or child.startswith(parent.rstrip("/") + "/")
