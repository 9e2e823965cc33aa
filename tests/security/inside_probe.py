"""Runs INSIDE a sandbox (fed to `python3 -` on stdin): tries every escape the attack suite checks and
prints one JSON object of outcomes. argv[1] is JSON with host facts (ports, paths) to aim at.
Each attempt records 0 (it worked) or the errno it failed with, so the host-side tests can assert
the exact refusal. It must stay stdlib-only and never retry or wait long (everything fails fast).
"""

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time

FACTS = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
R: dict = {}

NR = {
    "ptrace": 101,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "mount": 165,
    "umount2": 166,
    "pivot_root": 155,
    "chroot": 161,
    "unshare": 272,
    "setns": 308,
    "clone3": 435,
    "bpf": 321,
    "perf_event_open": 298,
    "userfaultfd": 323,
    "keyctl": 250,
    "add_key": 248,
    "request_key": 249,
    "kexec_load": 246,
    "kexec_file_load": 320,
    "init_module": 175,
    "finit_module": 313,
    "open_by_handle_at": 304,
    "io_uring_setup": 425,
    "fsopen": 430,
    "open_tree": 428,
    "move_mount": 429,
    "fsmount": 432,
    "fspick": 433,
    "mount_setattr": 442,
    "pidfd_getfd": 438,
}
CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWNS = 0x10000000, 0x40000000, 0x00020000


def call(nr: int, *args: int) -> int:
    ctypes.set_errno(0)
    rc = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    return 0 if rc >= 0 else ctypes.get_errno()


def syscalls() -> None:
    buf = ctypes.create_string_buffer(64)
    iov = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 8)
    keyring_name = ctypes.create_string_buffer(b"user")
    desc = ctypes.create_string_buffer(b"openshell-probe")
    payload = ctypes.create_string_buffer(b"x")
    tmpfs = ctypes.create_string_buffer(b"tmpfs")
    target = ctypes.create_string_buffer(b"/tmp")
    params = ctypes.create_string_buffer(120)
    attempts = {
        "ptrace": (0,),  # PTRACE_TRACEME
        "process_vm_readv": (os.getpid(), ctypes.addressof(iov), 1, ctypes.addressof(iov), 1, 0),
        "process_vm_writev": (os.getpid(), ctypes.addressof(iov), 1, ctypes.addressof(iov), 1, 0),
        "mount": (ctypes.addressof(tmpfs), ctypes.addressof(target), ctypes.addressof(tmpfs), 0, 0),
        "umount2": (ctypes.addressof(target), 0),
        "pivot_root": (ctypes.addressof(target), ctypes.addressof(target)),
        "chroot": (ctypes.addressof(target),),
        "unshare": (CLONE_NEWUSER,),
        "setns": (0, 0),
        "clone3": (0, 0),
        "bpf": (0, 0, 0),
        "perf_event_open": (0, 0, -1, -1, 0),
        "userfaultfd": (1,),  # UFFD_USER_MODE_ONLY: allowed to unprivileged users by the kernel
        "keyctl": (0, -3, 1),  # KEYCTL_GET_KEYRING_ID of the session keyring, create
        "add_key": (ctypes.addressof(keyring_name), ctypes.addressof(desc), ctypes.addressof(payload), 1, -2),
        "request_key": (ctypes.addressof(keyring_name), ctypes.addressof(desc), 0, 0),
        "kexec_load": (0, 0, 0, 0),
        "kexec_file_load": (-1, -1, 0, 0, 0),
        "init_module": (0, 0, 0),
        "finit_module": (-1, 0, 0),
        "open_by_handle_at": (-100, 0, 0),
        "io_uring_setup": (1, ctypes.addressof(params)),
        "fsopen": (ctypes.addressof(tmpfs), 0),
        "open_tree": (-100, ctypes.addressof(target), 1),
        "move_mount": (-100, ctypes.addressof(target), -100, ctypes.addressof(target), 0),
        "fsmount": (-1, 0, 0),
        "fspick": (-100, ctypes.addressof(target), 0),
        "mount_setattr": (-100, ctypes.addressof(target), 0, 0, 0),
        "pidfd_getfd": (-1, 0, 0),
    }
    R["syscalls"] = {name: call(NR[name], *args) for name, args in attempts.items()}
    # clone(2) with namespace flags through the raw syscall (glibc's wrapper needs a stack).
    out = {}
    for label, flags in (
        ("CLONE_NEWUSER", CLONE_NEWUSER),
        ("CLONE_NEWNET", CLONE_NEWNET),
        ("CLONE_NEWNS", CLONE_NEWNS),
    ):
        rc = libc.syscall(ctypes.c_long(56), ctypes.c_long(flags | signal.SIGCHLD), None, None, None, None)
        if rc == 0:
            os._exit(0)
        if rc > 0:
            os.waitpid(rc, 0)
            out[label] = 0
        else:
            out[label] = ctypes.get_errno()
    R["clone"] = out


