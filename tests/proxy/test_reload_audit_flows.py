"""Hot reload under traffic, invalid reloads, audit mode and the flow log, through the real proxy."""

from __future__ import annotations

import json
import os
import ssl
import threading
import time

import httpx
import requests

from jupyter_openshell.proxy._flowlog import FIELDS

ALLOW = """\
network:
  egress:
    - host: "127.0.0.1"
      ports: [{port}]
      paths:
        - path: "/v1/**"
          methods: ["GET"]
      action: allow
"""
TIGHT = """\
network:
  egress:
    - host: "127.0.0.1"
      ports: [{port}]
      paths:
        - path: "/v1/public"
          methods: ["GET"]
      action: allow
"""


def _write(path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _wait_version(proxy, old: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        version = proxy.client.status()["policies"]["default"]["version"]
        if version != old:
            return version
        time.sleep(0.02)
    raise AssertionError("policy was not reloaded")


def test_tightened_rule_applies_to_next_request_on_kept_alive_connection(make_proxy, upstream):
    proxy = make_proxy(ALLOW.format(port=upstream.port))
    old = proxy.client.status()["policies"]["default"]["version"]
    s = requests.Session()
    s.trust_env = False
    url = f"http://127.0.0.1:{upstream.port}/v1/users/1"
    for _ in range(3):
        assert s.get(url, proxies={"http": proxy.url}).status_code == 200
    _write(proxy.policy_file, TIGHT.format(port=upstream.port))
    new = _wait_version(proxy, old)
    r = s.get(url, proxies={"http": proxy.url})
    assert r.status_code == 403 and r.json()["policy_version"] == new
    flows = proxy.client.flows()
    assert len({f["client"] for f in flows}) == 1  # one kept-alive client connection throughout
    assert [f["policy_version"] for f in flows] == [old, old, old, new]


def test_tightened_rule_applies_inside_a_kept_alive_tls_tunnel(make_proxy, upstream_tls):
    proxy = make_proxy(ALLOW.format(port=upstream_tls.port))
    old = proxy.client.status()["policies"]["default"]["version"]
    ctx = ssl.create_default_context(cafile=str(proxy.ca_bundle))
    with httpx.Client(proxy=proxy.url, verify=ctx, trust_env=False) as c:
        url = f"https://127.0.0.1:{upstream_tls.port}/v1/users/1"
        assert c.get(url).status_code == 200
        _write(proxy.policy_file, TIGHT.format(port=upstream_tls.port))
        _wait_version(proxy, old)
        assert c.get(url).status_code == 403
        assert c.get(url.replace("/v1/users/1", "/v1/public")).status_code == 200
    assert len({f["client"] for f in proxy.client.flows()}) == 1


def test_invalid_reload_keeps_old_policy_and_reports(make_proxy, upstream):
    proxy = make_proxy(ALLOW.format(port=upstream.port))
    old = proxy.client.status()["policies"]["default"]["version"]
    _write(proxy.policy_file, "network:\n  egress:\n    - host: '*'\n      action: allow\n  bogus: 1\n")
    deadline = time.monotonic() + 5
    while not (st := proxy.client.status()["policies"]["default"])["last_error"]:
        assert time.monotonic() < deadline, "reload error was not reported"
        time.sleep(0.02)
    assert st["version"] == old
    assert "policy.yaml" in st["last_error"]
    s = requests.Session()
    s.trust_env = False
    assert s.get(f"http://127.0.0.1:{upstream.port}/v1/x", proxies={"http": proxy.url}).status_code == 200
    assert s.get(f"http://127.0.0.1:{upstream.port}/v2/x", proxies={"http": proxy.url}).status_code == 403
    assert "reload failed" in proxy.stderr()
    assert proxy.client.reload()["policies"]["default"]["version"] == old
    _write(proxy.policy_file, TIGHT.format(port=upstream.port))
    _wait_version(proxy, old)
    assert proxy.client.status()["policies"]["default"]["last_error"] is None


def test_audit_mode_logs_would_deny_and_lets_through(make_proxy, upstream):
    upstream.clear()
    proxy = make_proxy("mode: audit\n" + TIGHT.format(port=upstream.port))
    s = requests.Session()
    s.trust_env = False
    r = s.post(f"http://127.0.0.1:{upstream.port}/v1/secret", data=b"abc", proxies={"http": proxy.url})
    assert r.status_code == 200
    assert [q.path for q in upstream.requests] == ["/v1/secret"]
    (rec,) = proxy.client.flows()
    assert rec["decision"] == "audit-allow" and rec["bytes_out"] == 3


def test_flow_log_records_and_filters(make_proxy, upstream):
    proxy = make_proxy(TIGHT.format(port=upstream.port))
    s = requests.Session()
    s.trust_env = False
    base = f"http://127.0.0.1:{upstream.port}"
    assert s.get(base + "/v1/public", proxies={"http": proxy.url}).status_code == 200
    t_mid = time.time()
    assert s.get(base + "/v1/x/../private?token=abc", proxies={"http": proxy.url}).status_code == 403
    lines = (proxy.state_dir / "flows" / "flows.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 2
    for rec in records:
        assert set(FIELDS) <= set(rec)
    allow, deny = records
    assert (allow["decision"], allow["status"], allow["path"]) == ("allow", 200, "/v1/public")
    assert allow["bytes_in"] > 0 and allow["duration_ms"] > 0 and allow["sandbox"] is None
    assert (deny["decision"], deny["status"], deny["path"]) == ("deny", 403, "/v1/private")
    assert deny["rule"] == "no rule matched (default deny)"
    assert deny["policy_version"] == allow["policy_version"]
    assert "token=abc" not in "\n".join(lines)  # queries are never logged
    assert (proxy.state_dir / "flows" / "flows.jsonl").stat().st_mode & 0o077 == 0
    assert [r["id"] for r in proxy.client.flows(since=t_mid)] == [deny["id"]]
    assert [r["id"] for r in proxy.client.flows(limit=1)] == [deny["id"]]
    assert proxy.client.flows(sandbox="nobody") == []


def test_large_bodies_stream_and_are_counted(make_proxy, upstream):
    proxy = make_proxy(ALLOW.format(port=upstream.port).replace('"/v1/**"', '"/**"').replace(
        '["GET"]', '["GET", "POST"]'))
    s = requests.Session()
    s.trust_env = False
    size = 5 * 1024 * 1024
    r = s.get(f"http://127.0.0.1:{upstream.port}/bytes/{size}", proxies={"http": proxy.url}, stream=True)
    assert sum(len(c) for c in r.iter_content(1 << 16)) == size
    r = s.post(f"http://127.0.0.1:{upstream.port}/upload", data=b"u" * (1 << 20), proxies={"http": proxy.url})
    assert r.status_code == 200
    down, up = proxy.client.flows()
    assert down["bytes_in"] == size and down["status"] == 200
    assert up["bytes_out"] == 1 << 20


def test_in_flight_request_finishes_under_its_version(make_proxy, upstream):
    proxy = make_proxy(ALLOW.format(port=upstream.port))
    old = proxy.client.status()["policies"]["default"]["version"]
    slow: dict[str, int] = {}

    def slow_request() -> None:
        with requests.Session() as s:
            s.trust_env = False
            slow["status"] = s.get(f"http://127.0.0.1:{upstream.port}/v1/sleep/1500",
                                   proxies={"http": proxy.url}).status_code

    t = threading.Thread(target=slow_request)
    t.start()
    deadline = time.monotonic() + 5
    while not any(r.path == "/v1/sleep/1500" for r in upstream.requests):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    _write(proxy.policy_file, TIGHT.format(port=upstream.port))  # denies /v1/sleep/...
    new = _wait_version(proxy, old)
    with requests.Session() as s:
        s.trust_env = False
        r = s.get(f"http://127.0.0.1:{upstream.port}/v1/sleep/1", proxies={"http": proxy.url})
        assert r.status_code == 403
    t.join(10)
    assert slow["status"] == 200
    by_path = {r["path"]: r for r in proxy.client.flows()}
    assert by_path["/v1/sleep/1500"]["policy_version"] == old
    assert by_path["/v1/sleep/1"]["policy_version"] == new
