"""The example policies shipped in proxy/policies/ stay valid and mean what their comments say."""

from __future__ import annotations

from pathlib import Path

import pytest
from policy_seed import SEED

from jupyter_openshell.cli import main
from jupyter_openshell.policy import load_policy_file, parse_policy

EXAMPLES = Path(__file__).resolve().parents[2] / "proxy" / "policies"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_policy_checks(path, capsys):
    assert main(["policy", "check", str(path)]) == 0
    assert "OK (version" in capsys.readouterr().out


def test_seed_example_is_the_issue_document():
    assert load_policy_file(EXAMPLES / "seed.yaml").version == parse_policy(SEED, source="<seed>").version


@pytest.mark.parametrize(
    ("method", "url", "verdict"),
    [
        ("GET", "https://pypi.org/simple/requests/", "allow"),
        ("POST", "https://pypi.org/legacy/", "deny"),
        ("GET", "https://github.com/org/repo.git/info/refs", "allow"),
        ("GET", "https://github.com/org/repo/settings", "deny"),
        ("GET", "https://evil.example/", "deny"),
    ],
)
def test_agent_example_decisions(method, url, verdict, capsys):
    main(["policy", "explain", str(EXAMPLES / "agent.yaml"), method, url])
    assert capsys.readouterr().out.startswith(f"decision: {verdict}")
