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
