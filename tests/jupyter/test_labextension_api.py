"""The REST routes the JupyterLab extension adds, against a real Jupyter server with real sandboxes and
kernels: validation as you type, rule variants staged into the caller's own policy, presets, the docs page,
the kernel -> sandbox mapping, sandbox stop and logs; the kernel's banner; the kernelspec logos.

Ownership attacks: another user asks for the variants (which carry the policy text), the logs, a stop, or
the sandbox of a kernel: 404 and nothing happens; the same call by the owner (the control) works.
"""

from __future__ import annotations

import json

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_openshell.kernel.kernelspec import LOGOS, kernel_json

POLICY = "mode: enforce\nnetwork:\n  egress:\n    # keep this comment\n    - action: deny\n"
NEW_ROUTES = [
    ("POST", "policy/validate"),
    ("GET", "policy/presets"),
    ("POST", "policy/presets"),
    ("POST", "policy/variants"),
    ("GET", "docs/policy-format"),
    ("GET", "kernels/00000000-0000-0000-0000-000000000000"),
    ("POST", "sandboxes/x/stop"),
    ("GET", "sandboxes/x/logs"),
]


async def _call(fetch, method, path, body=None, headers=None):
    try:
        resp = await fetch(
            "openshell", "api", *path.split("/"), method=method, headers=headers,
            body=None if body is None and method == "GET" else json.dumps(body or {}),
            allow_nonstandard_methods=True,
        )
    except HTTPClientError as exc:
        return exc.code, _json(exc.response.body if exc.response else b"")
    return resp.code, _json(resp.body)


def _json(body: bytes):
    try:
        return json.loads(body) if body else None
    except ValueError:  # tornado's own HTML 404 for a path no route matches
        return {"message": body.decode(errors="replace")}


@pytest.mark.parametrize(("method", "path"), NEW_ROUTES)
async def test_new_routes_refuse_without_a_token(jp_fetch, method, path):
    code, _ = await _call(jp_fetch, method, path, {}, headers={"Authorization": "token wrong"})
    assert code == 403


async def test_validate_reports_issues_with_position_and_suggestion(jp_fetch):
    typo = "mode: enforce\nnetwork:\n  egres:\n    - host: example.com\n      action: alow\n"
    code, out = await _call(jp_fetch, "POST", "policy/validate", {"yaml": typo})
    assert code == 200 and out["valid"] is False and out["version"] is None
    first = out["issues"][0]
    assert (first["line"], first["column"], first["field"]) == (3, 3, "network.egres")
    assert first["did_you_mean"] == "egress" and first["severity"] == "error"
    assert first["expected"] and first["example"]
    code, out = await _call(jp_fetch, "POST", "policy/validate", {"yaml": POLICY})
    assert code == 200 and out["valid"] is True and len(out["version"]) == 12 and out["issues"] == []
    code, out = await _call(jp_fetch, "POST", "policy/validate", {"text": POLICY})
    assert code == 400 and out["issues"][0]["field"] == "yaml"


async def test_variants_stage_the_rule_into_the_callers_own_policy_only(jp_fetch, bob):
    code, _ = await _call(jp_fetch, "POST", "sandboxes", {"name": "ui-variants", "policy": POLICY})
    assert code == 201
    try:
        request = {"method": "get", "url": "https://pypi.org/simple/requests/", "sandbox": "ui-variants"}
        code, out = await _call(jp_fetch, "POST", "policy/variants", request)
        assert code == 200 and out["method"] == "GET"
        narrowest = out["variants"][0]
        assert narrowest["rule"]["host"] == "pypi.org"
        assert narrowest["rule"]["paths"] == [{"path": "/simple/requests/", "methods": ["GET"]}]
        staged = narrowest["policy"]
        assert "# keep this comment" in staged  # the user's text is kept
        assert staged.index("pypi.org") < staged.index("- action: deny")  # above the final deny
        code, checked = await _call(jp_fetch, "POST", "policy/validate", {"yaml": staged})
        assert checked["valid"] is True
        code, current = await _call(jp_fetch, "GET", "policies/ui-variants")
        assert current["yaml"] == POLICY  # staged only: nothing was written

        # attack: bob asks for variants staged into alice's sandbox (they would carry her policy text)
        code, refused = await _call(jp_fetch, "POST", "policy/variants", request, headers=bob)
        assert code == 404 and "ui-variants" in refused["message"] and "pypi" not in json.dumps(refused)
        # without a sandbox, anyone may ask for the rules alone (no policy text in the answer)
        anonymous = {**request, "sandbox": None}
        code, bare = await _call(jp_fetch, "POST", "policy/variants", anonymous, headers=bob)
        assert code == 200 and "policy" not in bare["variants"][0]
        code, _ = await _call(jp_fetch, "POST", "policy/variants", {"method": "GET", "url": "ftp://x/"})
        assert code == 400
    finally:
        await _call(jp_fetch, "DELETE", "sandboxes/ui-variants")


async def test_stop_and_logs_are_the_owners_alone(jp_fetch, bob):
    code, _ = await _call(jp_fetch, "POST", "sandboxes", {"name": "ui-stop"})
    assert code == 201
    try:
        # attack: bob stops or reads alice's sandbox: 404, and it keeps running
        assert (await _call(jp_fetch, "POST", "sandboxes/ui-stop/stop", headers=bob))[0] == 404
        assert (await _call(jp_fetch, "GET", "sandboxes/ui-stop/logs", headers=bob))[0] == 404
        code, info = await _call(jp_fetch, "GET", "sandboxes/ui-stop")
        assert info["state"] == "running"
        # control: the owner can
        code, logs = await _call(jp_fetch, "GET", "sandboxes/ui-stop/logs")
        assert code == 200 and logs["name"] == "ui-stop" and isinstance(logs["logs"], str)
        code, stopped = await _call(jp_fetch, "POST", "sandboxes/ui-stop/stop")
        assert code == 200 and stopped["state"] == "stopped"
        code, info = await _call(jp_fetch, "GET", "sandboxes/ui-stop")
        assert info["state"] == "stopped"
    finally:
        await _call(jp_fetch, "DELETE", "sandboxes/ui-stop")