def tty() -> None:
    import fcntl
    import termios

    master, slave = os.openpty()
    for label, request in (("TIOCSTI", termios.TIOCSTI), ("TIOCSTI_high_bits", termios.TIOCSTI | (1 << 32))):
        try:
            if label == "TIOCSTI":
                fcntl.ioctl(slave, request, b"x")
                R[label] = 0
            else:
                c = ctypes.c_char(b"x")
                R[label] = call(16, slave, request, ctypes.addressof(c))
        except OSError as exc:
            R[label] = exc.errno
    os.close(master)
    os.close(slave)


def sockets() -> None:
    out = {}
    for label, family, kind, proto in (
        ("AF_PACKET", 17, socket.SOCK_DGRAM, 0),
        ("AF_NETLINK", 16, socket.SOCK_DGRAM, 0),
        ("AF_NETLINK_ROUTE_RAW", 16, socket.SOCK_RAW, 0),  # what getifaddrs() opens
        ("AF_ALG", 38, socket.SOCK_SEQPACKET, 0),
        ("AF_VSOCK", 40, socket.SOCK_STREAM, 0),
        ("AF_INET_RAW", socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
        ("AF_INET6_RAW", socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6),
        ("AF_INET_PACKET", socket.AF_INET, 10, 0),
    ):
        try:
            socket.socket(family, kind, proto).close()
            out[label] = 0
        except OSError as exc:
            out[label] = exc.errno
    R["sockets"] = out


def connect(family: int, kind: int, addr: tuple, timeout: float = 3.0) -> dict:
    start = time.monotonic()
    try:
        with socket.socket(family, kind) as s:
            s.settimeout(timeout)
            if kind == socket.SOCK_DGRAM:
                s.sendto(b"openshell-probe", addr)
                s.recv(10)
            else:
                s.connect(addr)
        code = 0
    except OSError as exc:
        code = exc.errno or -1
    return {"errno": code, "seconds": round(time.monotonic() - start, 3)}


def network() -> None:
    R["net"] = {
        "tcp_external": connect(socket.AF_INET, socket.SOCK_STREAM, ("1.1.1.1", 80)),
        "tcp_private": connect(socket.AF_INET, socket.SOCK_STREAM, ("10.0.0.1", 22)),
        "udp_external": connect(socket.AF_INET, socket.SOCK_DGRAM, ("8.8.8.8", 53)),
        "tcp6_external": connect(socket.AF_INET6, socket.SOCK_STREAM, ("2606:4700:4700::1111", 80)),
        "host_service": connect(socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", FACTS["host_port"])),
        "host_service6": connect(socket.AF_INET6, socket.SOCK_STREAM, ("::1", FACTS["host_port"])),
        "proxy_listener": connect(socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", FACTS["proxy_port"])),
        "host_dns": connect(socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", FACTS["dns_port"]), 0.2),
        "metadata": connect(socket.AF_INET, socket.SOCK_STREAM, ("169.254.169.254", 80)),
    }
    try:
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP).close()
        R["net"]["icmp_dgram"] = 0
    except OSError as exc:
        R["net"]["icmp_dgram"] = exc.errno
    start = time.monotonic()
    try:
        socket.getaddrinfo(FACTS["exfil_name"], 443)
        R["dns"] = {"resolved": True}
    except OSError as exc:
        R["dns"] = {"resolved": False, "error": str(exc)}
    R["dns"]["seconds"] = round(time.monotonic() - start, 3)
    with open("/proc/net/dev") as fh:  # (if_nameindex needs netlink, which the filter refuses)
        R["interfaces"] = [line.split(":")[0].strip() for line in fh.readlines()[2:]]


def filesystem() -> None:
    R["exists"] = {p: os.path.lexists(p) for p in FACTS["absent_paths"]}
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    R["pids"] = sorted(pids)
    R["proxy_pid_visible"] = FACTS["proxy_pid"] in pids
    try:
        with open("/proc/self/comm", "w") as fh:  # /proc is read-only under Landlock
            fh.write("renamed")
        R["proc_write"] = 0
    except OSError as exc:
        R["proc_write"] = exc.errno
    ca = ""
    if os.path.exists("/etc/openshell/ca-bundle.pem"):
        with open("/etc/openshell/ca-bundle.pem") as fh:
            ca = fh.read()
    R["ca_has_private_key"] = "PRIVATE KEY" in ca
    R["ca_present"] = bool(ca)
    with open("/proc/self/status") as fh:
        status = dict(line.split(":\t", 1) for line in fh.read().splitlines() if ":\t" in line)
    R["status"] = {
        k: status.get(k, "").strip() for k in ("CapEff", "CapPrm", "CapBnd", "NoNewPrivs", "Seccomp")
    }
    R["uid"] = os.getuid()
    for label, src, dst in (
        ("hardlink_system", "/etc/hostname", "/workspace/.probe-hl"),
        ("hardlink_python", os.path.realpath(sys.executable), "/workspace/.probe-py"),
    ):
        try:
            os.link(src, dst)
            os.unlink(dst)
            R[label] = 0
        except OSError as exc:
            R[label] = exc.errno
    try:
        os.symlink("/etc/shadow", "/workspace/.probe-sl")
        with open("/workspace/.probe-sl") as fh:
            fh.read()
        R["symlink_shadow"] = 0
    except OSError as exc:
        R["symlink_shadow"] = exc.errno
    finally:
        if os.path.lexists("/workspace/.probe-sl"):
            os.unlink("/workspace/.probe-sl")
    # /dev is an unsized tmpfs: a file there would escape `resources.disk` (and rlimits' memory cap).
    R["dev_write"] = {}
    for label, path in (("dev", "/dev/.probe"), ("dev_shm", "/dev/shm/.probe"), ("dev_null", "/dev/null")):
        try:
            with open(path, "wb") as fh:
                fh.write(b"x")
            if label != "dev_null":
                os.unlink(path)
            R["dev_write"][label] = 0
        except OSError as exc:
            R["dev_write"][label] = exc.errno
    try:
        os.kill(FACTS["proxy_pid"], signal.SIGKILL)
        R["kill_proxy"] = 0
    except OSError as exc:
        R["kill_proxy"] = exc.errno


def arch() -> None:
    """x32 and i386 system calls kill the process (SIGSYS), checked in child processes."""
    x32 = "import ctypes; ctypes.CDLL(None).syscall(0x40000000 | 39); print('alive')"
    i386 = (
        "import ctypes, mmap\n"
        "m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
        "m.write(b'\\xb8\\x14\\x00\\x00\\x00\\xcd\\x80\\xc3')  # mov eax, 20 (getpid); int 0x80; ret\n"
        "f = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(m)))\n"
        "f(); print('alive')\n"
    )
    R["arch"] = {}
    for label, code in (("x32", x32), ("i386", i386)):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=20)
        R["arch"][label] = proc.returncode


for step in (syscalls, tty, sockets, network, filesystem, arch):
    try:
        step()
    except Exception as exc:  # report, do not hide: the host-side test fails on it
        R.setdefault("errors", []).append(f"{step.__name__}: {type(exc).__name__}: {exc}")
print(json.dumps(R))
sys.stdout.flush()
