"""Upstream TLS trusts the machine's CA store plus certifi (issue 8, item 11).

The "machine's store" is OpenSSL's default, which `SSL_CERT_FILE` relocates: here it points, for the
proxy process only, at a bundle holding the test CA, standing in for an organisation's CA installed
on the host. Without `--upstream-ca` the upstream is trusted by default ("system+certifi") and with
"system"; the control ("certifi" alone, where the proxy used to look first and only) refuses it."""

from __future__ import annotations

import json

import pytest

from jupyter_openshell.testing import UpstreamServer, start_proxy

from .conftest import NAMES, curl

POLICY = 'network:\n  egress:\n    - host: "127.0.0.1"\n      ports: [{port}]\n      action: allow\n'


@pytest.fixture(scope="module")
def org_upstream(test_ca):
    with UpstreamServer(tls=test_ca.server_context(NAMES)) as srv:
        yield srv


@pytest.fixture
def system_bundle(tmp_path, test_ca):
    bundle = tmp_path / "system-ca-certificates.crt"
    bundle.write_bytes(test_ca.ca_path.read_bytes())
    return bundle


@pytest.mark.parametrize(("store", "trusted"), [
    (None, True),  # the default: system+certifi
    ("system", True),
    ("certifi", False),  # the control: certifi alone does not know the organisation's CA
])
def test_system_store_is_trusted(tmp_path, org_upstream, system_bundle, store, trusted):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(port=org_upstream.port))
    proxy = start_proxy(tmp_path / "state", policy, env={"SSL_CERT_FILE": str(system_bundle)},
                        extra=["--upstream-trust", store] if store else None)
    try:
        code, body = curl(proxy, f"https://127.0.0.1:{org_upstream.port}/hello")
        if trusted:
            assert code == 200 and json.loads(body)["path"] == "/hello"
        else:
            assert code == 502 and "certificate verify failed" in json.loads(body)["reason"].lower()
    finally:
        proxy.stop()


def test_a_file_alone(tmp_path, org_upstream, test_ca):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(port=org_upstream.port))
    proxy = start_proxy(tmp_path / "state", policy, extra=["--upstream-trust", str(test_ca.ca_path)])
    try:
        assert curl(proxy, f"https://127.0.0.1:{org_upstream.port}/hello")[0] == 200
    finally:
        proxy.stop()


def test_bad_store_is_refused_with_the_reason(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "jupyter_openshell", "proxy", "--policy", "/dev/null",
                          "--upstream-trust", str(tmp_path / "missing.pem"), "--state-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "system+certifi" in out.stderr and "missing.pem" in out.stderr
