"""Address exceptions belong to their rule, and a deny rule without `ports` covers every port: attack
tests through the real proxy against real local upstream servers, each with a control that shows the
same request does reach the upstream when the policy really allows it."""

from __future__ import annotations

import json
import socket

import pytest
import requests

from .conftest import curl

LOOPBACK_RULE = """\
network:
  egress:
    - host: "127.0.0.1"  # one path of one loopback port, for this rule's requests only
      ports: [{port}]
      paths:
        - path: "/health"
          methods: ["GET"]
      action: allow
    - host: "*.example.com"
      ports: [{port}, {other}]
{extra}      action: allow
"""


@pytest.fixture
def listener():
    sock = socket.create_server(("127.0.0.1", 0))  # stands for another loopback service (sshd, ...)
    sock.settimeout(0.5)
    yield sock
    sock.close()


def test_a_named_loopback_address_opens_nothing_to_other_rules(make_proxy, upstream, listener):
    """ATTACK: a rule naming 127.0.0.1:P for /health used to open loopback:P, on any path, to every
    name another rule allows (a name whose DNS answer is 127.0.0.1). Now only requests that rule
    decides reach it; a name another rule allows that resolves to loopback is refused, on any port."""
    upstream.clear()
    other = listener.getsockname()[1]
    proxy = make_proxy(LOOPBACK_RULE.format(port=upstream.port, other=other, extra=""),
                       resolve={"api.example.com": "127.0.0.1"})
    code, body = curl(proxy, f"http://api.example.com:{upstream.port}/secret")
    assert code == 403 and "loopback" in json.loads(body)["error"]
    code, body = curl(proxy, f"http://api.example.com:{other}/x")
    assert code == 403 and "loopback" in json.loads(body)["error"]
    with pytest.raises(TimeoutError):
        listener.accept()
    code, _ = curl(proxy, f"http://127.0.0.1:{upstream.port}/secret")  # the IP rule: /health only
    assert code == 403
    code, _ = curl(proxy, f"http://127.0.0.1:{upstream.port}/health")  # the rule's own request
    assert code == 200
    assert [r.path for r in upstream.requests] == ["/health"]
    rules = [(f["path"], f["rule"]) for f in proxy.client.flows()]
    assert rules[0] == ("/secret", "address check")


def test_control_the_rule_that_names_the_address_reaches_it(make_proxy, upstream):
    """CONTROL: the same request reaches the upstream when its own rule names the address."""
    upstream.clear()
    proxy = make_proxy(LOOPBACK_RULE.format(port=upstream.port, other=1,
                                            extra='      addresses: ["127.0.0.1"]\n'),
                       resolve={"api.example.com": "127.0.0.1"})
    code, _ = curl(proxy, f"http://api.example.com:{upstream.port}/secret")
    assert code == 200
    assert [r.path for r in upstream.requests] == ["/secret"]


TWO_RULES = """\
network:
  egress:
    - host: "svc.example.com"
      ports: [{port}]
      paths:
        - path: "/health"
          methods: ["GET"]
      addresses: ["127.0.0.1"]
      action: allow
    - host: "*.example.com"
      ports: [{port}]
      action: allow
"""


def test_a_checked_connection_does_not_carry_an_exception_to_another_rule(make_proxy, upstream):
    """ATTACK: after /health (admitted by its rule) the same client connection asks /secret of the same
    host:port, which a rule without the exception allows; the address check done for the first request
    must not admit the second."""
    upstream.clear()
    proxy = make_proxy(TWO_RULES.format(port=upstream.port), resolve={"svc.example.com": "127.0.0.1"})
    with requests.Session() as s:
        s.trust_env = False
        proxies = {"http": proxy.url}
        base = f"http://svc.example.com:{upstream.port}"
        assert s.get(base + "/health", proxies=proxies).status_code == 200  # CONTROL: its rule admits it
        r = s.get(base + "/secret", proxies=proxies)
        assert r.status_code == 403 and "does not name" in r.json()["error"]
        assert s.get(base + "/health", proxies=proxies).status_code == 200
    assert [q.path for q in upstream.requests] == ["/health", "/health"]
    assert len({q.client[1] for q in upstream.requests}) == 1  # one upstream connection was reused


DENY_NO_PORTS = """\
network:
  egress:
    - host: "api.example.com"
{ports}      paths: ["/admin/**"]
      action: deny
    - host: "api.example.com"
      ports: [{port}]
      addresses: ["127.0.0.1"]
      action: allow
"""


def test_a_deny_rule_without_ports_covers_every_port(make_proxy, upstream):
    """ATTACK: a deny rule without `ports` used to cover only 80/443, so /admin on the upstream's port
    passed. CONTROL: the old default spelled out (`ports: [80, 443]`) lets the same request through."""
    upstream.clear()
    proxy = make_proxy(DENY_NO_PORTS.format(port=upstream.port, ports=""),
                       resolve={"api.example.com": "127.0.0.1"})
    code, body = curl(proxy, f"http://api.example.com:{upstream.port}/admin/users")
    assert code == 403 and json.loads(body)["rule"].startswith("network.egress[0] (deny, line 3)")
    code, _ = curl(proxy, f"http://api.example.com:{upstream.port}/public")
    assert code == 200
    assert [r.path for r in upstream.requests] == ["/public"]

    upstream.clear()
    control = make_proxy(DENY_NO_PORTS.format(port=upstream.port, ports="      ports: [80, 443]\n"),
                         resolve={"api.example.com": "127.0.0.1"})
    code, _ = curl(control, f"http://api.example.com:{upstream.port}/admin/users")
    assert code == 200
    assert [r.path for r in upstream.requests] == ["/admin/users"]
