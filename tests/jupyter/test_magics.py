"""`%%sandbox`, `%sandbox` and `%policy` from an ordinary (host) ipykernel, driven through jupyter_client.

The cell runs in a named sandbox (a real OpenShell kernel); its stdout, rich output and errors come back
into the calling cell; variables persist; denials are explained with the magic that allows them.
"""

from __future__ import annotations

from jupyter_client.manager import start_new_async_kernel
from kernel_io import run, text


async def test_sandbox_cells_relay_output_persist_state_and_explain_denials(workspace, upstream):
    km, kc = await start_new_async_kernel(kernel_name="python3", cwd=str(workspace))
    try:
        await _scenario(kc, upstream)
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)
    from jupyter_openshell.runtime import get_backend

    assert "magic-box" not in {i.name for i in get_backend().list()}


async def _scenario(kc, upstream) -> None:
    content, msgs = await run(kc, "%load_ext jupyter_openshell")
    assert content["status"] == "ok", text(msgs)

    content, msgs = await run(
        kc, "%%sandbox magic-box\nimport os\nx = 41\nprint('inside', os.environ['OPENSHELL_SANDBOX'])"
    )
    assert content["status"] == "ok", text(msgs)
    assert "inside magic-box" in text(msgs)

    code = (
        "%%sandbox magic-box\nfrom IPython.display import HTML, display\n"
        "display(HTML('<b>rich</b>'))\nimport sys; print('err line', file=sys.stderr)\nx + 1"
    )
    content, msgs = await run(kc, code)
    assert content["status"] == "ok"
    html = [m for m in msgs if m["msg_type"] == "display_data" and "text/html" in m["content"]["data"]]
    assert html and html[0]["content"]["data"]["text/html"] == "<b>rich</b>"
    assert any(m["msg_type"] == "stream" and m["content"]["name"] == "stderr" for m in msgs)
    assert "42" in text(msgs)  # the variable persisted; the value came back as rich output

    content, msgs = await run(kc, "%%sandbox magic-box\ndef f():\n    return 1 / 0\nf()")
    assert content["status"] == "error" and "ZeroDivisionError" in text(msgs) and "f()" in text(msgs)

    content, msgs = await run(kc, "%%sandbox magic-box --timeout 1\nwhile True:\n    pass")
    assert content["status"] == "error" and "timeout" in text(msgs)
    content, msgs = await run(kc, "%%sandbox magic-box\nprint(x)")
    assert text(msgs).strip() == "41"  # interrupted, not restarted

    # a denied request: the notice says what, which rule, and the magic that allows it
    fetch = (
        "%%sandbox magic-box\nimport urllib.request\ntry:\n"
        f"    urllib.request.urlopen('{upstream.url}/x')\nexcept Exception as e:\n    print('failed', e)"
    )
    content, msgs = await run(kc, fetch)
    out = text(msgs)
    assert "failed" in out and f"OpenShell denied GET {upstream.url}/x" in out
    assert f"%policy allow GET {upstream.url}/x magic-box" in out
    assert out.count("OpenShell denied") == 1, out  # one box: the sandbox kernel's own is not relayed
    # three identical denials and one other: one notice each, with a count
    thrice = fetch.replace("urllib.request.urlopen(", "[urllib.request.urlopen(").replace(
        "/x')", "/x') for _ in range(3)]")
    thrice = thrice.replace("    print('failed', e)", "    print('failed', e)\ntry:\n"
                            f"    urllib.request.urlopen('{upstream.url}/y')\nexcept Exception:\n    pass")
    content, msgs = await run(kc, thrice.replace("for _ in range(3)]", "for _ in range(3)]"))
    out = text(msgs)
    assert out.count("OpenShell denied") == 2, out
    assert f"OpenShell denied GET {upstream.url}/y\n" in out

    # usage errors are a message (and the usage line for bad input), never a traceback
    bad_lines = [('%policy show "unbalanced', "usage: %policy"), ("%sandbox rm no-such-box-xyz", "usage: %"),
                 ("%policy explain GET", "usage: %policy"), ("%%sandbox x --policy /nope\n1", "/nope")]
    for bad_line, expected in bad_lines:
        content, msgs = await run(kc, bad_line)
        shown = text(msgs)
        assert content["status"] == "error" and shown.startswith("UsageError: ") and expected in shown, shown
        assert "jupyter_openshell/" not in shown and "Traceback" not in shown, shown

    content, msgs = await run(kc, f"%policy allow GET {upstream.url}/x magic-box")
    assert content["status"] == "ok" and "+" in text(msgs), text(msgs)
    content, msgs = await run(
        kc, fetch.replace("print('failed', e)", "print('failed', e)\nelse:\n    print('fetched')")
    )
    assert "fetched" in text(msgs) and "denied" not in text(msgs)

    content, msgs = await run(kc, f"%policy explain POST {upstream.url}/x magic-box")
    assert "decision: deny" in text(msgs) and "%policy allow POST" in text(msgs)
    content, msgs = await run(kc, "%policy show magic-box")
    assert "/x" in text(msgs)
    content, msgs = await run(kc, "%policy history magic-box")
    assert len([line for line in text(msgs).splitlines() if " applied " in line]) >= 2

    # %%policy: errors point at the cell's line, nothing changes
    bad = "%%policy magic-box\nnetwork:\n  egress:\n    - host: example.com\n      action: perhaps\n"
    content, msgs = await run(kc, bad)
    assert content["status"] == "error"
    assert "cell line 5" in text(msgs) and "action" in text(msgs) and "not applied" in text(msgs)
    content, msgs = await run(kc, "%policy mode audit magic-box")
    assert content["status"] == "ok" and "+mode: audit" in text(msgs)

    content, msgs = await run(kc, "%sandbox ls")
    assert "magic-box" in text(msgs) and "kernel attached" in text(msgs)
    content, msgs = await run(kc, "%sandbox rm magic-box")
    assert "removed" in text(msgs)
