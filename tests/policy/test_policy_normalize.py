"""The normaliser: every rule of issue 2 §2, plus hypothesis properties (idempotence, no dot
segments or empty segments survive, equivalent encodings normalise alike, IP spellings)."""

from __future__ import annotations

import ipaddress
import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jupyter_openshell.policy import (
    BadRequest,
    HostInfo,
    RequestInfo,
    normalize_host,
    normalize_method,
    normalize_path,
    override_methods,
    parse_policy,
    parse_query,
    same_authority,
    split_host_port,
    strip_params,
)

# --- hosts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("API.Example.COM", "api.example.com"),
        ("api.example.com.", "api.example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        (
            "\uff21\uff30\uff29\uff0eexample\uff0ecom",
            "api.example.com",
        ),  # full-width letters and dots (nameprep)
        ("a。b.example", "a.b.example"),  # ideographic full stop is a label separator
        (b"api.example.com", "api.example.com"),
    ],
)
def test_host_names_are_lowercased_idna_encoded_and_lose_one_trailing_dot(raw, expected):
    assert normalize_host(raw) == HostInfo("name", expected)


@pytest.mark.parametrize(
    "raw",
    [
        "127.0.0.1",
        "2130706433",
        "0x7f000001",
        "0x7f.1",
        "0x7F.0.0.1",
        "0177.0.0.1",
        "0177.0.0.01",
        "127.1",
        "127.0.1",
        "127.0.0.1.",
        "[::ffff:127.0.0.1]",
        "::ffff:7f00:1",
        "\uff11\uff12\uff17.\uff10.\uff10.\uff11",  # full-width digits map to ASCII and are then an IP
    ],
)
def test_every_spelling_of_loopback_is_the_ipv4_address(raw):
    assert normalize_host(raw) == HostInfo("ipv4", "127.0.0.1")


def test_link_local_metadata_address_spellings():
    for raw in (
        "169.254.169.254",
        "2852039166",
        "0xa9.0xfe.0xa9.0xfe",
        "0251.0376.0251.0376",
        "169.16689662",
    ):
        assert normalize_host(raw) == HostInfo("ipv4", "169.254.169.254"), raw


@pytest.mark.parametrize(
    "raw, expected", [("[::1]", "::1"), ("[0:0:0:0:0:0:0:1]", "::1"), ("[FE80::1]", "fe80::1")]
)
def test_ipv6_literals_are_compressed_and_unbracketed(raw, expected):
    info = normalize_host(raw)
    assert info == HostInfo("ipv6", expected)
    assert info.url_host == f"[{expected}]"
    assert info.is_ip


@pytest.mark.parametrize(
    "raw",
    [
        "",
        ".",
        "a..b",
        "api.example.com..",
        "256.0.0.1",
        "1.2.3.4.5",
        "0x100.0.0.1",
        "08.0.0.1",  # not octal
        "example.123",  # ends in a number but is not an IPv4 address
        "4294967296",
        "[::1",
        "[fe80::1%eth0]",
        "exa mple.com",
        "exa%6dple.com",
        "api.example.com\x00",
        "user@host",
        "-bad.example",
        "a" * 64 + ".example",
    ],
)
def test_malformed_hosts_are_bad_requests(raw):
    with pytest.raises(BadRequest):
        normalize_host(raw)


def test_split_host_port_and_same_authority():
    assert split_host_port("example.com:8443") == ("example.com", 8443)
    assert split_host_port("[::1]:443") == ("[::1]", 443)
    assert split_host_port("[::1]") == ("[::1]", None)
    assert split_host_port("example.com") == ("example.com", None)
    with pytest.raises(BadRequest):
        split_host_port("example.com:99999")
    assert same_authority("API.example.com:443", "api.example.com.", "api.example.com")
    assert same_authority("127.0.0.1:443", "2130706433", None)
    assert not same_authority("api.example.com:443", "evil.example.com")


