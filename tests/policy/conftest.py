"""Fixtures of the policy-engine tests."""

from __future__ import annotations

import pytest

from jupyter_openshell.policy import _yamlfast


@pytest.fixture(params=["libyaml", "ruamel"])
def yaml_loader(request, monkeypatch):
    """Run a test once with the libyaml fast path and once with ruamel only: both must agree on
    everything the tests check (values, positions, messages)."""
    if request.param == "ruamel":
        monkeypatch.setattr(_yamlfast, "load", lambda text: None)
    elif _yamlfast.yaml is None:
        pytest.skip("PyYAML without libyaml: only the ruamel loader exists here")
    return request.param
