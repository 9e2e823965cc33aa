"""The policy's `filesystem` section (root and unprivileged): read_only paths cannot be written,
read_write paths can, `hidden` paths show nothing, and the state directory stays hidden even when a
policy exposes a directory that contains it."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path


def test_filesystem_section_is_enforced(mode):
    host = Path(tempfile.mkdtemp(prefix="openshell-fs-"))
    (host / "ro").mkdir()
    (host / "ro" / "public.txt").write_text("public\n")
    (host / "ro" / "secret").mkdir()
    (host / "ro" / "secret" / "key.txt").write_text("hidden-key")
    (host / "rw").mkdir()
    for path in (host, host / "ro", host / "ro" / "secret", host / "rw"):
        path.chmod(0o755)
    (host / "rw").chmod(0o777)  # host permissions still apply to the sandbox's host uid
    policy = f"""\
network:
  egress:
    - action: deny
filesystem:
  read_only: ["{host}/ro", "{mode.root}"]
  read_write: ["{host}/rw"]
  hidden: ["{host}/ro/secret"]
"""
    name = mode.create(policy)
    out = mode.sh(
        name,
        f"cat {host}/ro/public.txt; ls -A {host}/ro/secret | wc -l; "
        f"touch {host}/ro/new 2>/dev/null || echo refused; echo written > {host}/rw/out.txt && echo rw-ok; "
        f"ls -A {mode.state} | wc -l; ls {mode.root}",
    ).stdout.split()
    assert out[:4] == ["public", "0", "refused", "rw-ok"]
    assert out[4] == "0"  # the state directory is masked: empty
    assert (host / "rw" / "out.txt").read_text() == "written\n"
    mode.rm(name)
    shutil.rmtree(host)