# --- paths ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("/", "/"),
        ("", None),
        ("/v1/users/1", "/v1/users/1"),
        ("/v1/./users/1", "/v1/users/1"),
        ("/v1/x/../users/1", "/v1/users/1"),
        ("/../../v1", "/v1"),  # never above the root
        ("/v1/users/..", "/v1/"),
        ("/v1//users///1", "/v1/users/1"),
        ("//v1/users", "/v1/users"),
        ("/v1/%75sers/%31", "/v1/users/1"),  # unreserved characters are decoded
        ("/v1/%2e%2e/admin", "/admin"),  # encoded dots are dot segments
        ("/v1/%2E/x", "/v1/x"),
        ("/a%20b", "/a%20b"),
        ("/a b", "/a%20b"),  # raw characters outside pchar are encoded
        ("/caf%c3%a9", "/caf%C3%A9"),  # hex is upper-cased, non-ASCII stays encoded
        ("/café", "/caf%C3%A9"),
        ("/a%3Bb", "/a%3Bb"),  # an encoded ';' stays data
        ("/a;b=1/c", "/a;b=1/c"),
        ("/v1/users/1?x=1", "/v1/users/1"),  # the query is not part of the path
        ("/a:b@c!$&'()*+,=", "/a:b@c!$&'()*+,="),
        ("/x/", "/x/"),
    ],
)
def test_paths_are_canonicalised(raw, expected):
    if expected is None:
        with pytest.raises(BadRequest):
            normalize_path(raw)
    else:
        assert normalize_path(raw) == expected


@pytest.mark.parametrize(
    "raw, why",
    [
        ("/v1/users%2f..%2fadmin", "encoded / making a dot segment"),
        ("/v1/users%2F%2F1", "encoded / making an empty segment"),
        ("/v1/%2F1", "encoded / making an empty segment"),
        ("/v1/users%2F.", "encoded / making a dot segment"),
        ("/v1/a%2Fb/../c", "encoded / with dot segments (/v1/c or /v1/a/c?)"),
        ("/v1%5cadmin", "encoded backslash"),
        ("/v1\\admin", "raw backslash"),
        ("/v1/%00", "encoded NUL"),
        ("/v1/\x00", "raw NUL"),
        ("/v1/%0d%0aX:1", "encoded CR LF"),
        ("/v1/%zz", "invalid escape"),
        ("/v1/%4", "truncated escape"),
        ("/v1/%", "truncated escape"),
        ("/v1/%c0%af", "overlong UTF-8 for /"),
        ("/v1/%e0%80%af", "overlong 3-byte UTF-8"),
        ("/v1/%ed%a0%80", "UTF-16 surrogate in UTF-8"),
        ("/v1/%ff", "invalid UTF-8"),
        ("/v1/..;/admin", "dot segment with params"),
        ("/v1/.;x/admin", "dot segment with params"),
        ("/v1#frag", "fragment"),
        ("v1/users", "relative"),
    ],
)
def test_ambiguous_paths_are_bad_requests(raw, why):
    with pytest.raises(BadRequest):
        normalize_path(raw)


def test_raw_invalid_utf8_bytes_are_bad_requests():
    with pytest.raises(BadRequest):
        normalize_path(b"/v1/\xc0\xaf")
    with pytest.raises(BadRequest):
        normalize_path("/v1/\udcc0\udcaf")  # how mitmproxy surfaces undecodable bytes (surrogateescape)
    assert normalize_path(b"/caf\xc3\xa9") == "/caf%C3%A9"


def test_strip_params():
    assert strip_params("/a;x=1/b;y") == "/a/b"
    assert strip_params("/a/b") == "/a/b"
    assert strip_params("/admin;jsessionid=1") == "/admin"


# --- methods, overrides, queries ---------------------------------------------------------------


def test_methods_are_exact_uppercase_tokens():
    assert normalize_method("GET") == "GET"
    assert normalize_method("M-SEARCH") == "M-SEARCH"
    assert normalize_method(b"PROPFIND") == "PROPFIND"
    for bad in ("get", "Get", "GET ", "G ET", "", "GET\r\n", "G\x00", "X" * 40, "DELETE/"):
        with pytest.raises(BadRequest):
            normalize_method(bad)


