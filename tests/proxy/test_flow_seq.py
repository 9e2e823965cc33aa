"""Flow log numbering (`seq`), paging by cursor across proxy restarts, workers and rotated files, and the
sandbox instance (`sandbox_created`) of each record."""

from __future__ import annotations

import json
import shutil
import time

import requests

from jupyter_openshell.cli import main
from jupyter_openshell.proxy._flowlog import FlowLog, FlowRing, log_files, read_records

from .test_gateway_client import HOST_POLICY, SANDBOX_POLICY, AgentForwarder, _get, _make_sandbox


def _record(i: int, ts: float = 1000.0, sandbox: str | None = "sb") -> dict:
    return {"id": f"r{i}", "ts": ts, "sandbox": sandbox, "method": "GET", "scheme": "http", "host": "h.test",
            "port": 80, "path": f"/p/{i}", "decision": "deny"}


def _page_all(fetch, limit: int) -> list[dict]:
    """Every record, paging with `after` from the start."""
    out, after = [], 0
    while True:
        page = fetch(after, limit)
        out += page["flows"]
        if not page["flows"]:
            return out
        assert page["next_after"] > after
        after = page["next_after"]


def test_equal_ts_rotation_and_reopen_page_without_repeats_or_gaps(tmp_path):
    path = tmp_path / "flows.jsonl"
    ring = FlowRing(path, size=16)
    log = FlowLog(path, max_bytes=600, keep=100, sink=ring.add)
    for i in range(1, 61):  # every record has the same ts: a ts cursor could not page these
        log.write(_record(i))
    assert len(log_files(path)) > 5, "a tiny limit rotates often"
    for p in log_files(path):  # no record was split across files
        assert all(json.loads(line)["seq"] for line in p.read_text().splitlines())
    got = _page_all(lambda after, limit: ring.query("sb", limit=limit, after=after), 7)
    assert [r["seq"] for r in got] == list(range(1, 61))  # the ring keeps 16: the rest from rotated files
    assert [r["id"] for r in got] == [f"r{i}" for i in range(1, 61)]
    assert [r["seq"] for r in ring.query("sb", limit=3, after=10)["flows"]] == [11, 12, 13]
    assert [r["seq"] for r in read_records(path, 57)] == [58, 59, 60]
    log.close()
    # a restart: numbering continues after the last record of the log
    ring2 = FlowRing(path, size=16)
    log2 = FlowLog(path, max_bytes=600, keep=100, sink=ring2.add)
    log2.write(_record(61))
    assert ring2.query("sb", after=60)["flows"][0]["seq"] == 61
    assert ring2.query("sb", after=61) == {"flows": [], "next_after": 61}
    log2.close()
    # keep bounds the rotated files
    small = FlowLog(tmp_path / "small.jsonl", max_bytes=300, keep=2)
    for i in range(40):
        small.write(_record(i))
    small.close()
    assert [p.name for p in log_files(tmp_path / "small.jsonl")] == ["small.jsonl.2", "small.jsonl.1",
                                                                      "small.jsonl"]


def test_instance_filter_in_ring(tmp_path):
    path = tmp_path / "flows.jsonl"
    ring = FlowRing(path)
    log = FlowLog(path, sink=ring.add)
    for i, created in enumerate((1.5, 1.5, 2.5, None)):
        log.write({**_record(i), "sandbox_created": created})
    assert [r["id"] for r in ring.query("sb", created=2.5)["flows"]] == ["r2"]
    assert [r["id"] for r in ring.query("sb", created=1.5, after=0)["flows"]] == ["r0", "r1"]
    assert [r["id"] for r in ring.query("sb", created=None)["flows"]] == ["r3"]
    assert len(ring.query("sb")["flows"]) == 4
    log.close()


