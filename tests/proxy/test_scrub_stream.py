"""The streaming scrubber on its own: every spelling of a key is found wherever the stream is split (a
key cut across chunk borders, byte by byte), random keys included; bytes without the key pass
unchanged and are not held back. Control: with a different key nothing is redacted, so each check
can see a miss."""

from __future__ import annotations

import os
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from jupyter_openshell.proxy._scrub import REDACTED, Scrubber, scrub

from .leaky_backend import forms

KEY = "sk-live/Abc+def=ghi_0123456789/XYZ~q.r"


def _stream(data: bytes, key: bytes, cuts: list[int]) -> bytes:
    s = Scrubber(key)
    out, prev = [], 0
    for cut in [*sorted(cuts), len(data)]:
        out.append(s.feed(data[prev:cut]))
        prev = cut
    return b"".join(out) + s.flush()


def test_every_spelling_split_at_every_offset():
    for name, form in forms(KEY).items():
        body = b'{"error": "bad key ' + form.encode() + b'", "n": "\\n"}'
        whole = scrub(body, KEY.encode())
        assert form.encode() not in whole and REDACTED in whole, name
        for cut in range(1, len(body)):
            assert _stream(body, KEY.encode(), [cut]) == whole, (name, cut)
        assert _stream(body, KEY.encode(), list(range(1, len(body)))) == whole, name
        assert scrub(body, b"sk-another-key-entirely-00000") == body, name  # control


@settings(max_examples=60, deadline=None)
@given(key=st.text(string.ascii_letters + string.digits + "-_/+=.~", min_size=12, max_size=80),
       name=st.sampled_from(sorted(forms("x" * 12))), cuts=st.lists(st.integers(0, 400), max_size=6))
def test_random_keys_in_every_spelling(key, name, cuts):
    body = b"event: x\ndata: {\"m\": \"" + forms(key)[name].encode() + b"\"}\n\n"
    out = _stream(body, key.encode(), [c for c in cuts if c < len(body)])
    assert forms(key)[name].encode() not in out and REDACTED in out


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000), max_size=8))
def test_data_without_the_key_passes_unchanged(data, cuts):
    assert _stream(data, KEY.encode(), [c for c in cuts if c < len(data)]) == data


def test_nothing_held_back_after_a_complete_event():
    s = Scrubber(KEY.encode())
    for i in range(200):
        event = b'data: {"delta": "tok %d 50%% & \\u00e9 \\"q\\" a\\/b s"}\n\n' % i
        assert s.feed(event) == event


def test_random_bytes_pass():
    blob = os.urandom(1 << 20)
    assert _stream(blob, KEY.encode(), list(range(0, len(blob), 16384))) == blob
