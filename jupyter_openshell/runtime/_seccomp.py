"""The sandbox's seccomp filter, generated with libseccomp (through ctypes) and exported as BPF.

The rules are data (`rules()`): the Docker backend's seccomp profile is generated from the same list.
`filter_fd()` returns a sealed memfd holding the compiled classic-BPF program that bubblewrap loads
with `--seccomp FD`. The filter allows by default and refuses the calls that open kernel attack
surface or break the sandbox's walls (list below). Architectures other than the native one, x32
calls included, kill the process. This module must never hand-assemble BPF: libseccomp does that.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import socket
from dataclasses import dataclass
from functools import cache

_ACT_KILL_PROCESS = 0x80000000
_ACT_ALLOW = 0x7FFF0000
_ATTR_ACT_BADARCH = 2
_CMP = {"EQ": 4, "GT": 6, "MASKED_EQ": 7}

# Calls refused outright (EPERM); names the running libseccomp does not know are skipped.
DENIED = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "process_madvise",
    "kcmp",
    "pidfd_getfd",
    "mount",
    "umount2",
    "umount",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "open_tree_attr",
    "unshare",
    "setns",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "open_by_handle_at",
    "name_to_handle_at",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "acct",
    "swapon",
    "swapoff",
    "reboot",
    "syslog",
    "quotactl",
    "quotactl_fd",
    "lookup_dcookie",
    "iopl",
    "ioperm",
    "uselib",
    "vm86",
    "vm86old",
    "nfsservctl",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "fanotify_init",
    "lsm_set_self_attr",
)
ENOSYS_CALLS = ("clone3",)  # glibc falls back to clone(2), whose flags the filter can inspect
NAMESPACE_FLAGS = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
    "CLONE_NEWTIME": 0x00000080,
}
TIOCSTI, TIOCLINUX = 0x5412, 0x541C
ALLOWED_FAMILIES = (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6)
SOCK_RAW, SOCK_PACKET, SOCK_TYPE_MASK = 3, 10, 0xF


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def _errno_action(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


@cache
def _lib() -> ctypes.CDLL:
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as exc:
        raise OSError(
            f"libseccomp is not installed ({exc}); install it: apt-get install libseccomp2"
        ) from exc
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    ]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


def _rule(lib: ctypes.CDLL, ctx: int, action: int, name: str, *cmps: tuple[int, int, int, int]) -> None:
    nr = lib.seccomp_syscall_resolve_name(name.encode())
    if nr < 0:
        return
    arr = (_ArgCmp * max(len(cmps), 1))(*[_ArgCmp(*c) for c in cmps])
    rc = lib.seccomp_rule_add_array(ctx, action, nr, len(cmps), arr)
    if rc < 0:
        raise OSError(-rc, f"seccomp_rule_add({name}) failed: {os.strerror(-rc)}")


@dataclass(frozen=True)
class Rule:
    """One refusal: `syscall` answers `errno` when every argument condition holds (none: always).
    A condition is (argument index, op, a, b): op "EQ" (arg == a), "GT" (arg > a) or "MASKED_EQ"
    (arg & a == b), libseccomp's and Docker's meaning of the two values."""

    syscall: str
    errno: int
    args: tuple[tuple[int, str, int, int], ...] = ()


def rules() -> tuple[Rule, ...]:
    """Every rule of the filter, in order: the one list both libseccomp (here) and the Docker seccomp
    profile (`runtime.docker._profile`) are built from."""
    out = [Rule(name, errno.EPERM) for name in DENIED]
    out += [Rule(name, errno.ENOSYS) for name in ENOSYS_CALLS]
    out += [Rule("clone", errno.EPERM, ((0, "MASKED_EQ", f, f),)) for f in NAMESPACE_FLAGS.values()]
    # the kernel reads the ioctl request as 32 bits: mask it
    out += [Rule("ioctl", errno.EPERM, ((1, "MASKED_EQ", 0xFFFFFFFF, r),)) for r in (TIOCSTI, TIOCLINUX)]
    top = max(ALLOWED_FAMILIES)
    out += [
        Rule("socket", errno.EAFNOSUPPORT, ((0, "EQ", family, 0),))
        for family in range(top)
        if family not in ALLOWED_FAMILIES
    ]
    out.append(Rule("socket", errno.EAFNOSUPPORT, ((0, "GT", top, 0),)))
    # Raw and packet sockets of the allowed IP families: EPERM, as without CAP_NET_RAW. Only for those
    # families, so that a refused family is EAFNOSUPPORT whatever its type (netlink is SOCK_RAW).
    out += [
        Rule("socket", errno.EPERM, ((0, "EQ", family, 0), (1, "MASKED_EQ", SOCK_TYPE_MASK, kind)))
        for family in (socket.AF_INET, socket.AF_INET6)
        for kind in (SOCK_RAW, SOCK_PACKET)
    ]
    return tuple(out)


def add_rules(lib: ctypes.CDLL, ctx: int, filter_rules: tuple[Rule, ...]) -> None:
    for rule in filter_rules:
        cmps = [(index, _CMP[op], a, b) for index, op, a, b in rule.args]
        _rule(lib, ctx, _errno_action(rule.errno), rule.syscall, *cmps)


def compile_bpf(filter_rules: tuple[Rule, ...] | None = None) -> bytes:
    """The filter (`rules()`, or `filter_rules`) as classic BPF bytes (what `seccomp_export_bpf` writes)."""
    lib = _lib()
    ctx = lib.seccomp_init(_ACT_ALLOW)
    if not ctx:
        raise OSError("seccomp_init failed")
    try:
        rc = lib.seccomp_attr_set(ctx, _ATTR_ACT_BADARCH, _ACT_KILL_PROCESS)
        if rc < 0:
            raise OSError(-rc, "seccomp_attr_set(ACT_BADARCH) failed")
        add_rules(lib, ctx, rules() if filter_rules is None else filter_rules)
        fd = os.memfd_create("openshell-seccomp", os.MFD_CLOEXEC)
        try:
            rc = lib.seccomp_export_bpf(ctx, fd)
            if rc < 0:
                raise OSError(-rc, "seccomp_export_bpf failed")
            os.lseek(fd, 0, os.SEEK_SET)
            return os.read(fd, 1 << 20)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)


@cache
def _cached_bpf() -> bytes:
    return compile_bpf()


def filter_fd() -> int:
    """A fresh read-only fd (not close-on-exec is the caller's job) positioned at the filter's start."""
    data = _cached_bpf()
    fd = os.memfd_create("openshell-seccomp", os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