def test_seq_across_workers_restart_and_rotation(make_proxy, upstream, tmp_path):
    """Two workers, a 4 KiB rotation limit and a proxy restart in the middle: every record has a unique
    seq, contiguous in log order, and a cursor taken before the restart pages on without a gap."""
    upstream.clear()
    state = tmp_path / "seq-state"
    state.mkdir(mode=0o700)
    extra = ["--flow-log-max-bytes", "4k", "--flow-log-keep", "50"]
    policy = HOST_POLICY.format(port=upstream.port)
    proxy = make_proxy(policy, state=state, workers=2, extra=extra)
    url = f"http://127.0.0.1:{upstream.port}/host/x"

    def burst(n: int) -> None:
        for _ in range(n):
            with requests.Session() as s:  # a new connection each time: both workers serve
                s.trust_env = False
                assert s.get(url, proxies={"http": proxy.url}).status_code == 200

    def fetch(after: int, limit: int) -> dict:
        return proxy.client.flow_page(after=after, limit=limit)

    burst(30)
    deadline = time.monotonic() + 5
    while len(proxy.client.flows(limit=1000)) < 30 and time.monotonic() < deadline:
        time.sleep(0.05)  # worker records reach the primary through a pipe
    first = _page_all(fetch, 7)
    assert [r["seq"] for r in first] == list(range(1, 31))
    assert len({r["id"].split("-")[1] for r in first}) == 2, "both workers' records are numbered"
    cursor = first[-1]["seq"]
    proxy.stop()
    assert len(log_files(state / "flows" / "flows.jsonl")) > 2, "the log rotated"
    proxy = make_proxy(policy, state=state, workers=2, extra=extra)
    burst(10)
    deadline = time.monotonic() + 5
    while len(fetch(cursor, 100)["flows"]) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    later = fetch(cursor, 100)["flows"]
    assert [r["seq"] for r in later] == list(range(31, 41))
    everything = _page_all(fetch, 9)
    assert [r["seq"] for r in everything] == list(range(1, 41))
    assert len({r["id"] for r in everything}) == 40
    on_disk = [r["seq"] for r in read_records(state / "flows" / "flows.jsonl")]
    assert on_disk == list(range(1, 41)), "the files hold every record once, in seq order"


def test_suggest_reads_rotated_files(tmp_path, capsys):
    path = tmp_path / "flows.jsonl"
    log = FlowLog(path, max_bytes=300, keep=10)
    for i in range(6):
        log.write({**_record(i), "host": f"h{i}.example", "decision": "allow"})
    log.close()
    assert len(log_files(path)) > 2
    assert main(["policy", "suggest", str(path)]) == 0
    out = capsys.readouterr().out
    assert all(f"h{i}.example" in out for i in range(6))
    assert main(["policy", "suggest", "--no-rotated", str(path)]) == 0
    assert "h0.example" not in capsys.readouterr().out


def test_recreated_sandbox_sees_only_its_own_flows(make_proxy, upstream, tmp_path):
    """A sandbox destroyed and created again under its name: flows of the name default to the current
    instance; the predecessor's stay reachable by its `created`."""
    state = tmp_path / "inst-state"
    state.mkdir(mode=0o700)
    proxy = make_proxy(HOST_POLICY.format(port=upstream.port), state=state)
    allow = SANDBOX_POLICY.format(port=upstream.port)
    url = f"http://127.0.0.1:{upstream.port}/sandbox/x"
    proxy.client.register_sandbox("sbi", **_make_sandbox(state, "sbi", allow, created=1.5))
    agent = AgentForwarder(str(state / "sandboxes" / "sbi" / "chan" / "proxy.sock"))
    assert _get(agent, url) == 200 and _get(agent, url + "y") == 200
    agent.close()
    old = proxy.client.flows(sandbox="sbi")
    assert len(old) == 2 and {r["sandbox_created"] for r in old} == {1.5}
    proxy.client.unregister_sandbox("sbi", created=1.5)
    shutil.rmtree(state / "sandboxes" / "sbi")
    reg = _make_sandbox(state, "sbi", allow, created=2.5)
    assert proxy.client.flows(sandbox="sbi", created=2.5) == []
    info = proxy.client.register_sandbox("sbi", **reg)
    assert proxy.client.flows(sandbox="sbi") == []
    agent = AgentForwarder(info["socket"])
    try:
        assert _get(agent, url) == 200
    finally:
        agent.close()
    (new,) = proxy.client.flows(sandbox="sbi")
    assert new["sandbox_created"] == 2.5
    assert [r["id"] for r in proxy.client.flows(sandbox="sbi", created=1.5)] == [r["id"] for r in old]
    assert len(proxy.client.flows(sandbox="sbi", created="any")) == 3
    assert proxy.client.flow_page(sandbox="sbi", after=0)["flows"] == [new]