def test_override_methods_from_headers_and_query():
    assert override_methods({"X-HTTP-Method-Override": "delete"}) == ["DELETE"]
    assert override_methods([("x-http-method", "PUT"), ("X-Method-Override", "PATCH, PUT")]) == [
        "PUT",
        "PATCH",
    ]
    assert override_methods((), "a=1&_method=DELETE") == ["DELETE"]
    assert override_methods((), "%5Fmethod=put") == ["PUT"]
    assert override_methods((), "a=1;_method=delete") == ["DELETE"]
    assert override_methods({"Accept": "x"}, "a=1") == []
    with pytest.raises(BadRequest):
        override_methods({"X-HTTP-Method-Override": "DEL ETE"})


def test_override_methods_reads_mitmproxy_style_headers():
    class Headers:  # mitmproxy.http.Headers exposes raw fields as (bytes, bytes)
        fields = ((b"Host", b"x"), (b"X-HTTP-Method-Override", b"DELETE"))

    assert override_methods(Headers()) == ["DELETE"]


def test_parse_query():
    assert parse_query("a=1&b=x+y&c=%41&d") == [("a", "1"), ("b", "x y"), ("c", "A"), ("d", "")]
    assert parse_query("a=1;b=2", "&;") == [("a", "1"), ("b", "2")]
    with pytest.raises(BadRequest):
        parse_query("a=%zz")
    with pytest.raises(BadRequest):
        parse_query("a=%c0%af")


# --- properties ----------------------------------------------------------------------------------

_path_chars = st.sampled_from(
    [
        *(string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@/ "),
        *["%2e", "%2E", "%41", "%7e", "%20", "%25", "..", ".", "//", "%C3%A9", "é"],
    ]
)
paths = st.lists(_path_chars, max_size=30).map(lambda parts: "/" + "".join(parts))


def _norm_or_none(p: str) -> str | None:
    try:
        return normalize_path(p)
    except BadRequest:
        return None


@settings(max_examples=400, deadline=None)
@given(paths)
def test_normalize_path_is_idempotent_and_leaves_no_dot_or_empty_segments(p):
    n = _norm_or_none(p)
    if n is None:
        return
    assert normalize_path(n) == n
    assert n.startswith("/")
    assert "//" not in n
    segments = n.split("/")[1:]
    assert ".." not in segments and "." not in segments
    assert "%2e" not in n.lower()


_UNRESERVED = string.ascii_letters + string.digits + "-._~"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=_UNRESERVED + "/", max_size=40), st.data())
def test_percent_encoding_unreserved_characters_changes_nothing(p, data):
    p = "/" + p
    encoded = "".join(f"%{ord(c):02x}" if c != "/" and data.draw(st.booleans(), label=c) else c for c in p)
    assert _norm_or_none(encoded) == _norm_or_none(p)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=0, max_value=2**32 - 1),
    st.sampled_from(["dec", "hex", "oct", "dotted", "short", "mapped"]),
)
def test_ipv4_spellings_normalise_to_the_dotted_quad(n, spelling):
    dotted = str(ipaddress.IPv4Address(n))
    a, b, c, d = (int(x) for x in dotted.split("."))
    text = {
        "dec": str(n),
        "hex": hex(n),
        "oct": ".".join(f"0{x:o}" for x in (a, b, c, d)),
        "dotted": dotted,
        "short": f"{a}.{(b << 16) + (c << 8) + d}",
        "mapped": f"[::ffff:{dotted}]",
    }[spelling]
    assert normalize_host(text) == HostInfo("ipv4", dotted)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_normalize_host_never_returns_a_numeric_name(text):
    try:
        info = normalize_host(text)
    except BadRequest:
        return
    if info.kind == "name":
        assert not info.value.split(".")[-1].isdigit()
        assert info.value == info.value.lower() and not info.value.endswith(".")
        assert normalize_host(info.value) == info


