"""End to end: real sandboxes, the real proxy, local upstream servers. The seed policy is enforced for
curl, requests and pip inside a sandbox (HTTP and HTTPS through the injected CA); a policy changed
while a sandbox runs applies to its next request; two sandboxes with different policies side by side.
"""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest

from jupyter_openshell.proxy import ProxyClient
from jupyter_openshell.runtime import SandboxSpec

SEED = """\
network:
  egress:
    - host: "api.example.com"
      ports: [{port}, {tls_port}]
      paths:
        - path: "/v1/users/*"
          methods: ["GET"]
        - path: "/v1/data"
          methods: ["GET", "HEAD"]
        - path: "/simple/**"
          methods: ["GET"]
      addresses: ["127.0.0.1"]  # the test upstreams live on loopback, refused unless the rule names it
      action: allow
    - action: deny
"""
DATA_ONLY = """\
network:
  egress:
    - host: "api.example.com"
      ports: [{port}, {tls_port}]
      paths:
        - path: "/v1/data"
          methods: ["GET", "HEAD"]
      addresses: ["127.0.0.1"]  # the test upstreams live on loopback, refused unless the rule names it
      action: allow
    - action: deny
"""


def run(backend, name: str, argv: list[str], timeout: float = 60) -> tuple[int, str, str]:
    proc = backend.exec(name, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode(), err.decode()


def curl(backend, name: str, url: str, *args: str) -> int:
    _code, out, _err = run(
        backend, name, ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", *args, url]
    )
    return int(out or 0)


@pytest.fixture
def seeded(backend, policy_file, upstream, upstream_tls):
    text = SEED.format(port=upstream.port, tls_port=upstream_tls.port)
    name = f"seed-{uuid.uuid4().hex[:6]}"
    backend.create(SandboxSpec.from_policy_file(policy_file(text), name=name))
    upstream.clear()
    upstream_tls.clear()
    yield name
    backend.destroy(name)


def test_seed_policy_with_curl_http_and_https(backend, seeded, upstream, upstream_tls):
    http = f"http://api.example.com:{upstream.port}"
    https = f"https://api.example.com:{upstream_tls.port}"
    assert curl(backend, seeded, f"{http}/v1/users/1") == 200
    assert curl(backend, seeded, f"{http}/v1/users/1", "-X", "POST", "-d", "x=1") == 403
    assert curl(backend, seeded, f"{http}/v1/data", "-I") == 200
    assert curl(backend, seeded, f"http://other.example.com:{upstream.port}/v1/users/1") == 403
    assert curl(backend, seeded, f"{https}/v1/users/7") == 200  # TLS through the injected CA bundle
    assert curl(backend, seeded, f"{https}/v1/admin") == 403
    assert [(r.method, r.path) for r in upstream.requests] == [("GET", "/v1/users/1"), ("HEAD", "/v1/data")]
    assert [(r.method, r.path) for r in upstream_tls.requests] == [("GET", "/v1/users/7")]


def test_seed_policy_with_requests(backend, seeded, upstream_tls):
    code = f"""
import requests
base = "https://api.example.com:{upstream_tls.port}"
print(requests.get(base + "/v1/users/2", timeout=20).status_code)
r = requests.post(base + "/v1/users/2", data=b"x", timeout=20)
print(r.status_code, r.json()["rule"])
"""
    rc, out, err = run(backend, seeded, ["python3", "-c", code])
    assert rc == 0, err
    lines = out.split("\n")
    assert lines[0] == "200"
    assert lines[1].startswith("403 ")  # with the rule that decided in the JSON body
    assert [(r.method, r.path) for r in upstream_tls.requests] == [("GET", "/v1/users/2")]


def test_seed_policy_with_pip(backend, seeded, upstream_tls):
    allowed = f"https://api.example.com:{upstream_tls.port}/simple/"
    denied = f"https://other.example.com:{upstream_tls.port}/simple/"
    for index in (allowed, denied):
        rc, _out, _err = run(
            backend,
            seeded,
            [
                "pip",
                "download",
                "--no-deps",
                "--retries",
                "0",
                "--timeout",
                "10",
                "--disable-pip-version-check",
                "-d",
                "/tmp/dl",
                "--index-url",
                index,
                "openshell-probe-pkg",
            ],
            timeout=120,
        )
        assert rc != 0  # the fake index has no such package, or the proxy refused
    assert [r.path for r in upstream_tls.requests] == ["/simple/openshell-probe-pkg/"]
    assert upstream_tls.requests[0].header("Host").startswith("api.example.com")
    denied_flows = [f for f in ProxyClient().flows(sandbox=seeded) if f["host"] == "other.example.com"]
    assert denied_flows and {f["decision"] for f in denied_flows} == {"deny"}


def test_policy_change_applies_to_next_request(backend, seeded, upstream):
    url = f"http://api.example.com:{upstream.port}/v1/users/1"
    assert curl(backend, seeded, url) == 200
    tightened = DATA_ONLY.format(port=upstream.port, tls_port=upstream.port + 1)
    policy = backend.set_policy(seeded, tightened)
    assert policy.version
    deadline = time.monotonic() + 5
    while (code := curl(backend, seeded, url)) != 403 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert code == 403
    assert backend.get_policy(seeded) == tightened


def test_two_sandboxes_with_different_policies(backend, policy_file, upstream, upstream_tls):
    a, b = f"pa-{uuid.uuid4().hex[:6]}", f"pb-{uuid.uuid4().hex[:6]}"
    backend.create(
        SandboxSpec.from_policy_file(
            policy_file(SEED.format(port=upstream.port, tls_port=upstream_tls.port)), name=a
        )
    )
    backend.create(
        SandboxSpec.from_policy_file(
            policy_file(DATA_ONLY.format(port=upstream.port, tls_port=upstream_tls.port)), name=b
        )
    )
    users = f"http://api.example.com:{upstream.port}/v1/users/3"
    data = f"http://api.example.com:{upstream.port}/v1/data"
    assert (curl(backend, a, users), curl(backend, b, users)) == (200, 403)
    assert (curl(backend, a, data), curl(backend, b, data)) == (200, 200)
    flows = ProxyClient().flows(sandbox=b)
    assert {(f["path"], f["decision"]) for f in flows} >= {("/v1/users/3", "deny"), ("/v1/data", "allow")}
    assert all(f["sandbox"] == b for f in flows)
    backend.destroy(a)
    backend.destroy(b)



def _wait_code(backend, name: str, url: str, want: int, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while (code := curl(backend, name, url)) != want and time.monotonic() < deadline:
        time.sleep(0.05)
    return code


@pytest.mark.parametrize("unregister_lost", [False, True])
def test_recreated_sandbox_follows_policy_changes(backend, policy_file, upstream, upstream_tls, monkeypatch,
                                                  unregister_lost):
    """Destroy a sandbox and create one with the same name: its later policy changes apply. Also when
    the proxy never heard of the destroy (its unregister was lost: proxy busy or restarting), so the
    new sandbox registers over the old one's entry (new channel directory, maybe a new address)."""
    from jupyter_openshell.runtime import _links

    name = f"re-{uuid.uuid4().hex[:6]}"
    seed = SEED.format(port=upstream.port, tls_port=upstream_tls.port)
    data_only = DATA_ONLY.format(port=upstream.port, tls_port=upstream_tls.port)
    users = f"http://api.example.com:{upstream.port}/v1/users/4"
    backend.create(SandboxSpec.from_policy_file(policy_file(seed), name=name))
    assert curl(backend, name, users) == 200
    backend.set_policy(name, data_only)
    assert _wait_code(backend, name, users, 403) == 403
    if unregister_lost:
        monkeypatch.setattr(_links, "unregister", lambda _name, _created=None: None)
    backend.destroy(name)
    monkeypatch.undo()
    backend.create(SandboxSpec.from_policy_file(policy_file(seed), name=name))
    try:
        assert curl(backend, name, users) == 200
        for text, want in ((data_only, 403), (seed, 200), (data_only, 403)):
            backend.set_policy(name, text)
            assert _wait_code(backend, name, users, want) == want
    finally:
        backend.destroy(name)
