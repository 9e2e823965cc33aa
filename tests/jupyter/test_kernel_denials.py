"""Denials inside an OpenShell kernel, as a user meets them: one notice per distinct request with a count,
before the traceback of a cell that failed on it (the traceback shortened); hints that work there (the
host-side command where the kernel cannot change its own policy, the magic where its kernelspec enables
policy_edits); PolicyPanel's edit buttons disabled there, with the reason and what to do instead.
Real kernels, sandboxes, proxy and upstream.
"""

from __future__ import annotations

import pytest
from jupyter_client.manager import AsyncKernelManager
from kernel_io import run, text

from jupyter_openshell.kernel import pool
from jupyter_openshell.kernel.kernelspec import install

PANEL = """
from jupyter_openshell.widgets import PolicyPanel
p = PolicyPanel()
rows = [r for r in p.denials.children if hasattr(r, "children")]
print("editable", p.editable, "apply-disabled", p.apply_button.disabled,
      "rollback-disabled", p.rollback_button.disabled)
print("reason", "Read-only here" in p.read_only.value, "policy --set" in p.read_only.value.replace(
    "policy " + p.ops.name + " --set", "policy --set"))
print("rows", len(rows), all(c.disabled for r in rows for c in r.children if hasattr(c, "on_click")),
      any("openshell sandbox allow" in getattr(c, "value", "") for r in rows for c in r.children))
"""


@pytest.fixture
def kernels(tmp_path, monkeypatch, workspace, upstream):
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"network:\n  egress:\n    - host: 127.0.0.2\n      ports: [{upstream.port}]\n      paths:\n"
        "        - path: /ok\n          methods: [GET]\n      action: allow\n    - action: deny\n"
    )
    prefix = tmp_path / "prefix"
    install(prefix=str(prefix), policy_file=str(policy), pool_size=0)
    install(prefix=str(prefix), name="openshell-edits", policy_file=str(policy), pool_size=0,
            policy_edits=True)
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    yield workspace
    pool.shutdown_pools()


async def _kernel(name: str, cwd) -> tuple[AsyncKernelManager, object]:
    km = AsyncKernelManager(kernel_name=name)
    await km.start_kernel(cwd=str(cwd))
    kc = km.client()
    kc.start_channels()
    await kc.wait_for_ready(timeout=60)
    return km, kc




def _notices(msgs: list[dict]) -> list[str]:
    return [m["content"]["data"]["text/plain"] for m in msgs
            if m["msg_type"] == "display_data"
            and m["content"]["data"].get("text/plain", "").startswith("OpenShell denied ")]


async def test_notices_in_a_kernel_that_cannot_change_its_policy(kernels, upstream):
    km, kc = await _kernel("openshell", kernels)
    try:
        name = km.provisioner.box.name
        url = upstream.url
        fetches = (
            "import urllib.request as u\nfor path in ['/no', '/no', '/no', '/other']:\n"
            f"    try:\n        u.urlopen('{url}' + path, timeout=10)\n    except Exception:\n        pass"
        )
        content, msgs = await run(kc, fetches)
        notices = _notices(msgs)
        assert len(notices) == 2, text(msgs)
        assert notices[0].startswith(f"OpenShell denied GET {url}/no (denied 3 times)")
        assert notices[1].startswith(f"OpenShell denied GET {url}/other\n")
        assert "this kernel cannot change its own policy" in notices[0]
        assert f"in a terminal on the host: openshell sandbox allow {name} GET {url}/no" in notices[0]
        assert f"in a host Python kernel: %policy allow GET {url}/no {name}" in notices[0]
        assert "to allow it, run: %policy allow" not in notices[0]

        # a cell that fails on a denial: the notice first, then a short traceback
        content, msgs = await run(kc, f"import urllib.request as u\nu.urlopen('{url}/raise', timeout=10)")
        kinds = [m["msg_type"] for m in msgs]
        assert content["status"] == "error" and "error" in kinds, kinds
        first_notice = next(i for i, m in enumerate(msgs) if m["msg_type"] == "display_data")
        assert first_notice < kinds.index("error") and f"GET {url}/raise" in _notices(msgs)[0]
        error = next(m["content"] for m in msgs if m["msg_type"] == "error")
        assert "HTTPError" in "\n".join(error["traceback"]) and len(error["traceback"]) <= 2, error
        assert "use %tb to see the full traceback" in text(msgs)
        # control: a failure without a denial keeps its whole traceback, and shows no notice
        content, msgs = await run(kc, "def inner():\n    return 1 / 0\ninner()")
        error = next(m["content"] for m in msgs if m["msg_type"] == "error")
        assert "inner()" in "\n".join(error["traceback"]) and len(error["traceback"]) > 2
        assert not _notices(msgs)

        content, msgs = await run(kc, f"%policy explain GET {url}/no")
        assert f"allow_with: (on the host) openshell sandbox allow {name} GET {url}/no" in text(msgs)
        content, msgs = await run(kc, f"%policy allow GET {url}/no")
        said = text(msgs)
        assert said.startswith("UsageError: ") and f"openshell sandbox allow {name} METHOD URL" in said, said

        content, msgs = await run(kc, PANEL)
        lines = text(msgs).splitlines()
        assert lines[0] == "editable False apply-disabled True rollback-disabled True", lines
        assert lines[1] == "reason True True" and lines[2].startswith("rows ") and lines[2].endswith(
            " True True"), lines
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)


async def test_a_kernel_allowed_to_edit_keeps_the_magic_hint_and_the_buttons(kernels, upstream):
    """Control of the test above: with policy_edits the magic works in the kernel, so it is offered."""
    km, kc = await _kernel("openshell-edits", kernels)
    try:
        code = f"import urllib.request as u\ntry:\n    u.urlopen('{upstream.url}/no', timeout=10)\n"
        _, msgs = await run(kc, code + "except Exception:\n    pass")
        (notice,) = _notices(msgs)
        assert f"to allow it, run: %policy allow GET {upstream.url}/no" in notice
        assert "cannot change its own policy" not in notice
        _, msgs = await run(kc, PANEL)
        assert text(msgs).splitlines()[0] == "editable True apply-disabled False rollback-disabled False"
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)


async def test_the_kernel_loads_its_extension_whatever_the_workspace_holds(kernels):
    """A `jupyter_openshell/` in the workspace (the runtime's protective placeholder, or planted) does not
    shadow the package the kernel starts from: %policy and the notices work; the workspace's own modules
    still import (IPython puts the cwd on sys.path after start-up)."""
    (kernels / "jupyter_openshell").mkdir(exist_ok=True)
    (kernels / "jupyter_openshell" / "__init__.py").write_text("raise SystemExit('planted')\n")
    (kernels / "mine.py").write_text("VALUE = 42\n")
    km, kc = await _kernel("openshell", kernels)
    try:
        _, msgs = await run(kc, "%policy show")
        assert "# policy kernel-" in text(msgs), text(msgs)
        code = "import mine, jupyter_openshell\nprint(mine.VALUE, jupyter_openshell.__file__)"
        _, msgs = await run(kc, code)
        assert text(msgs).split()[0] == "42" and "/workspace/" not in text(msgs), text(msgs)
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)
