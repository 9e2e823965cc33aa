"""Backends are plugins: chosen by name (entry points), by $OPENSHELL_BACKEND, and found again from a
sandbox's record."""

from __future__ import annotations

import pytest

from jupyter_openshell.runtime import (
    SandboxError,
    available_backends,
    backend_of,
    default_backend,
    get_backend,
)
from jupyter_openshell.runtime._local import LocalBackend


def test_local_is_built_in_and_listed():
    assert isinstance(get_backend("local"), LocalBackend)
    assert available_backends()[0] == "local"


def test_unknown_backend_names_the_installed_ones():
    with pytest.raises(SandboxError, match=r"unknown sandbox backend 'nope'; installed: local"):
        get_backend("nope")


def test_default_backend_from_the_environment(monkeypatch):
    monkeypatch.delenv("OPENSHELL_BACKEND", raising=False)
    assert default_backend() == "local" and isinstance(get_backend(), LocalBackend)
    monkeypatch.setenv("OPENSHELL_BACKEND", "nope")
    with pytest.raises(SandboxError, match="unknown sandbox backend 'nope'"):
        get_backend()


def test_backend_of_reads_the_record(state_dir):
    from jupyter_openshell.runtime import _state

    with pytest.raises(SandboxError, match="no sandbox named ghost"):
        backend_of("ghost")
    _state.directory("rec-test").mkdir(parents=True, exist_ok=True)
    _state.write({"name": "rec-test", "backend": "local"})
    try:
        assert isinstance(backend_of("rec-test"), LocalBackend)
        _state.write({"name": "rec-test", "backend": "elsewhere"})
        with pytest.raises(SandboxError, match="unknown sandbox backend 'elsewhere'"):
            backend_of("rec-test")
    finally:
        _state.record_path("rec-test").unlink()
        _state.directory("rec-test").rmdir()


def test_the_default_policy_built_directly_is_what_parsing_it_gives():
    """A sandbox created without a policy gets DENY_ALL without the YAML parsers (CLI start-up): the
    policy built directly must be, field by field and version, what the parser makes of DENY_ALL."""
    from jupyter_openshell.policy import parse_policy
    from jupyter_openshell.runtime._links import DENY_ALL, default_policy

    parsed = parse_policy(DENY_ALL, source="<default sandbox policy>")
    built = default_policy()
    assert built == parsed and built.version == parsed.version and built.text == DENY_ALL
    assert built.compile().decide_connect("example.com", 443).allowed is False