_ESCAPE = re.compile(r"%[0-9a-fA-F]{2}")


@settings(max_examples=300, deadline=None)
@given(paths)
def test_hex_case_of_escapes_does_not_matter_and_output_escapes_are_canonical(p):
    upper = _norm_or_none(_ESCAPE.sub(lambda m: m.group().upper(), p))
    lower = _norm_or_none(_ESCAPE.sub(lambda m: m.group().lower(), p))
    assert upper == lower
    if upper is not None:
        for esc in re.findall(r"%(..)", upper):
            assert re.fullmatch("[0-9A-F]{2}", esc)
            assert chr(int(esc, 16)) not in _UNRESERVED  # unreserved characters are never left encoded


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "..", ".", "", "%2e%2e", "%2E"]), max_size=12))
def test_dot_segments_never_escape_the_root_or_survive(segments):
    n = normalize_path("/" + "/".join(segments))
    assert n.startswith("/") and "/../" not in n + "/" and "/./" not in n + "/"
    assert all(seg in ("a", "b") for seg in n.strip("/").split("/") if seg)


# --- deny rules see through every spelling (issue 7, item 5) -------------------------------------

_DENY_ADMIN = parse_policy(
    'network:\n  egress:\n    - host: api.example.com\n      paths: ["/admin/**"]\n      action: deny\n'
    "    - host: api.example.com\n      action: allow\n"
).compile()


def _disguise_char(c: str, how: str, upper_hex: bool) -> str:
    def esc(text: str) -> str:
        out = "".join(f"%{b:02x}" for b in text.encode())
        return out.upper() if upper_hex else out

    if how == "case":
        return c.swapcase()
    if how == "pct":
        return esc(c)
    if how == "double":
        return esc(c).replace("%", "%25")
    if how == "fullwidth" and c.isalpha():
        return esc(chr(ord(c.upper()) - ord("A") + 0xFF21))
    return c


@st.composite
def disguised_deny_paths(draw):
    """`/admin/<x>` in any mix of spellings a server may read as it: letter case, `%XX` of any
    character (either hex case), double encoding, full-width letters, trailing dots/spaces, `;params`,
    repeated or dotted separators, detours that `..` undoes, and `%2F` as the separator."""
    hows = st.sampled_from(["plain", "case", "pct", "double", "fullwidth"])
    segs = []
    for seg in ["admin", draw(st.sampled_from(["users", "x", "a.b"]))]:
        text = "".join(_disguise_char(c, draw(hows), draw(st.booleans())) for c in seg)
        text += draw(st.sampled_from(["", "", ";", ";x=1", ".", "%20", "..", "%2e"]))
        if draw(st.booleans()):
            detour = draw(st.sampled_from(["zz", "public"])), draw(st.sampled_from(["..", "%2e%2e"]))
            text = "/".join((*detour, text))
        segs.append(text)
    sep = draw(st.sampled_from(["/", "//", "/./", "%2F", "%2f"]))
    return draw(st.sampled_from(["/", "//", "/./"])) + sep.join(segs)


@settings(max_examples=500, deadline=None)
@given(disguised_deny_paths())
def test_no_spelling_of_a_denied_path_is_allowed(path):
    d = _DENY_ADMIN.decide(RequestInfo("GET", "https", "api.example.com", 443, path))
    assert not d.allowed, (path, d.path, d.reason)
    assert d.status in (400, 403)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="aAdDmMiInN/%2561ef.;", max_size=24))
def test_a_path_a_deny_rule_misses_is_decided_alike_in_its_forwarded_form(raw):
    """The bytes judged are the bytes sent: deciding the forwarded (normalised) path again gives the
    same decision."""
    d = _DENY_ADMIN.decide(RequestInfo("GET", "https", "api.example.com", 443, "/" + raw))
    if d.status == 400:
        return
    again = _DENY_ADMIN.decide(RequestInfo("GET", "https", "api.example.com", 443, d.path))
    assert (again.action, again.rule_index, again.path) == (d.action, d.rule_index, d.path)
