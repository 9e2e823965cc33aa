"""POSIX access ACLs (the `system.posix_acl_access` xattr): let a sandbox's host uid into a directory
the user gave without changing its owner, and put the directory back as it was afterwards.

`grant(path, uid)` adds `user:<uid>:rwx` (and widens the mask) and returns what `release` needs to
take exactly that entry out again. It works on an fd opened with O_NOFOLLOW, so a symlink swapped in
is never followed. It must never change a file's owner, and never touch anything but the one directory.
"""

from __future__ import annotations

import errno
import os
import stat
import struct

XATTR = "system.posix_acl_access"
_VERSION = 2
_USER_OBJ, _USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_NO_ID = 0xFFFFFFFF
_ENTRY = struct.Struct("<HHI")


def _open(path: str) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


def _parse(data: bytes) -> list[tuple[int, int, int]]:
    (version,) = struct.unpack_from("<I", data)
    if version != _VERSION:
        raise OSError(errno.EINVAL, f"unknown ACL xattr version {version}")
    return [_ENTRY.unpack_from(data, 4 + i * _ENTRY.size) for i in range((len(data) - 4) // _ENTRY.size)]


def _from_mode(mode: int) -> list[tuple[int, int, int]]:
    return [
        (_USER_OBJ, (mode >> 6) & 7, _NO_ID),
        (_GROUP_OBJ, (mode >> 3) & 7, _NO_ID),
        (_OTHER, mode & 7, _NO_ID),
    ]


def _encode(entries: list[tuple[int, int, int]]) -> bytes:
    ordered = sorted(entries, key=lambda e: (e[0], e[2]))  # the kernel wants them by tag, then id
    return struct.pack("<I", _VERSION) + b"".join(_ENTRY.pack(*e) for e in ordered)


def grant(path: str, uid: int) -> dict:
    """Give `uid` rwx on directory `path`; returns the saved state for `release` (JSON-able).
    Raises OSError (ENOTSUP/EOPNOTSUPP where the filesystem has no ACLs)."""
    fd = _open(path)
    try:
        st = os.fstat(fd)
        try:
            original: bytes | None = os.getxattr(fd, XATTR)
        except OSError as exc:
            if exc.errno != errno.ENODATA:
                raise
            original = None
        entries = _parse(original) if original else _from_mode(st.st_mode)
        entries = [e for e in entries if not (e[0] == _USER and e[2] == uid) and e[0] != _MASK]
        entries.append((_USER, 7, uid))
        entries.append((_MASK, _mask(entries), _NO_ID))
        os.setxattr(fd, XATTR, _encode(entries))
    finally:
        os.close(fd)
    return {
        "path": path,
        "dev": st.st_dev,
        "ino": st.st_ino,
        "acl": original.hex() if original else None,
        "uid": uid,
    }


def _mask(entries: list[tuple[int, int, int]]) -> int:
    mask = 0
    for tag, perm, _id in entries:
        if tag in (_USER, _GROUP_OBJ, _GROUP):
            mask |= perm
    return mask


def release(saved: dict) -> None:
    """Take `grant`'s entry out of the directory's ACL again. Only that entry: another sandbox may
    share the workspace and hold its own. With no named entry left, the ACL goes and the mode's group
    bits are the group's own again; otherwise the mask is the one found (or the union of what is left).
    A directory that was replaced meanwhile (other inode) is left alone."""
    try:
        fd = _open(saved["path"])
    except OSError:
        return
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (saved["dev"], saved["ino"]):
            return
        try:
            current = _parse(os.getxattr(fd, XATTR))
        except OSError as exc:
            if exc.errno != errno.ENODATA:
                raise
            return
        entries = [e for e in current if not (e[0] == _USER and e[2] == saved["uid"]) and e[0] != _MASK]
        named = {e for e in entries if e[0] in (_USER, _GROUP)}
        before = _parse(bytes.fromhex(saved["acl"])) if saved.get("acl") else []
        old_mask = [perm for tag, perm, _id in before if tag == _MASK]
        if not named:  # the mode says it all again: no ACL, the group's bits (as the old mask let them)
            os.removexattr(fd, XATTR)
            group = next(perm for tag, perm, _id in entries if tag == _GROUP_OBJ)
            group &= old_mask[0] if old_mask else 7
            os.chmod(fd, (stat.S_IMODE(st.st_mode) & ~0o070) | (group << 3))
            return
        added_since = named - set(before)  # entries of other sandboxes sharing the workspace
        mask = old_mask[0] if old_mask and not added_since else _mask(entries)
        os.setxattr(fd, XATTR, _encode([*entries, (_MASK, mask, _NO_ID)]))
    finally:
        os.close(fd)
