"""Files planted in a workspace never run later as the user, as root and as an unprivileged user.

Every protected name of a workspace the caller gave (`_protect.DEFAULT_PROTECTED`, the `.git` of the
directories one and two levels down, and what `filesystem.workspace_protected` adds) stays readable but
cannot be written, created, renamed, replaced, deleted or re-moded from inside; the host tools the user
then runs there (git, make, pytest, python -m) run nothing the sandbox planted. The controls: the same
operations succeed on unprotected names, and with the names listed in `filesystem.workspace_writable`
the same plants do run on the host, which shows the checks can see them. Placeholders go when the
sandbox does; a home directory is refused as a workspace.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from jupyter_openshell.runtime._protect import DEFAULT_PROTECTED, EXISTING

OWNER = 4242  # as root: a workspace of an unprivileged user, whose uid the sandbox then runs as
DENY = "network:\n  egress:\n    - action: deny\n"
NESTED = ["sub/.git", "sub/deeper/.git"]

# Each operation on each name; prints the ones that succeeded (none may, for protected names).
ATTACK = r"""
import json, os, shutil, sys
names = json.loads(sys.argv[1])
done = []
def attempt(label, func):
    try:
        func()
        done.append(label)
    except OSError:
        pass
for name in names:
    path = "/workspace/" + name
    isdir = os.path.isdir(path)
    if isdir:
        attempt(f"{name}: create inside", lambda: open(path + "/planted", "w").close())
    else:
        attempt(f"{name}: write", lambda: open(path, "a").write("planted\n"))
        attempt(f"{name}: truncate", lambda: os.truncate(path, 0))
    attempt(f"{name}: chmod", lambda: os.chmod(path, 0o777))
    attempt(f"{name}: rename away", lambda: os.rename(path, path + ".moved"))
    attempt(f"{name}: delete", lambda: shutil.rmtree(path) if isdir else os.unlink(path))
    if os.path.lexists(path):
        other = path + ".new"
        attempt(f"{name}: replace", lambda: (os.mkdir(other) if isdir else open(other, "w").close(),
                                             os.rename(other, path)))
    attempt(f"{name}: symlink", lambda: os.symlink("/tmp", path))
    attempt(f"{name}: hard link", lambda: os.link(path, path + ".link"))
print(json.dumps(done))
"""


def _owner(mode) -> int:
    return OWNER if mode.name == "root" else mode.uid


def _as(uid: int, argv: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess:
    if uid:
        argv = ["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups", *argv]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, cwd=cwd)


@pytest.fixture
def project(mode):
    """A user's project: a git repository (with two nested ones), a Makefile, a test; owned by OWNER
    (root) or the unprivileged user; and a world-writable directory for the planted commands' marks."""
    workspace = mode.workspace()
    marks = mode.root / f"marks-{uuid.uuid4().hex[:6]}"
    marks.mkdir()
    marks.chmod(0o777)
    (workspace / "Makefile").write_text("all:\n\t@echo user-make\n")
    (workspace / "tests").mkdir()
    (workspace / "tests" / "test_x.py").write_text("def test_x():\n    pass\n")
    (workspace / "notes.txt").write_text("notes\n")
    (workspace / "data").mkdir()
    for repo in (workspace, workspace / "sub", workspace / "sub" / "deeper"):
        repo.mkdir(exist_ok=True)
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["chown", "-R", f"{_owner(mode)}:{_owner(mode)}", str(workspace)], check=True)
    yield workspace, marks
    shutil.rmtree(workspace, ignore_errors=True)
    shutil.rmtree(marks, ignore_errors=True)


def _plant(marks: Path, extra: str = "") -> str:
    """Shell run inside: plant what would run on the host as the user (each step may fail)."""
    hook = f"#!/bin/sh\ntouch {marks}/hook\n"
    return f"""
cd /workspace
for repo in top sub deeper; do
  dir=$repo; [ $repo = top ] && dir=.; [ $repo = deeper ] && dir=sub/deeper
  printf '{hook}' > $dir/.git/hooks/pre-commit; chmod +x $dir/.git/hooks/pre-commit
  printf "[core]\\n\\tfsmonitor = touch {marks}/fsmonitor-$repo; false\\n" >> $dir/.git/config
done
mv .git .git-old; mkdir -p .git && cp -r .git-old/. .git/ 2>/dev/null
printf '[core]\\n\\tfsmonitor = touch {marks}/swapped; false\\n' >> .git/config
printf 'all:\\n\\t@touch {marks}/make\\n$(shell touch {marks}/make-shell)\\n' > GNUmakefile
printf 'import pathlib\\npathlib.Path("{marks}/conftest").touch()\\n' > conftest.py
printf 'import pathlib\\npathlib.Path("{marks}/json").touch()\\n' > json.py
{extra}
true
"""


