"""Method overrides in request bodies (`_method=DELETE` in a form, a multipart field, a JSON key) through
the real proxy to a real local upstream: where the rule allows POST but not DELETE, every spelling is
refused before anything reaches the upstream. Controls: an allowed override (`_method=GET`) and the
same DELETE body under a rule that allows every method do reach the upstream, body intact."""

from __future__ import annotations

import gzip
import json
import socket
import ssl

import h2.config
import h2.connection
import h2.events
import pytest
import requests

from jupyter_openshell.proxy._server import STREAM_THRESHOLD
from jupyter_openshell.proxy.addons.enforce import FORM_BODY_LIMIT

POLICY = """\
network:
  egress:
    - host: "api.example.com"
      ports: [{port}, {tls_port}]
{methods}      addresses: ["127.0.0.1"]
      action: allow
"""
FORM = "application/x-www-form-urlencoded"
B = "XyZzY"


def _multipart(name: str, value: bytes, extra: str = "") -> bytes:
    return (f"--{B}\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n"
            f"--{B}\r\nContent-Disposition: form-data; {name}\r\n{extra}\r\n").encode() + value + \
        f"\r\n--{B}--\r\n".encode()


# (Content-Type or None, Content-Encoding or None, body): each asks the server for DELETE
ATTACKS = {
    "form": (FORM, None, b"a=1&_method=DELETE"),
    "upper-case name": (FORM, None, b"_METHOD=delete"),
    "encoded name": (FORM, None, b"%5Fmethod=DELETE"),
    "repeated": (FORM, None, b"_method=GET&_method=DELETE"),
    "php dot name": (FORM + "; charset=UTF-8", None, b"a=1&.method=DELETE"),
    "php array": (FORM, None, b"_method[]=DELETE"),
    "semicolon separated": (FORM, None, b"a=1;_method=DELETE"),
    "no content type": (None, None, b"_method=DELETE"),
    "utf-16 charset": (FORM + "; charset=utf-16", None, "_method=DELETE".encode("utf-16")),
    "ebcdic charset": (FORM + "; charset=ibm037", None, "_method=DELETE".encode("cp037")),
    "gzip": (FORM, "gzip", gzip.compress(b"_method=DELETE")),
    "multipart": (f"multipart/form-data; boundary={B}", None, _multipart('name="_method"', b"DELETE")),
    "multipart rfc2231": (f'multipart/form-data; boundary="{B}"', None,
                          _multipart("name*=UTF-8''%5Fmethod", b"DELETE")),
    "multipart base64": (f"multipart/form-data; boundary={B}", None,
                         _multipart('name="_method"', b"REVMRVRF", "Content-Transfer-Encoding: base64\r\n")),
    "json": ("application/json", None, b'{"a": 1, "_method": "DELETE"}'),
    "json escaped key": ("application/json; charset=utf-8", None, b'{"\\u005fmethod": "delete"}'),
    "json utf-16": ("application/vnd.api+json", None, '{"_method": "DELETE"}'.encode("utf-16")),
    "two content types": (f"text/plain, {FORM}", None, b"_method=DELETE"),
}


@pytest.fixture(scope="module")
def post_only(tmp_path_factory, test_ca, upstream, upstream_tls):
    from jupyter_openshell.testing import start_proxy

    state = tmp_path_factory.mktemp("post-only")
    policy = state / "policy.yaml"
    policy.write_text(POLICY.format(port=upstream.port, tls_port=upstream_tls.port,
                                    methods='      methods: ["GET", "POST"]\n'))
    run = start_proxy(state, policy, upstream_ca=test_ca.ca_path, resolve={"api.example.com": "127.0.0.1"})
    yield run
    run.stop()


def _post(proxy, url: str, ctype: str | None, encoding: str | None, body: bytes) -> requests.Response:
    headers = {"Content-Type": ctype} if ctype else {}
    if encoding:
        headers["Content-Encoding"] = encoding
    with requests.Session() as s:
        s.trust_env = False
        req = requests.Request("POST", url, data=body, headers=headers).prepare()
        if ctype is None:
            req.headers.pop("Content-Type", None)
        return s.send(req, proxies={"http": proxy.url, "https": proxy.url}, verify=str(proxy.ca_bundle),
                      timeout=20)


@pytest.mark.parametrize("name", list(ATTACKS))
def test_a_body_override_to_a_method_the_rule_does_not_allow_is_refused(post_only, upstream, name):
    upstream.clear()
    ctype, encoding, body = ATTACKS[name]
    r = _post(post_only, f"http://api.example.com:{upstream.port}/items/1", ctype, encoding, body)
    assert r.status_code in (400, 403), (name, r.status_code, r.text)
    if r.status_code == 403:
        assert "method override to DELETE" in r.json()["error"]
    assert upstream.requests == []


_END = h2.events.StreamEnded | h2.events.StreamReset | h2.events.ConnectionTerminated


