"""Method overrides in request bodies (`body_override_methods`) and in the query, in every spelling a
server may accept, and `decide()` with a body: the overriding method must be allowed too."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest

from jupyter_openshell.policy import (
    BadRequest,
    RequestInfo,
    body_override_methods,
    is_override_param,
    may_carry_override,
    override_methods,
    parse_policy,
)

FORM = "application/x-www-form-urlencoded"


def ct(value: str | None, *more: tuple[str, str]) -> list[tuple[str, str]]:
    return ([("Content-Type", value)] if value is not None else []) + list(more)


def _multipart(disposition: str, value: bytes, extra: str = "", boundary: str = "b0UND") -> bytes:
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; {disposition}\r\n{extra}\r\n")
    return head.encode() + value + f"\r\n--{boundary}--\r\n".encode()


@pytest.mark.parametrize(
    "headers, body",
    [
        (ct(FORM), b"a=1&_method=DELETE"),
        (ct(FORM), b"_METHOD=delete"),
        (ct(FORM), b"%5Fmethod=DELETE"),
        (ct(FORM), b"%5f%6Dethod=DELETE"),
        (ct(FORM), b"_method=GET&_method=DELETE"),
        (ct(FORM), b"a=1;_method=DELETE"),
        (ct(FORM), b"+_method=DELETE"),  # PHP drops leading spaces
        (ct(FORM), b".method=DELETE"),  # ... and reads . and space as _
        (ct(FORM), b"_method[]=DELETE"),
        (ct(FORM), b"_method%00x=DELETE"),
        (ct("Application/X-WWW-Form-Urlencoded; Charset=UTF-8"), b"_method=DELETE"),
        (ct(None), b"_method=DELETE"),  # Rack reads a POST without Content-Type as a form
        (ct(""), b"_method=DELETE"),
        (ct(f"{FORM}; charset=utf-16"), "a=1&_method=DELETE".encode("utf-16")),
        (ct(f"{FORM}; charset=utf-16le"), "_method=DELETE".encode("utf-16-le")),
        (ct(f"{FORM}; charset=ibm037"), "_method=DELETE".encode("cp037")),
        (ct(f'{FORM}; charset="utf-32"'), "_method=DELETE".encode("utf-32")),
        (ct(FORM, ("Content-Encoding", "gzip")), gzip.compress(b"_method=DELETE")),
        (ct(FORM, ("Content-Encoding", "deflate")), zlib.compress(b"_method=DELETE")),
        (ct(FORM, ("Content-Encoding", "gzip, deflate")), zlib.compress(gzip.compress(b"_method=DELETE"))),
        (ct("text/plain, " + FORM), b"_method=DELETE"),
        (ct("text/plain", ("Content-Type", FORM)), b"_method=DELETE"),
        (ct("multipart/form-data; boundary=b0UND"), _multipart('name="_method"', b"DELETE")),
        (ct("multipart/form-data; boundary=b0UND"), _multipart("name=_METHOD", b"delete")),
        (ct('multipart/form-data; boundary="b0UND"'), _multipart("name*=UTF-8''%5Fmethod", b"DELETE")),
        (ct("multipart/form-data; boundary=b0UND"),
         _multipart('name="_method"', b"REVMRVRF", "Content-Transfer-Encoding: base64\r\n")),
        (ct("multipart/form-data; boundary=b0UND"),
         _multipart('name="_method"', b"DEL=45TE", "Content-Transfer-Encoding: quoted-printable\r\n")),
        (ct("multipart/form-data; boundary=b0UND"),
         _multipart('name="_method"', "DELETE".encode("utf-16"),
                    "Content-Type: text/plain; charset=utf-16\r\n")),
        (ct("multipart/form-data; boundary=b0UND"),  # LF-only lines, as lenient parsers accept
         b'--b0UND\nContent-Disposition: form-data; name="_method"\n\nDELETE\n--b0UND--\n'),
        (ct("application/json"), b'{"_method": "DELETE"}'),
        (ct("application/json"), b'{"a": [1], "\\u005fmethod": "delete"}'),
        (ct("application/json"), b'{"_method": "GET", "_method": "DELETE"}'),
        (ct("application/problem+json"), '{"_method": "DELETE"}'.encode("utf-16")),
        (ct("application/json; charset=ibm037"), '{"_method": "DELETE"}'.encode("cp037")),
    ],
)
def test_body_overrides_are_found_in_every_spelling(headers, body):
    assert may_carry_override(headers)
    assert "DELETE" in body_override_methods(headers, body)


@pytest.mark.parametrize(
    "headers, body",
    [
        (ct(FORM), b"method=DELETE&x_method=DELETE&a=_method"),
        (ct("text/plain"), b"_method=DELETE"),
        (ct("application/octet-stream"), b"_method=DELETE"),
        (ct("application/json"), b'{"nested": {"_method": "DELETE"}, "list": [{"_method": "PUT"}]}'),
        (ct("application/json"), b'[{"_method": "DELETE"}]'),
        (ct("application/json"), b"not json at all"),
        (ct("multipart/form-data; boundary=b0UND"), _multipart('filename="_method"; name="f"', b"DELETE")),
        (ct(FORM), b""),
    ],
)
def test_control_what_no_server_reads_as_an_override_is_not_one(headers, body):
    assert body_override_methods(headers, body) == []


@pytest.mark.parametrize(
    "headers, body",
    [
        (ct(f"{FORM}; charset=no-such-charset"), b"_method=DELETE"),
        (ct(f"{FORM}; charset=utf-16"), b"\xff"),  # not UTF-16
        (ct(FORM), b"_method=DEL%00ETE"),  # not a method token
        (ct(FORM), b"_method=%FF"),
        (ct(FORM, ("Content-Encoding", "gzip")), b"not gzip"),
        (ct(FORM, ("Content-Encoding", "compress")), b"_method=DELETE"),
        (ct(FORM, ("Content-Encoding", "gzip")), gzip.compress(b"a" * (9 * 1024 * 1024))),  # a zip bomb
        (ct("multipart/form-data"), b"_method=DELETE"),  # no boundary
        (ct("multipart/form-data; boundary=b0UND"), _multipart('name="=?utf-8?q?=5Fmethod?="', b"DELETE")),
        (ct("multipart/form-data; boundary=b0UND"),
         _multipart('name="_method"', b"x", "Content-Transfer-Encoding: x-uuencode\r\n")),
        (ct("application/json"), b'{"_method": ["DELETE"]}'),
        (ct("application/json"), b'{"_method": "DELETE",}'),  # lenient parsers accept it
        (ct('multipart/form-data; boundary=a; boundary=b'), b"--a\r\n"),
    ],
)
def test_what_cannot_be_read_with_certainty_is_a_bad_request(headers, body):
    with pytest.raises(BadRequest):
        body_override_methods(headers, body)


def test_raw_and_decoded_body_are_both_read():
    """A server that ignores Content-Encoding reads the raw bytes: a stored (uncompressed) deflate
    block carries `&_method=DELETE&` as is."""
    stored = zlib.compressobj(0)
    raw = stored.compress(b"x&_method=DELETE&y") + stored.flush()
    assert b"&_method=DELETE&" in raw
    assert "DELETE" in body_override_methods(ct(FORM, ("Content-Encoding", "deflate")), raw)


def test_is_override_param_and_query_spellings():
    for name in ("_method", "_METHOD", " _method", ".method", "_method[]", "_method[x]", "_method\x00"):
        assert is_override_param(name), name
    for name in ("method", "x_method", "_methods", "__method"):
        assert not is_override_param(name), name
    assert override_methods((), "a=1&.method=delete") == ["DELETE"]
    assert override_methods((), "%5Fmethod=PUT&_method%5B%5D=PATCH") == ["PUT", "PATCH"]


POLICY = parse_policy(
    """\
