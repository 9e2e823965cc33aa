"""How denials are put into words for the CLI, the notices and PolicyPanel (`jupyter_openshell.flowtext`)."""

from __future__ import annotations

from jupyter_openshell.flowtext import allow_request, group_denials, host_allow_command, url_of


def _record(method="GET", host="pypi.org", port=443, path="/simple/x/", decision="deny", scheme="https"):
    return {"method": method, "host": host, "port": port, "path": path, "decision": decision,
            "scheme": scheme}


def test_denials_are_grouped_by_request_with_counts_in_order_of_appearance():
    records = [_record(), _record(decision="allow"), _record(path="/other"), _record(), _record()]
    grouped = group_denials(records)
    assert [(d.method, d.url, d.count) for d in grouped] == [
        ("GET", "https://pypi.org/simple/x/", 3), ("GET", "https://pypi.org/other", 1)]
    assert url_of(_record(scheme="http", port=8080, host="127.0.0.2", path="/a")) == "http://127.0.0.2:8080/a"


def test_a_refused_connect_is_allowed_as_a_get_of_the_host_not_as_a_connect_rule():
    assert allow_request("CONNECT", "https://pypi.org/") == ("GET", "https://pypi.org/")
    assert allow_request("CONNECT", "https://h.example:8443/") == ("GET", "https://h.example:8443/")
    assert allow_request("POST", "https://h/x") == ("POST", "https://h/x")  # control: as it was made
    assert host_allow_command("kernel-1", "CONNECT", "https://pypi.org/") == (
        "openshell sandbox allow kernel-1 GET https://pypi.org/")
    quoted = "openshell sandbox allow k GET 'https://h/a b?c'"
    assert host_allow_command("k", "GET", "https://h/a b?c") == quoted
