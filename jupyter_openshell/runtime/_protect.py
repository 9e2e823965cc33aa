"""Workspace entries a sandbox may read but never create, change, rename or delete.

Host tools later run in the workspace as the user: git reads `.git/config` and runs its hooks, make
reads `Makefile`, pytest imports `conftest.py`, `python -m` imports modules from the current
directory, shells and editors read their start-up files. `plan(workspace, writable, extra, ...)` lists
what to protect: every name of `DEFAULT_PROTECTED` (plus `filesystem.workspace_protected`, minus
`filesystem.workspace_writable`) and the `.git` of the directories one and two levels down. An existing
entry is bound read-only onto itself (a directory wholesale: writes fail with EROFS, renames and
deletes with EBUSY); a missing one gets a placeholder the host creates, of the kind that host tools
treat as absent (see `DEFAULT_PROTECTED`), owned like the workspace, then bound read-only, recorded,
and removed on stop/destroy/gc while it is still the untouched placeholder and no other live sandbox of
this state directory uses it (a sandbox that finds another's placeholder adopts it). The directories
holding a protected entry below the top level are bound writable onto themselves, so that they cannot
be moved away with it. It costs one lstat per name and one per directory scanned (two levels, at most
`MAX_SCAN`), never a recursive walk.
It must never follow a link (a protected entry that is a link, a special file or a multiply linked
file is refused), and never remove anything it did not create.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.machinery
import os
import stat
from dataclasses import asdict, dataclass, field

from ._types import SandboxError

DIR, FILE, MAKE, SETUP, EXISTING = "dir", "file", "make", "setup", "existing"
_MODULES = ("ipykernel_launcher", "jupyter_openshell", "sitecustomize", "usercustomize")
_CONFIGS = ("jupyter", "jupyter_server", "jupyter_lab", "jupyter_notebook", "jupyter_nbconvert", "ipython")
# name -> the placeholder made when it is missing, chosen so that host tools behave as if it were absent:
# FILE (empty) where an empty file is inert; DIR where tools look for a file and skip a directory
# (git's discovery skips an empty `.git` directory, importlib/pytest/pip/tox check for a regular file),
# or where the user's tools may create files inside (editor folders); MAKE and SETUP are files whose
# content is what the tool does without them (see `_text`); EXISTING: protected where it exists, no
# placeholder where it does not (names no current host tool loads from the working directory, kept off
# the notebook folder's listing: Jupyter/IPython read these config files from their config directories,
# and the module forms below the top one are only found where the working directory is on sys.path,
# which every host Python this project or its server starts keeps it off: `-I`/`PYTHONSAFEPATH`).
DEFAULT_PROTECTED: dict[str, str] = {
    ".git": DIR,
    ".gitmodules": FILE,
    ".gitattributes": FILE,
    **dict.fromkeys(
        (
            ".bashrc",
            ".bash_profile",
            ".bash_login",
            ".bash_logout",
            ".profile",
            ".zshrc",
            ".zshenv",
            ".zprofile",
        ),
        FILE,
    ),
    **dict.fromkeys((".inputrc", ".envrc", ".jupyter", ".ipython", ".local"), FILE),
    **{f"{app}_config{ext}": EXISTING for app in _CONFIGS for ext in (".py", ".json")},
    "ipython_kernel_config.py": EXISTING,
    "ipython_kernel_config.json": EXISTING,
    # `python -m M` and `import M` in the workspace: any form of the module. Neither placeholder is
    # importable: a directory named `M.py` (or `.so`, ...) is no module, and a FILE named `M` is no
    # package (an empty directory `M` would be a namespace package, which outranks a package that an
    # editable install serves through its own finder)
    **{name: FILE for name in _MODULES[:2]},
    **{name + ".py": DIR for name in _MODULES[:2]},
    **{name + suffix: EXISTING for name in _MODULES for suffix in importlib.machinery.all_suffixes()
       if (name, suffix) not in ((m, ".py") for m in _MODULES[:2])},
    **{name: EXISTING for name in _MODULES[2:]},
    **dict.fromkeys(("conftest.py", "noxfile.py", "setup.cfg", ".mcp.json"), FILE),
    **dict.fromkeys(("pytest.ini", "tox.ini", "pyproject.toml", "justfile", "package.json"), DIR),
    "setup.py": SETUP,
    # make reads the first of GNUmakefile, makefile, Makefile that exists, whatever its type
    **dict.fromkeys(("GNUmakefile", "makefile", "Makefile"), MAKE),
    **dict.fromkeys((".vscode", ".idea", ".cursor", ".claude", ".devcontainer"), DIR),
    # configuration other tools run commands from: pre-commit's hooks, npm/yarn settings (node options,
    # script shell, yarnPath), cargo's config (runners, wrappers), a `.env` that pipenv and editors load
    # into the environment (PYTHONPATH, LD_PRELOAD); an empty file or directory is inert to each
    **dict.fromkeys((".pre-commit-config.yaml", ".npmrc", ".yarnrc", ".yarnrc.yml", ".env"), FILE),
    ".cargo": DIR,
    # where they exist: mercurial's repository (hooks in .hg/hgrc; a placeholder would look like a
    # repository) and build files of tools users run by name in their own projects
    **dict.fromkeys(
        (".hg", "Taskfile.yml", "Rakefile", "Gemfile", "Cargo.toml", "build.gradle", "CMakeLists.txt"),
        EXISTING,
    ),
}
_MAKE_ORDER = ("GNUmakefile", "makefile", "Makefile")
NESTED = ".git"  # also protected one and two levels down, where it exists
MAX_SCAN = 1024  # directories looked into for a nested .git
SKIP_SCAN = frozenset({"node_modules", "__pycache__", ".git"})
PLACEHOLDER_MODE = {DIR: 0o755, FILE: 0o644, MAKE: 0o644, SETUP: 0o644}  # (as the user's own files)


@dataclass
class Protection:
    """What `plan` found: `bind` (relative paths, bound read-only onto themselves), `placeholders`
    ([relative path, kind, dev, ino, size, mtime_ns] of what the host created), `warnings`."""

    workspace: str
    bind: list[str] = field(default_factory=list)
    placeholders: list[list] = field(default_factory=list)
    pinned: list[str] = field(default_factory=list)
    writable: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> Protection | None:
        if not data:
            return None
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def names(writable: tuple[str, ...] | list[str], extra: tuple[str, ...] | list[str]) -> dict[str, str]:
    """The protected relative paths and their placeholder kinds (the policy's additions are files
    or directories as they exist; missing, they get a directory placeholder)."""
    wanted = dict(DEFAULT_PROTECTED)
    wanted.update({p: wanted.get(p, DIR) for p in extra})
    return {p: kind for p, kind in wanted.items() if p not in set(writable)}


def plan(
    workspace: str,
    writable: tuple[str, ...] | list[str],
    extra: tuple[str, ...] | list[str],
    owner: tuple[int, int] | None,
    in_use: set[tuple[int, int]],
) -> tuple[Protection, list[tuple[str, int, bool]]]:
    """Find what to protect in `workspace`, creating the missing placeholders; returns it with the
    binds to make, in order: (relative path, O_PATH fd, writable). Binding the fd, not the name, leaves
    nothing to race; the caller closes the fds. The directories that hold a protected entry below the
    top level come first, each bound writable onto itself: a mount point cannot be renamed, so the
    sandbox cannot move `sub/` away (its `.git` with it) and put a `sub/` of its own in its place.

    `owner` (uid, gid) for the placeholders (None: ours); `in_use` = (dev, ino) of placeholders that
    live sandboxes already recorded: found again, they are recorded here too (the last one out
    removes them)."""
    found = Protection(workspace, writable=sorted(writable))
    fds: list[tuple[str, int]] = []
    pinned: list[tuple[str, int, bool]] = []
    root = os.open(workspace, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        wanted = names(writable, extra)
        for rel, kind in wanted.items():
            parent, leaf = _open_parent(root, rel)
            if parent is None:
                found.warnings.append(f"{rel}: its directory does not exist here, so it is not protected")
                continue
            try:
                made = _lstat(leaf, parent) is None and _make_placeholder(
                    parent, leaf, kind, owner, _text(root, rel, kind)
                )
                fd = _open_path(leaf, parent)
                if fd is None:
                    continue  # (missing: EXISTING-only, or we may not create it: neither may the sandbox)
                fds.append((rel, fd))
                st = os.fstat(fd)
                if made or (st.st_dev, st.st_ino) in in_use:
                    found.placeholders.append([rel, kind, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns])
                else:
                    _check(workspace, rel, st)
                    found.bind.append(rel)
            finally:
                if parent != root:
                    os.close(parent)
        if NESTED in wanted:
            _nested_git(workspace, root, found, fds)
        pins = sorted(
            {"/".join(rel.split("/")[:n]) for rel, _fd in fds for n in range(1, rel.count("/") + 1)}
        )
        for rel in sorted(pins, key=lambda p: p.count("/")):
            parent, leaf = _open_parent(root, rel)
            fd = None if parent is None else _open_path(leaf, parent)
            if parent not in (None, root):
                os.close(parent)
            if fd is not None:
                pinned.append((rel, fd, True))
                _check(workspace, rel, os.fstat(fd))
                found.pinned.append(rel)
    except BaseException:
        for _rel, fd, *_w in (*pinned, *fds):
            os.close(fd)
        remove_placeholders(found, in_use)  # (those it made; adopted ones stay with their sandboxes)
        raise
    finally:
        os.close(root)
    return found, [*pinned, *((rel, fd, False) for rel, fd in fds)]


def remove_placeholders(protection: Protection | None, in_use: set[tuple[int, int]]) -> None:
    """Remove the placeholders this sandbox made or adopted that are unchanged and that no other
    live sandbox (`in_use`: their (dev, ino)) still relies on."""
    if protection is None:
        return
    try:
        root = os.open(protection.workspace, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        for rel, kind, dev, ino, size, mtime in protection.placeholders:
            if (dev, ino) in in_use:
                continue
            parent, leaf = _open_parent(root, rel)
            if parent is None:
                continue
            try:
                st = _lstat(leaf, parent)
                if st is None or (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != (
                    dev,
                    ino,
                    size,
                    mtime,
                ):
                    continue
                with contextlib.suppress(OSError):  # (a directory someone filled stays)
                    if kind == DIR and stat.S_ISDIR(st.st_mode):
                        os.rmdir(leaf, dir_fd=parent)
                    elif kind != DIR and stat.S_ISREG(st.st_mode):
                        os.unlink(leaf, dir_fd=parent)
            finally:
                if parent != root:
                    os.close(parent)
    finally:
        os.close(root)


def placeholder_ids(protection: Protection | None) -> set[tuple[int, int]]:
    if protection is None:
        return set()
    return {(p[2], p[3]) for p in protection.placeholders}


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None


def _open_parent(root: int, rel: str) -> tuple[int | None, str]:
    """(fd of the directory holding `rel`, its last component), walking without following links."""
    *dirs, leaf = rel.split("/")
    fd = root
    for part in dirs:
        try:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        except OSError:
            nxt = None
        if fd != root:
            os.close(fd)
        if nxt is None:
            return None, leaf
        fd = nxt
    return fd, leaf


def _check(workspace: str, rel: str, st: os.stat_result) -> None:
    where = os.path.join(workspace, rel)
    fix = (
        f"replace it by a regular file or directory, or let sandboxes change it with "
        f'`filesystem: {{workspace_writable: ["{rel}"]}}` in the policy'
    )
    if stat.S_ISLNK(st.st_mode):
        raise SandboxError(
            f"{where} is a symbolic link: openshell protects it from the sandbox and never follows a link "
            f"there (the sandbox could change what it points to); {fix}"
        )
    if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        raise SandboxError(f"{where} is neither a regular file nor a directory; {fix}")
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
        raise SandboxError(
            f"{where} has {st.st_nlink} hard links: the sandbox could change it through another name; {fix}"
        )


def _text(root: int, rel: str, kind: str) -> bytes:
    """A file placeholder's content: a missing make file includes the one make reads after it (so the
    user's makefile still rules); setup.py does what setuptools does without one."""
    if kind == SETUP:
        return b"# openshell: protected from the sandbox\nfrom setuptools import setup\n\nsetup()\n"
    if kind != MAKE:
        return b""
    for name in _MAKE_ORDER[_MAKE_ORDER.index(rel) + 1 :]:
        st = _lstat(name, root)
        if st is not None and stat.S_ISREG(st.st_mode):
            return (
                f"# openshell: {rel} is protected from the sandbox while it runs\ninclude {name}\n".encode()
            )
    return b""