async def test_presets_answer_clearly_and_docs_are_served(jp_fetch):
    code, out = await _call(jp_fetch, "GET", "policy/presets")
    if code == 501:  # until jupyter_openshell.policy.presets() lands
        assert "presets" in out["message"]
    else:
        assert code == 200 and all({"name", "description", "yaml"} <= set(p) for p in out["presets"])
        if out["presets"]:
            name = out["presets"][0]["name"]
            code, inserted = await _call(jp_fetch, "POST", "policy/presets", {"name": name, "yaml": POLICY})
            assert code == 200 and inserted["policy"] != POLICY
    code, doc = await _call(jp_fetch, "GET", "docs/policy-format")
    assert code == 200 and "egress" in doc["markdown"]
    assert (await _call(jp_fetch, "GET", "docs/..%2F..%2Fetc%2Fpasswd"))[0] == 404


async def test_kernel_maps_to_its_sandbox_for_whoever_may_see_it(jp_fetch, jp_data_dir, carol):
    spec_dir = jp_data_dir / "kernels" / "openshell-ui"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps(kernel_json(pool_size=0)))
    resp = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "openshell-ui"}))
    kernel = json.loads(resp.body)["id"]
    resp = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "python3"}))
    plain = json.loads(resp.body)["id"]
    try:
        # carol (an OpenShell admin: kernel sandboxes have no recorded owner) sees the kernel's sandbox
        code, out = await _call(jp_fetch, "GET", f"kernels/{kernel}", headers=carol)
        assert code == 200 and out["kernel_id"] == kernel
        assert out["sandbox"]["name"].startswith("kernel-") and out["sandbox"]["state"] == "running"
        # not an OpenShell kernel, no such kernel: 404
        code, out = await _call(jp_fetch, "GET", f"kernels/{plain}", headers=carol)
        assert code == 404 and "not an OpenShell kernel of yours" in out["message"]
        assert (await _call(jp_fetch, "GET", "kernels/no-such-kernel", headers=carol))[0] == 404
        # attack: alice (not an admin, no record of that sandbox) learns nothing about it
        code, out = await _call(jp_fetch, "GET", f"kernels/{kernel}")
        assert code == 404 and "kernel-" not in json.dumps(out)
        assert out["message"] == f"kernel {kernel!r} is not an OpenShell kernel of yours (or has not started)"
    finally:
        for kid in (kernel, plain):
            await jp_fetch("api", "kernels", kid, method="DELETE")


async def test_kernel_banner_shows_the_sandbox_facts(tmp_path, monkeypatch, workspace):
    from jupyter_client.manager import AsyncKernelManager

    from jupyter_openshell.kernel.kernelspec import install

    prefix = tmp_path / "prefix"
    install(prefix=str(prefix), pool_size=0)
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    km = AsyncKernelManager(kernel_name="openshell")
    await km.start_kernel(cwd=str(workspace))
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=60)
        reply = await kc.kernel_info(reply=True, timeout=30)
        banner = reply["content"]["banner"]
        name = (await km.provisioner.get_provisioner_info())["sandbox"]
        assert f"OpenShell sandbox {name}" in banner
        assert "backend:     local" in banner
        assert "enforcement: resources " in banner and "unknown" not in banner
        assert "policy:      " in banner and "unavailable" not in banner
        assert "IPython" in banner  # IPython's own banner follows
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)


def test_install_copies_the_logos(tmp_path):
    from jupyter_openshell.cli.jupyter_app import main

    assert main(["install", "--prefix", str(tmp_path)]) == 0
    spec_dir = tmp_path / "share" / "jupyter" / "kernels" / "openshell"
    for logo in LOGOS:
        data = (spec_dir / logo).read_bytes()
        assert data.startswith(b"\x89PNG") if logo.endswith(".png") else b"<svg" in data


def test_the_wheel_ships_the_prebuilt_extension_and_jupyter_lists_it(tmp_path):
    """`pip install .` needs no JupyterLab build: the wheel carries labextension/dist (built by setup.sh)
    under share/jupyter/labextensions/jupyter-openshell, and the installed extension is listed enabled."""
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(root)],
                   check=True, capture_output=True, timeout=240)
    (wheel,) = tmp_path.glob("jupyter_openshell-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    data = "jupyter_openshell-0.1.0.data/data/share/jupyter/"
    ext = f"{data}labextensions/jupyter-openshell/"
    assert f"{ext}package.json" in names and f"{ext}install.json" in names
    assert any(n.startswith(f"{ext}static/remoteEntry.") for n in names)
    assert f"{ext}schemas/jupyter-openshell/plugin.json" in names
    assert {f"{data}kernels/openshell/{logo}" for logo in LOGOS} <= set(names)
    listed = subprocess.run([sys.executable, "-m", "jupyter", "labextension", "list"], capture_output=True,
                            text=True, timeout=120)
    line = next(ln for ln in (listed.stdout + listed.stderr).splitlines() if "jupyter-openshell" in ln)
    assert "enabled" in line and "OK" in line, line
