"""The REST API and kernels' sandboxes: no policy change behind the kernel's back, and exec output that a
browser never renders.

A page on the Jupyter origin (script that got past every other defence, or the user's own extension) must
not widen a kernel sandbox's egress over REST when the kernel itself may not (`policy_edits`): 403, with
how to enable it. CONTROLS: the same PUT succeeds for a kernel whose kernelspec enabled policy edits, for
one the server configuration names, and for a REST sandbox.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_openshell.kernel.session import KernelConfig, KernelSandbox
from jupyter_openshell.services.policies import PolicyService as PolicyOps

WIDER = "network:\n  egress:\n    - host: evil.example\n      action: allow\n"


@pytest.fixture
def jp_server_config(jp_server_config):
    config = dict(jp_server_config)
    config["PolicyManager"] = {"editable_kernel_sandboxes": ["kernel-opted-in-*"]}
    return config


async def _put(jp_fetch, name: str, headers: dict) -> tuple[int, dict]:
    try:
        resp = await jp_fetch(
            "openshell",
            "api",
            "policies",
            name,
            method="PUT",
            body=json.dumps({"yaml": WIDER}),
            headers={**headers, "Content-Type": "application/json"},
        )
    except HTTPClientError as exc:
        return exc.code, json.loads(exc.response.body)
    return resp.code, json.loads(resp.body)


async def test_policy_of_a_kernel_sandbox_is_not_changed_over_rest_unless_enabled(jp_fetch, carol, workspace):
    boxes = []
    try:
        for name, edits in [
            ("kernel-locked-x1", False),
            ("kernel-edits-x1", True),
            ("kernel-opted-in-x1", False),
        ]:
            config = KernelConfig(workspace=str(workspace), policy_edits=edits)
            boxes.append(await asyncio.to_thread(KernelSandbox.start, config, name))
        before = PolicyOps("kernel-locked-x1").text()
        code, body = await _put(jp_fetch, "kernel-locked-x1", carol)  # carol: admin, may see kernel sandboxes
        assert code == 403, body
        assert "policy_edits" in body["message"] and "editable_kernel_sandboxes" in body["message"]
        assert PolicyOps("kernel-locked-x1").text() == before
        for name in ("kernel-edits-x1", "kernel-opted-in-x1"):  # CONTROLS
            code, body = await _put(jp_fetch, name, carol)
            assert code == 200, body
            assert "evil.example" in PolicyOps(name).text()
        # the sandbox's owner check still comes first: another user learns nothing (404, not 403)
        code, _ = await _put(jp_fetch, "kernel-locked-x1", {"Authorization": "token bob-token"})
        assert code == 404
    finally:
        for box in boxes:
            await asyncio.to_thread(box.destroy)
    # once the kernel is gone, a sandbox of that name is no kernel's: nothing is left that says otherwise
    from jupyter_openshell.kernel.session import kernel_policy_edits

    assert kernel_policy_edits("kernel-locked-x1") is None


async def test_rest_exec_output_is_json_text_that_a_browser_never_renders(jp_fetch):
    body = {"name": "exec-out"}
    resp = await jp_fetch("openshell", "api", "sandboxes", method="POST", body=json.dumps(body))
    assert resp.code == 201
    try:
        payload = "<script>fetch('/api/kernels',{method:'POST'})</script><img src=x onerror=alert(1)>"
        code = f"import sys; print({payload!r}); print({payload!r}, file=sys.stderr)"
        resp = await jp_fetch(
            "openshell",
            "api",
            "sandboxes",
            "exec-out",
            "exec",
            method="POST",
            body=json.dumps({"argv": ["python3", "-c", code]}),
        )
        out = json.loads(resp.body)
        assert out["stdout"].strip() == payload and out["stderr"].strip() == payload  # text, unchanged
        assert resp.headers["Content-Type"].startswith("application/json")
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert (
            "default-src 'none'" in resp.headers["Content-Security-Policy"]
        )  # opened directly: nothing runs
    finally:
        await jp_fetch("openshell", "api", "sandboxes", "exec-out", method="DELETE")