def _make_placeholder(parent: int, leaf: str, kind: str, owner: tuple[int, int] | None, text: bytes) -> bool:
    """Create the placeholder (False for an EXISTING-only name, and where we may not write: then neither
    may the sandbox)."""
    if kind == EXISTING:
        return False
    flags = os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        if kind == DIR:
            os.mkdir(leaf, 0o700, dir_fd=parent)
            fd = os.open(leaf, os.O_RDONLY | os.O_DIRECTORY | flags, dir_fd=parent)
        else:
            fd = os.open(leaf, os.O_WRONLY | os.O_CREAT | os.O_EXCL | flags, 0o600, dir_fd=parent)
            os.write(fd, text)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return False
        raise
    try:
        if owner is not None:
            os.fchown(fd, *owner)
        os.fchmod(fd, PLACEHOLDER_MODE[kind])
    finally:
        os.close(fd)
    return True


def _open_path(name: str, dir_fd: int) -> int | None:
    """An O_PATH fd of `name` itself (a link is opened as the link, never followed)."""
    try:
        return os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None


def _nested_git(workspace: str, root: int, found: Protection, fds: list[tuple[str, int]]) -> None:
    """Add the existing `.git` of the directories one and two levels down."""
    scanned = 0
    level: list[tuple[str, int]] = [("", root)]
    opened: list[int] = []
    try:
        for depth in (1, 2):
            below: list[tuple[str, int]] = []
            for prefix, fd in level:
                try:
                    entries = [e.name for e in os.scandir(fd) if e.is_dir(follow_symlinks=False)]
                except OSError:
                    continue
                for name in entries:
                    if name in SKIP_SCAN or (depth == 1 and name in DEFAULT_PROTECTED):
                        continue
                    scanned += 1
                    if scanned > MAX_SCAN:
                        found.warnings.append(
                            f"more than {MAX_SCAN} directories one or two levels down: a .git below "
                            "the others is not protected"
                        )
                        return
                    try:
                        sub = os.open(
                            name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
                        )
                    except OSError:
                        continue
                    opened.append(sub)
                    git = _open_path(NESTED, sub)
                    if git is not None:
                        rel = f"{prefix}{name}/{NESTED}"
                        fds.append((rel, git))
                        _check(workspace, rel, os.fstat(git))
                        found.bind.append(rel)
                    if depth == 1:
                        below.append((f"{prefix}{name}/", sub))
            level = below
    finally:
        for fd in opened:
            os.close(fd)
