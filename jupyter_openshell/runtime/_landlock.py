"""Landlock, the second filesystem wall, applied from inside the sandbox (ctypes syscalls, stdlib only).

`restrict(read_only, read_write, listable)` confines the calling process and all its future
children to the listed paths (read/execute below `read_only`, everything below `read_write`) and,
from ABI 6, to abstract UNIX sockets of its own domain. It needs no_new_privs (bubblewrap sets it).
On kernels without Landlock `abi()` is 0 and the caller decides; this module must never widen
access, only narrow it.
"""

from __future__ import annotations

import ctypes
import os
import struct

_SYS_CREATE, _SYS_ADD_RULE, _SYS_RESTRICT = 444, 445, 446  # same numbers on x86_64 and aarch64
_CREATE_VERSION = 1
_RULE_PATH_BENEATH = 1

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_MAKE_ALL = sum(1 << n for n in range(4, 13))  # remove dir/file, make char/dir/reg/sock/fifo/block/sym
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
SCOPE_ABSTRACT_UNIX = 1 << 0
_FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _call(nr: int, *args: object) -> int:
    rc = _libc.syscall(ctypes.c_long(nr), *args)
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock syscall {nr}: {os.strerror(err)}")
    return rc


def abi() -> int:
    """The kernel's Landlock ABI version, 0 when Landlock is absent or disabled."""
    rc = _libc.syscall(ctypes.c_long(_SYS_CREATE), None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_VERSION))
    return max(int(rc), 0)


def _handled(version: int) -> int:
    rights = EXECUTE | WRITE_FILE | READ_FILE | READ_DIR | _MAKE_ALL
    if version >= 2:
        rights |= REFER
    if version >= 3:
        rights |= TRUNCATE
    if version >= 5:
        rights |= IOCTL_DEV
    return rights


def _ruleset(fs: int, scoped: int, version: int) -> int:
    if version >= 6:
        attr = struct.pack("=QQQ", fs, 0, scoped)
    elif version >= 4:
        attr = struct.pack("=QQ", fs, 0)
    else:
        attr = struct.pack("=Q", fs)
    buf = ctypes.create_string_buffer(attr, len(attr))
    return _call(_SYS_CREATE, buf, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0))


def _add_path(ruleset: int, path: str, access: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # a path the sandbox does not have needs no rule
    try:
        if not os.path.isdir(path):
            access &= _FILE_RIGHTS
        attr = struct.pack("=Qi", access, fd)
        buf = ctypes.create_string_buffer(attr, len(attr))
        _call(_SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH), buf, ctypes.c_uint32(0))
    finally:
        os.close(fd)


def restrict(
    read_only: list[str],
    read_write: list[str],
    listable: tuple[str, ...] | list[str] = (),
    version: int | None = None,
) -> int:
    """Confine the caller's filesystem view; returns the ABI used (0: not applied, Landlock absent).
    `listable` directories (e.g. "/") may be listed, nothing more."""
    version = abi() if version is None else version
    if version <= 0:
        return 0
    handled = _handled(version)
    scoped = SCOPE_ABSTRACT_UNIX if version >= 6 else 0
    ruleset = _ruleset(handled, scoped, version)
    try:
        for path in listable:
            _add_path(ruleset, path, READ_DIR)
        for path in read_only:
            _add_path(ruleset, path, (EXECUTE | READ_FILE | READ_DIR) & handled)
        for path in read_write:
            _add_path(ruleset, path, handled)
        _call(_SYS_RESTRICT, ctypes.c_int(ruleset), ctypes.c_uint32(0))
    finally:
        os.close(ruleset)
    return version