network:
  egress:
    - host: api.example.com
      methods: ["GET", "POST"]
      action: allow
    - host: open.example.com
      action: allow
"""
).compile()


def _post(host: str, headers, body: bytes):
    return POLICY.decide(RequestInfo("POST", "https", host, 443, "/items/1", headers=headers, body=body))


def test_decide_with_a_body_requires_the_overriding_method():
    d = _post("api.example.com", ct(FORM), b"_method=DELETE")
    assert d.status == 403 and "method override to DELETE" in d.reason
    assert d.variants and d.variants[0].rule["paths"][0]["methods"] == ["POST"]
    assert _post("api.example.com", ct(FORM), b"_method=GET").allowed  # CONTROL: allowed override
    assert _post("api.example.com", ct("application/json"), json.dumps({"_method": "get"}).encode()).allowed
    assert _post("open.example.com", ct(FORM), b"_method=DELETE").allowed  # every method allowed there
    bad = _post("api.example.com", ct(FORM), b"_method=DE LETE")
    assert bad.status == 400 and bad.reason.startswith("bad request")


def test_any_method_allowed_decides_which_bodies_the_proxy_must_read():
    def every(host: str) -> bool:
        return POLICY.any_method_allowed(RequestInfo("POST", "https", host, 443, "/items/1"))

    assert not every("api.example.com") and every("open.example.com")
    assert not every("nowhere.example.com")
    assert may_carry_override(ct(FORM)) and may_carry_override(ct(None))
    assert not may_carry_override(ct("image/png")) and not may_carry_override(ct("text/plain"))