def _host_tools(mode, workspace: Path, marks: Path) -> list[str]:
    """Run what the user runs in the workspace afterwards; the marks the planted code left."""
    uid, home = _owner(mode), mode.inputs
    for repo in (".", "sub", "sub/deeper"):
        _as(uid, ["git", "-C", repo, "status", "--short"], workspace, home)
        _as(
            uid,
            [
                "git",
                "-C",
                repo,
                "-c",
                "user.name=u",
                "-c",
                "user.email=u@x",
                "commit",
                "-qm",
                "x",
                "--allow-empty",
            ],
            workspace,
            home,
        )
    make = _as(uid, ["make", "-n"], workspace, home)
    _as(
        uid,
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests"],
        workspace,
        home,
    )
    _as(uid, [sys.executable, "-m", "json.tool", "notes.json"], workspace, home)
    assert make.returncode == 0 or "make" in os.listdir(marks) or "make-shell" in os.listdir(marks), (
        make.stderr
    )
    return sorted(os.listdir(marks))


def test_protected_names_cannot_be_changed_from_inside(mode, project):
    """Every protected name: missing ones (placeholders) and, for the names protected only where they
    exist (`EXISTING`: no current host tool loads them from the working directory), existing ones."""
    workspace, _marks = project
    existing_only = [n for n, kind in DEFAULT_PROTECTED.items() if kind == EXISTING]
    for rel in existing_only:
        (workspace / rel).write_text("# the user's own\n")
        os.chown(workspace / rel, _owner(mode), _owner(mode))
    name = mode.create(DENY, workspace=workspace)
    names = [*DEFAULT_PROTECTED, *NESTED]
    proc = mode.python(name, ATTACK, json.dumps(names), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [], proc.stdout  # not one operation on one protected name
    assert all((workspace / rel).read_text() == "# the user's own\n" for rel in existing_only)
    # readable from inside: the repository and the Makefile
    assert "user-make" in mode.sh(name, "cat /workspace/Makefile").stdout
    assert mode.sh(name, "cat /workspace/.git/HEAD").stdout.startswith("ref:")
    # a directory that holds a nested .git stays writable but cannot be moved away (with its .git) to
    # make room for a directory of the sandbox's own
    moved = mode.sh(
        name, "cd /workspace && touch sub/new deeper-ok 2>&1; mv sub sub2 2>&1; rm -rf sub/deeper 2>&1"
    )
    assert "Device or resource busy" in moved.stdout and (workspace / "sub" / "new").exists(), moved.stdout
    assert (workspace / "sub" / "deeper" / ".git").is_dir()
    # the control: the same operations on names that are not protected all succeed
    control = mode.python(name, ATTACK, json.dumps(["notes.txt", "data"]), timeout=60)
    assert len(json.loads(control.stdout)) >= 8, control.stdout
    mode.rm(name)


def test_host_tools_run_nothing_planted(mode, project):
    workspace, marks = project
    name = mode.create(DENY + 'filesystem:\n  workspace_protected: ["json.py"]\n', workspace=workspace)
    mode.sh(name, _plant(marks))
    assert _host_tools(mode, workspace, marks) == []
    mode.rm(name)
    # the placeholders went with the sandbox; the user's files are as they were
    assert not (workspace / "GNUmakefile").exists() and not (workspace / "conftest.py").exists()
    assert not (workspace / "json.py").exists() and not (workspace / ".vscode").exists()
    assert (workspace / "Makefile").read_text() == "all:\n\t@echo user-make\n"
    assert (workspace / ".git" / "HEAD").exists() and not (workspace / ".git-old").exists()


def test_control_names_made_writable_by_policy_do_run_on_the_host(mode, project):
    """The control: `workspace_writable` lifts the protection, and the same plants then run on the
    host (git hooks and fsmonitor, nested too, make, pytest's conftest, python -m's json.py)."""
    workspace, marks = project
    writable = '[".git", "GNUmakefile", "conftest.py"]'
    name = mode.create(DENY + f"filesystem:\n  workspace_writable: {writable}\n", workspace=workspace)
    mode.sh(name, _plant(marks))
    mode.rm(name)
    found = _host_tools(mode, workspace, marks)
    for mark in ("fsmonitor-sub", "fsmonitor-deeper", "hook", "make-shell", "conftest", "json", "swapped"):
        assert mark in found, (mark, found)  # ("swapped": the whole .git was replaced)


def test_a_linked_protected_name_is_refused(mode, project):
    workspace, _marks = project
    os.symlink("notes.txt", workspace / "conftest.py")
    refused = mode.cli("create", "--backend", mode.backend, "--workspace", str(workspace), check=False)
    assert refused.returncode == 1 and "conftest.py is a symbolic link" in refused.stderr, refused.stderr
    assert "workspace_writable" in refused.stderr
    assert not (workspace / ".vscode").exists()  # (no placeholder left behind by the refused create)


def test_home_directory_is_refused_as_a_workspace(mode):
    home = mode.root / f"home-{uuid.uuid4().hex[:6]}"  # (root's own /root is a system directory anyway)
    home.mkdir()
    os.chown(home, mode.uid, mode.uid)
    env = {"HOME": str(home)}
    for workspace in (home, home.parent):
        refused = mode.cli(
            "create", "--backend", mode.backend, "--workspace", str(workspace), check=False, env=env
        )
        assert refused.returncode == 1 and "home directory" in refused.stderr, refused.stderr
        assert f"{home}/projects/NAME" in refused.stderr
    below = home / "project"  # (a project folder below it is fine)
    name = mode.create(DENY, workspace=below, env=env)
    mode.rm(name)
    shutil.rmtree(home, ignore_errors=True)
