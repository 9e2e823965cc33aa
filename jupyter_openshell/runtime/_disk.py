"""The workspace's share of `resources.disk`: project quotas, a loop-mounted ext4 image or a tmpfs.

`plan(workspace, private, disk, root)` picks the strongest mechanism this host allows for one sandbox:
  * "project quota": the workspace's filesystem enforces project quotas (ext4 prjquota, xfs pquota) and
    we are root: the workspace tree gets a project id and the id a block and inode limit;
  * "ext4 image" (root, private workspace): a sparse ext4 image of `disk` bytes with a proportional
    inode count, loop-mounted (autoclear) on the workspace directory; kept across `stop`;
  * "tmpfs" (unprivileged, private workspace): a size- and inode-limited tmpfs that the shim mounts in
    a user and mount namespace of its own before bwrap starts (lost when the sandbox stops);
  * "none": a workspace the caller gave, on a filesystem without project quotas: NOT-ENFORCED (each
    file stays capped by RLIMIT_FSIZE).
`attach(disk)` sets the plan up on the host, `release(disk, remove)` undoes it (unmount, detach, quota
limits restored; the image removed with `remove`). It must never mount anything where a sandbox can
name the source (images live in root's exposed directory, 0600), never leave a loop device attached
(every loop is autoclear and detached when its mount goes), and never follow a link in a workspace.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
import stat
import struct
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_PRIVATE = 1 << 30  # a private workspace without `resources.disk`
BYTES_PER_INODE = 16384  # ext4's default ratio
MIN_INODES = 1024
MIN_SIZE = 8 << 20  # smaller ext4 images would be mostly metadata
TEMPLATES = ".images"  # in the exposed root: one pristine image per (size, inodes), copied sparsely

_MS_NOSUID, _MS_NODEV = 2, 4
_MNT_DETACH = 2
_LOOP_CTL_GET_FREE, _LOOP_CONFIGURE, _LO_FLAGS_AUTOCLEAR = 0x4C82, 0x4C0A, 4
_SYS_QUOTACTL_FD = 443  # same number on x86_64 and aarch64
_PRJQUOTA = 2
_Q_GETQUOTA, _Q_SETQUOTA, _Q_XGETQSTAT = 0x800007, 0x800008, 0x5805
_PDQ_ENFD = 0x0020  # fs_quota_stat.qs_flags: project limits enforced
_QIF_LIMITS = 1 | 4  # block and inode hard/soft limits
_DQBLK = struct.Struct("=QQQQQQQQI4x")  # struct if_dqblk
_FS_IOC_FSGETXATTR, _FS_IOC_FSSETXATTR = 0x801C581F, 0x401C5820
_FSXATTR = struct.Struct("=IIII I8x")  # xflags, extsize, nextents, projid, cowextsize
_XFLAG_PROJINHERIT = 0x200

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


@dataclass
class Disk:
    """What limits one sandbox's workspace (stored in its record as `disk`)."""

    mechanism: str  # "project quota" | "ext4 image" | "tmpfs" | "none"
    limit: int | None = None  # bytes
    inodes: int | None = None
    workspace: str = ""
    image: str | None = None  # "ext4 image": the image file
    projid: int | None = None  # "project quota": the project id and the limits it had before
    saved: list[int] = field(default_factory=list)
    why: str = ""  # "none": why nothing limits the workspace

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> Disk | None:
        if not data:
            return None
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def inodes_for(size: int) -> int:
    return max(MIN_INODES, size // BYTES_PER_INODE)


def plan(workspace: Path, private: bool, disk: int | None, root: bool, exposed: Path) -> Disk:
    """The mechanism for this workspace (nothing is set up yet: see `attach`)."""
    size = disk if disk else (DEFAULT_PRIVATE if private else None)
    if size is not None and root and _project_quota_enforced(workspace):
        return Disk("project quota", size, inodes_for(size), str(workspace))
    if size is None:
        return Disk("none", workspace=str(workspace), why="no resources.disk is set")
    if private and root:
        size = max(size, MIN_SIZE)
        return Disk(
            "ext4 image", size, inodes_for(size), str(workspace), image=str(exposed / "workspace.img")
        )
    if private:
        return Disk("tmpfs", size, inodes_for(size), str(workspace))
    fs = _fs_type(workspace)
    why = f"its filesystem ({fs}) does not enforce project quotas"
    if not root:
        why = "project quotas need root" if _project_quota_enforced(workspace) else why
    return Disk("none", size, None, str(workspace), why=why)


def attach(disk: Disk) -> None:
    """Set `disk` up on the host (for "tmpfs" the shim does it: see `shim_prefix`)."""
    if disk.mechanism == "ext4 image":
        _mount_image(disk)
    elif disk.mechanism == "project quota":
        _set_project(disk)


def release(disk: Disk | None, remove: bool) -> None:
    """Undo `attach` (idempotent): unmount the image (its loop detaches), lift the quota; with
    `remove`, also delete the image file."""
    if disk is None:
        return
    if disk.mechanism == "ext4 image":
        unmount(disk.workspace)
        if remove and disk.image:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(disk.image)
    elif disk.mechanism == "project quota" and disk.projid is not None:
        with contextlib.suppress(OSError):
            _set_limits(disk.workspace, disk.projid, disk.saved or [0, 0, 0, 0])


def shim_prefix(disk: Disk) -> list[str]:
    """Argv to put before bwrap: for "tmpfs", enter a user + mount namespace of our own (root in it is
    the caller's uid), mount the limited tmpfs on the workspace there, then exec bwrap ("$@")."""
    if disk.mechanism != "tmpfs":
        return []
    options = f"size={disk.limit},nr_inodes={disk.inodes},mode=0700,nosuid,nodev"
    mount = shutil.which("mount", path="/usr/bin:/bin") or "/usr/bin/mount"
    script = f'{mount} -t tmpfs -o {options} openshell-workspace "$0" && exec "$@"'
    unshare = shutil.which("unshare", path="/usr/bin:/bin") or "/usr/bin/unshare"
    return [
        unshare,
        "--user",
        "--map-root-user",
        "--mount",
        "--propagation",
        "private",
        "/bin/sh",
        "-c",
        script,
        disk.workspace,
    ]


def describe(disk: Disk | None, state: str) -> tuple[str, str]:
    """(by, note) of the workspace for `openshell sandbox ls`."""
    if disk is None:
        return "NOT-ENFORCED", "the workspace has no limit (created before workspace limits)"
    size = _human(disk.limit)
    if disk.mechanism == "ext4 image":
        where = "kept in the image while stopped" if state != "running" else "kept when the sandbox stops"
        return "ext4-image", (
            f"the workspace is a loop-mounted ext4 image of {size} with {disk.inodes} inodes "
            f"({disk.image}; {where})"
        )
    if disk.mechanism == "tmpfs":
        return "tmpfs", (
            f"the workspace is a tmpfs of {size} with {disk.inodes} inodes, LOST WHEN THE SANDBOX STOPS "
            "(an unprivileged host cannot mount a disk image; give --workspace DIR to keep files)"
        )
    if disk.mechanism == "project quota":
        return "prjquota", f"the workspace tree is project {disk.projid}: {size} and {disk.inodes} inodes"
    return "NOT-ENFORCED", f"the workspace ({disk.workspace}) has no quota: {disk.why}"


def _human(value: int | None) -> str:
    if not value:
        return "-"
    for unit, shift in (("Gi", 30), ("Mi", 20), ("Ki", 10)):
        if value >= 1 << shift and value % (1 << shift) == 0:
            return f"{value >> shift}{unit}"
    return f"{value} bytes"


# --- ext4 image -------------------------------------------------------------------------------
def _mount_image(disk: Disk) -> None:
    image, target = Path(str(disk.image)), disk.workspace
    _copy_sparse(
        _template(image.parent.parent / TEMPLATES, int(disk.limit or 0), int(disk.inodes or 0)), image
    )
    backing = os.open(image, os.O_RDWR | os.O_CLOEXEC)
    try:
        device = _attach_loop(backing, str(image))
    finally:
        os.close(backing)
    try:  # (autoclear: closing `device` unmounted detaches the loop; mounted, the unmount does)
        if (
            _libc.mount(
                f"/dev/loop{device[0]}".encode(),
                target.encode(),
                b"ext4",
                _MS_NOSUID | _MS_NODEV,
                b"noinit_itable,errors=remount-ro",
            )
            != 0
        ):
            err = ctypes.get_errno()
            raise OSError(err, f"mount of {image} on {target} failed: {os.strerror(err)}")
    finally:
        os.close(device[1])
    with contextlib.suppress(OSError):
        os.rmdir(os.path.join(target, "lost+found"))
    os.chmod(target, 0o700)


def _template(directory: Path, size: int, inodes: int) -> Path:
    """A pristine image for (size, inodes), made once with mkfs.ext4 (no journal: scratch space)."""
    path = directory / f"ext4-{size}-{inodes}.img"
    if path.exists():
        return path
    directory.mkdir(mode=0o700, exist_ok=True)
    mkfs = shutil.which("mkfs.ext4", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if mkfs is None:
        raise OSError(
            errno.ENOENT, "mkfs.ext4 is not installed: run scripts/setup.sh (apt-get install e2fsprogs)"
        )
    tmp = directory / f".{path.name}.{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.truncate(size)
    argv = [
        mkfs,
        "-q",
        "-F",
        "-m",
        "0",
        "-N",
        str(inodes),
        "-O",
        "^has_journal",
        "-E",
        "nodiscard,lazy_itable_init=1",
        str(tmp),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, cwd="/", env={"PATH": "/usr/sbin:/usr/bin"})
    if done.returncode != 0:
        tmp.unlink()
        raise OSError(errno.EIO, f"mkfs.ext4 failed: {done.stderr.strip()}")
    os.replace(tmp, path)
    return path


def _copy_sparse(src: Path, dst: Path) -> None:
    fin = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        size = os.fstat(fin).st_size
        os.ftruncate(fout, size)
        offset = 0
        while offset < size:
            try:
                start = os.lseek(fin, offset, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # only a hole is left
                    break
                raise
            end = os.lseek(fin, start, os.SEEK_HOLE)
            while start < end:
                start += os.copy_file_range(fin, fout, end - start, start, start) or (end - start)
            offset = end
    finally:
        os.close(fin)
        os.close(fout)


def _attach_loop(backing: int, name: str) -> tuple[int, int]:
    """(loop number, open fd) of a free loop device now backed by `backing` with autoclear."""
    ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    try:
        for _ in range(64):
            number = fcntl.ioctl(ctl, _LOOP_CTL_GET_FREE)
            fd = os.open(f"/dev/loop{number}", os.O_RDWR | os.O_CLOEXEC)
            info = struct.pack(
                "=5Q4I64s64s32s2Q",
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                _LO_FLAGS_AUTOCLEAR,
                name.encode()[:63],
                b"",
                b"",
                0,
                0,
            )
            try:
                fcntl.ioctl(fd, _LOOP_CONFIGURE, struct.pack("=II", backing, 0) + info + bytes(64))
                return number, fd
            except OSError as exc:
                os.close(fd)
                if exc.errno != errno.EBUSY:  # (EBUSY: another process took it first)
                    raise
    finally:
        os.close(ctl)
    raise OSError(errno.EBUSY, "no free loop device")


def unmount(target: str) -> None:
    """Unmount `target` if something is mounted there (lazily when busy; the loop then detaches
    once the last user is gone)."""
    if not _is_mount(target):
        return
    if _libc.umount2(target.encode(), 0) != 0:
        _libc.umount2(target.encode(), _MNT_DETACH)


def _is_mount(path: str) -> bool:
    try:
        return os.path.ismount(path) and not os.path.islink(path)
    except OSError:
        return False


# --- project quotas ---------------------------------------------------------------------------
def _quotactl(fd: int, cmd: int, ident: int, buf: ctypes.Array) -> None:
    command = ctypes.c_uint(((cmd << 8) | _PRJQUOTA) & 0xFFFFFFFF)
    if _libc.syscall(ctypes.c_long(_SYS_QUOTACTL_FD), fd, command, ident, buf) < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _project_quota_enforced(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        buf = ctypes.create_string_buffer(256)
        _quotactl(fd, _Q_XGETQSTAT, 0, buf)
        return bool(struct.unpack_from("=bxH", buf.raw)[1] & _PDQ_ENFD)
    except OSError:
        return False
    finally:
        os.close(fd)


def _fs_type(path: Path) -> str:
    """The type of the filesystem holding `path` (from /proc/self/mountinfo, by device number)."""
    try:
        dev = os.stat(path).st_dev
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                parts = line.split()
                major, minor = (int(x) for x in parts[2].split(":"))
                if os.makedev(major, minor) == dev:
                    return parts[parts.index("-") + 1]
    except (OSError, ValueError):
        pass
    return "unknown"


def _fsxattr(fd: int, projid: int | None = None) -> int:
    """The project id of `fd`; with `projid`, first set it (and inheritance, for directories)."""
    raw = bytearray(fcntl.ioctl(fd, _FS_IOC_FSGETXATTR, bytes(_FSXATTR.size)))
    xflags, extsize, nextents, current, cow = _FSXATTR.unpack(bytes(raw))
    if projid is not None and (current != projid or not xflags & _XFLAG_PROJINHERIT):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            xflags |= _XFLAG_PROJINHERIT
        fcntl.ioctl(fd, _FS_IOC_FSSETXATTR, _FSXATTR.pack(xflags, extsize, nextents, projid, cow))
        current = projid
    return current


def _set_project(disk: Disk) -> None:
    """Give the workspace tree one project id (its existing one, else its inode number) and the id
    a limit. Existing entries are tagged too (a subdirectory left out would let new files escape);
    links and special files are skipped, never followed."""
    root = os.open(disk.workspace, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        projid = _fsxattr(root) or os.fstat(root).st_ino & 0x7FFFFFFF or 1
        buf = ctypes.create_string_buffer(_DQBLK.size)
        _quotactl(root, _Q_GETQUOTA, projid, buf)
        saved = list(_DQBLK.unpack(buf.raw)[:2]) + list(_DQBLK.unpack(buf.raw)[3:5])
        disk.projid, disk.saved = projid, saved
        _tag_tree(root, projid)
        _set_limits(disk.workspace, projid, [int(disk.limit or 0) // 1024, 0, int(disk.inodes or 0), 0])
    finally:
        os.close(root)


def _tag_tree(dirfd: int, projid: int) -> None:
    _fsxattr(dirfd, projid)
    for entry in os.scandir(dirfd):
        if entry.is_symlink() or not (entry.is_dir() or entry.is_file()):
            continue
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            fd = os.open(entry.name, flags | (os.O_DIRECTORY if entry.is_dir() else 0), dir_fd=dirfd)
        except OSError:
            continue
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                _tag_tree(fd, projid)
            elif stat.S_ISREG(os.fstat(fd).st_mode):
                _fsxattr(fd, projid)
        finally:
            os.close(fd)


def _set_limits(workspace: str, projid: int, limits: list[int]) -> None:
    """limits = [block hard (KiB), block soft, inode hard, inode soft]."""
    fd = os.open(workspace, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        bhard, bsoft, ihard, isoft = limits
        buf = ctypes.create_string_buffer(_DQBLK.pack(bhard, bsoft, 0, ihard, isoft, 0, 0, 0, _QIF_LIMITS))
        _quotactl(fd, _Q_SETQUOTA, projid, buf)
    finally:
        os.close(fd)
