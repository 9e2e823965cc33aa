"""TrafficMonitor, PolicyPanel and GpuStatus against a real sandbox, real proxy and real flow log.

The widgets are standard ipywidgets 8 (no custom JavaScript); here they run without a frontend, so the
test reads their state: rows and counts update by themselves while traffic flows, the panel validates,
applies, allows a recent denial with one click and rolls back, and the GPU view has a clear no-GPU state.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pytest

from jupyter_openshell.runtime import SandboxSpec, get_backend
from jupyter_openshell.services.policies import PolicyService as PolicyOps
from jupyter_openshell.widgets import GpuStatus, PolicyPanel, TrafficMonitor


@pytest.fixture
def sandbox(upstream, tmp_path):
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "network:\n  egress:\n"
        f"    - host: 127.0.0.2\n      ports: [{upstream.port}]\n      paths:\n"
        "        - path: /ok\n          methods: [GET]\n      action: allow\n"
    )
    backend = get_backend()
    name = f"widget-{uuid.uuid4().hex[:8]}"
    backend.create(SandboxSpec.from_policy_file(policy, name=name))
    yield Box(backend, name)
    backend.destroy(name)


class Box:
    def __init__(self, backend, name):
        self.backend, self.name = backend, name


def fetch(box: Box, url: str) -> str:
    code = (
        f"import urllib.request as u\ntry: print(u.urlopen({url!r}).status)\nexcept Exception as e: print(e)"
    )
    proc = box.backend.exec(box.name, ["python3", "-c", code], stdout=subprocess.PIPE)
    return proc.communicate(timeout=30)[0].decode()


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_traffic_monitor_updates_by_itself_and_filters(sandbox, upstream):
    monitor = TrafficMonitor(sandbox.name, interval=0.2)
    try:
        assert "no requests yet" in monitor.table.value
        assert fetch(sandbox, upstream.url + "/ok").strip() == "200"
        assert "403" in fetch(sandbox, upstream.url + "/secret")
        assert wait_for(lambda: len(monitor.records) >= 2)  # no refresh() call: the poller did it
        assert "allowed 1" in monitor.counts.value and "denied 1" in monitor.counts.value
        assert "/ok" in monitor.table.value and "/secret" in monitor.table.value
        monitor.decision.value = "deny"
        assert "/secret" in monitor.table.value and "/ok" not in monitor.table.value
        monitor.decision.value = "all"
        monitor.filter.value = "ok"
        assert "/ok" in monitor.table.value and "/secret" not in monitor.table.value
        assert all(r["sandbox"] == sandbox.name for r in monitor.records)
    finally:
        monitor.close()


def test_policy_panel_validates_applies_allows_a_denial_and_rolls_back(sandbox, upstream):
    assert "403" in fetch(sandbox, upstream.url + "/secret")
    ops = PolicyOps(sandbox.name)
    first = ops.show()["version"]
    panel = PolicyPanel(sandbox.name)
    assert panel.editor.value == ops.show()["yaml"]

    panel.editor.value = panel.editor.value.replace("action: allow", "action: maybe")
    panel.apply_button.click()
    assert "invalid policy" in panel.message.value and "line 8" in panel.message.value
    assert ops.show()["version"] == first  # nothing was written

    allow = [b for b in panel.denials.children if getattr(b, "description", "").startswith("Allow GET")]
    assert allow and "/secret" in allow[0].description
    allow[0].click()
    assert ops.show()["version"] != first and "/secret" in ops.show()["yaml"]
    assert fetch(sandbox, upstream.url + "/secret").strip() == "200"

    panel.versions.value = first
    panel.rollback_button.click()
    assert ops.show()["version"] == first
    assert "403" in fetch(sandbox, upstream.url + "/secret")


def test_gpu_status_shows_a_clear_state():
    from jupyter_openshell.widgets.gpu import render

    widget = GpuStatus(interval=0.2)
    try:
        if widget.snapshot["available"]:
            assert widget.snapshot["gpus"][0]["name"] in widget.view.value
        else:  # said once: "No GPU: <why>", never "No GPU - no GPU: ..."
            detail = widget.snapshot["reason"].removeprefix("no GPU: ")
            assert f"<b>No GPU</b>: {detail}" in widget.view.value, widget.view.value
            assert widget.view.value.lower().count("no gpu") == 1
    finally:
        widget.close()
    assert "<b>No GPU</b>: the NVIDIA driver reports no device" in render(
        {"available": False, "reason": "no GPU: the NVIDIA driver reports no device"})
    assert "<b>No GPU</b>: nvidia-ml-py is not installed" in render(
        {"available": False, "reason": "nvidia-ml-py is not installed"})
    assert "<b>No GPU</b> on this machine" in render({"available": False, "reason": ""})


def test_policy_panel_versions_are_labelled_and_the_current_one_is_selected(sandbox, upstream):
    """The dropdown reads "v2 · 9b5d… · 14:02 · current" (newest first) and shows the version in force."""
    import re

    assert "403" in fetch(sandbox, upstream.url + "/labelled")
    panel = PolicyPanel(sandbox.name)
    first = PolicyOps(sandbox.name).show()["version"]
    label = re.compile(r"v(\d+) · ([0-9a-f]{4})… · (\d\d:\d\d|\d{4}-\d\d-\d\d \d\d:\d\d)( · current)?$")
    (only,) = panel.versions.options
    assert label.match(only[0]) and only[0].endswith(" · current") and only[0].startswith(f"v1 · {first[:4]}")
    assert panel.versions.value == first and panel.versions.label == only[0]
    next(b for b in panel.denials.children if "/labelled" in getattr(b, "description", "")).click()
    second = PolicyOps(sandbox.name).show()["version"]
    labels = [text for text, _ in panel.versions.options]
    assert [label.match(t).group(1) for t in labels] == ["2", "1"]
    assert labels[0].endswith(" · current") and not labels[1].endswith(" · current")
    assert panel.versions.value == second and panel.versions.label == labels[0]
    panel.versions.value = first
    panel.rollback_button.click()
    labels = [text for text, _ in panel.versions.options]
    assert labels[0].startswith(f"v3 · {first[:4]}") and labels[0].endswith(" · current")
    assert panel.versions.label == labels[0] and not panel.read_only.value  # editable on the host


def test_recreated_sandbox_shows_none_of_its_predecessors_flows(sandbox, upstream, tmp_path):
    """Destroyed and created again under its name: a new TrafficMonitor, the PolicyPanel's denial buttons
    and the denial notices show only the new sandbox's requests; a monitor left open switches over."""
    from jupyter_openshell.magics.denials import DenialWatcher

    assert "403" in fetch(sandbox, upstream.url + "/old-secret")
    old_monitor = TrafficMonitor(sandbox.name, interval=0.2)
    try:
        assert wait_for(lambda: any(r["path"] == "/old-secret" for r in old_monitor.records))
        policy = sandbox.backend.status(sandbox.name).policy_file
        text = Path(policy).read_text()
        sandbox.backend.destroy(sandbox.name)
        fresh_policy = tmp_path / "again.yaml"
        fresh_policy.write_text(text)
        sandbox.backend.create(SandboxSpec.from_policy_file(fresh_policy, name=sandbox.name))
        monitor = TrafficMonitor(sandbox.name, interval=0.2)
        try:
            assert not monitor.records
            assert "no requests yet" in monitor.table.value
            panel = PolicyPanel(sandbox.name)
            assert not [b for b in panel.denials.children if "old-secret" in getattr(b, "description", "")]
            watcher = DenialWatcher(PolicyOps(sandbox.name), sandbox.name)
            watcher.mark(time.time() - 3600)
            assert "403" in fetch(sandbox, upstream.url + "/new-secret")
            assert wait_for(lambda: len(monitor.records) >= 1)
            assert [r["path"] for r in monitor.records] == ["/new-secret"]
            assert [r["path"] for r in watcher.check()] == ["/new-secret"]
            assert watcher.check() == []  # each denial once
            assert wait_for(lambda: [r["path"] for r in old_monitor.records] == ["/new-secret"])
            assert "old-secret" not in old_monitor.table.value
        finally:
            monitor.close()
    finally:
        old_monitor.close()
