"""`filesystem.workspace_writable` / `workspace_protected`: paths relative to the workspace, validated
with file:line errors; absent, they leave a policy's version as it was."""

from __future__ import annotations

import pytest

from jupyter_openshell.policy import PolicyError, json_schema, parse_policy

DENY = "network:\n  egress:\n    - action: deny\n"


def test_relative_names_are_parsed():
    policy = parse_policy(
        DENY
        + 'filesystem:\n  workspace_writable: [".git", Makefile]\n  workspace_protected: ["tools/run.sh"]\n'
    )
    assert policy.filesystem.workspace_writable == (".git", "Makefile")
    assert policy.filesystem.workspace_protected == ("tools/run.sh",)
    assert policy.version != parse_policy(DENY).version


def test_absent_names_keep_the_version_of_existing_policies():
    assert "workspace_writable" not in parse_policy(DENY).to_dict()["filesystem"]


@pytest.mark.parametrize("bad", ["/abs", "a/../b", "./x", "*.py", "a//b", ""])
def test_what_is_not_a_relative_name_is_an_error_with_its_line(bad):
    with pytest.raises(PolicyError) as info:
        parse_policy(DENY + f"filesystem:\n  workspace_writable:\n    - {bad!r}\n", source="p.yaml")
    assert "p.yaml:6:" in str(info.value) and "filesystem.workspace_writable[0]" in str(info.value)


def test_schema_knows_the_fields():
    props = json_schema()["properties"]["filesystem"]["properties"]
    assert {"workspace_writable", "workspace_protected"} <= set(props)