def _h2_post(proxy, authority: str, path: str, headers: list[tuple[str, str]], body: bytes) -> int:
    """One HTTP/2 POST inside a CONNECT tunnel; returns the status."""
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    raw.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    assert raw.recv(4096).startswith(b"HTTP/1.1 200")
    ctx = ssl.create_default_context(cafile=str(proxy.ca_bundle))
    ctx.set_alpn_protocols(["h2"])
    tls = ctx.wrap_socket(raw, server_hostname=authority.split(":")[0])
    assert tls.selected_alpn_protocol() == "h2"
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "POST"), (":scheme", "https"), (":authority", authority),
                          (":path", path), *headers])
    conn.send_data(1, body, end_stream=True)
    tls.sendall(conn.data_to_send())
    status, done = 0, False
    while not done and (data := tls.recv(65536)):
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                status = int(dict(ev.headers)[b":status"])
            elif isinstance(ev, h2.events.DataReceived):
                conn.acknowledge_received_data(len(ev.data), ev.stream_id)
            elif isinstance(ev, _END):
                done = True
        tls.sendall(conn.data_to_send())
    tls.close()
    return status


def test_the_same_attack_inside_a_tls_tunnel_and_over_http2(post_only, upstream_tls):
    upstream_tls.clear()
    authority = f"api.example.com:{upstream_tls.port}"
    r = _post(post_only, f"https://{authority}/items/1", FORM, None, b"_method=DELETE")
    assert r.status_code == 403
    form = [("content-type", FORM)]
    sized = [*form, ("content-length", "14")]
    assert _h2_post(post_only, authority, "/items/1", sized, b"_method=DELETE") == 403
    assert _h2_post(post_only, authority, "/items/1", form, b"_method=DELETE") == 403  # no length given
    # CONTROL: an allowed override passes, over HTTP/1.1 and HTTP/2
    sized = [*form, ("content-length", "11")]
    assert _h2_post(post_only, authority, "/items/1", sized, b"_method=GET") == 200
    assert _post(post_only, f"https://{authority}/items/2", FORM, None, b"_method=GET").status_code == 200
    assert [(q.method, q.path, q.body) for q in upstream_tls.requests] == [
        ("POST", "/items/1", b"_method=GET"), ("POST", "/items/2", b"_method=GET")]


def test_control_allowed_overrides_and_plain_bodies_reach_the_upstream_intact(post_only, upstream):
    upstream.clear()
    url = f"http://api.example.com:{upstream.port}/items/1"
    sent = [
        (FORM, b"a=1&_method=GET"),
        (f"multipart/form-data; boundary={B}", _multipart('name="_method"', b"POST")),
        ("application/json", b'{"method": "DELETE", "nested": {"_method": "DELETE"}}'),  # not overrides
        ("text/plain", b"_method=DELETE"),  # not a form: no server reads an override from it
    ]
    for ctype, body in sent:
        r = _post(post_only, url, ctype, None, body)
        assert r.status_code == 200, (ctype, r.text)
    assert [q.body for q in upstream.requests] == [b for _, b in sent]
    recs = [f for f in post_only.client.flows() if f["path"] == "/items/1"]
    assert recs[-1]["decision"] == "allow"


def test_control_a_rule_allowing_every_method_forwards_the_override(make_proxy, upstream, upstream_tls):
    """The refusal above comes from the rule: where every method is allowed, the body is neither
    buffered nor judged, and the very same DELETE override reaches the upstream."""
    upstream.clear()
    proxy = make_proxy(POLICY.format(port=upstream.port, tls_port=upstream_tls.port, methods=""),
                       resolve={"api.example.com": "127.0.0.1"})
    r = _post(proxy, f"http://api.example.com:{upstream.port}/items/1", FORM, None, b"a=1&_method=DELETE")
    assert r.status_code == 200
    assert [q.body for q in upstream.requests] == [b"a=1&_method=DELETE"]


def test_bodies_are_held_back_up_to_the_limit_chunked_ones_too_and_refused_past_it(post_only, upstream):
    """A held body is never streamed upstream before it is judged, even past the proxy's streaming
    threshold or without a length; past FORM_BODY_LIMIT it is refused 413 (nothing sent)."""
    from mitmproxy.utils.human import parse_size

    upstream.clear()
    url = f"http://api.example.com:{upstream.port}/upload"
    middle = b"a=" + b"x" * (2 * parse_size(STREAM_THRESHOLD)) + b"&_method=DELETE"
    assert len(middle) < FORM_BODY_LIMIT
    r = _post(post_only, url, FORM, None, middle)
    assert r.status_code == 403 and "method override to DELETE" in r.json()["error"]
    big = b"a=" + b"x" * FORM_BODY_LIMIT + b"&_method=DELETE"
    r = _post(post_only, url, FORM, None, big)
    assert r.status_code == 413 and "checked up to" in r.json()["error"]
    with requests.Session() as s:
        s.trust_env = False
        chunked = s.post(url, data=iter([b"a=1&", b"_method=", b"DELETE"]), headers={"Content-Type": FORM},
                         proxies={"http": post_only.url})
        assert chunked.status_code == 403
        chunked_big = s.post(url, data=iter([b"x" * 65536] * 20 + [b"&_method=GET"]),
                             headers={"Content-Type": FORM}, proxies={"http": post_only.url})
        assert chunked_big.status_code == 413
    assert upstream.requests == []
    # CONTROL: a body no server reads a form from is not held back, whatever its size
    r = _post(post_only, url, "application/octet-stream", None, big)
    assert r.status_code == 200
    assert [len(q.body) for q in upstream.requests] == [len(big)]
    rec = [f for f in post_only.client.flows() if f["path"] == "/upload"]
    assert [f["status"] for f in rec] == [403, 413, 403, 413, 200]
    assert all(f["decision"] == "deny" and f["bytes_out"] == 0 for f in rec[:4])
    assert "method override" in rec[1]["reason"] and json.dumps(rec[1]).count("checked up to") == 1
