"""The libyaml fast path of the loader builds exactly ruamel's tree (values, types, positions),
and defers to ruamel whenever it is not sure."""

from __future__ import annotations

import pytest
from policy_seed import SEED

from jupyter_openshell.policy import _yamlfast
from jupyter_openshell.policy._parse import _yaml

pytestmark = pytest.mark.skipif(_yamlfast.yaml is None, reason="PyYAML is built without libyaml here")


def _tree(node, path="$"):
    """Values, types and every line/column ruamel records, flattened for comparison."""
    if isinstance(node, dict):
        out = [(path, "map", node.lc.line, node.lc.col)]
        for k, v in node.items():
            out.append((path, k, node.lc.key(k), node.lc.value(k)))
            out += _tree(v, f"{path}.{k}")
        return out
    if isinstance(node, list):
        out = [(path, "seq", node.lc.line, node.lc.col)]
        for i, v in enumerate(node):
            out.append((path, i, node.lc.item(i)))
            out += _tree(v, f"{path}[{i}]")
        return out
    return [
        (
            path,
            type(node)
            if isinstance(node, bool | type(None))
            else float
            if isinstance(node, float)
            else int
            if isinstance(node, int)
            else str,
            node,
        )
    ]


@pytest.mark.parametrize(
    "text",
    [
        SEED,
        "a: 1\nb: [1, -2, {c: d}]\ne:\n- x\n- y: 1\n  z: 2.5\nf: 'q'\ng: null\ni: true\nj: \"1\"\n",
        "network:\n  egress:\n  - host: a\n    action: allow\n",
        "x: {a: [1, 2], b: {}, c: []}\n# comment\ny: |\n  block\n",
        "resources: {cpu: 0.5, memory: 2Gi, timeout: 30}\ngpu: FALSE\nk: ~\n",
    ],
)
def test_libyaml_fast_path_builds_the_same_tree_as_ruamel(text):
    fast = _yamlfast.load(text)
    assert fast is not None
    assert _tree(fast[0]) == _tree(_yaml().load(text))


@pytest.mark.parametrize(
    "text",
    [
        "a: !!str 1\n",
        "a: &x 1\nb: *x\n",
        "a: {<<: {b: 1}}\n",
        "a: 1\na: 2\n",
        "a: 2024-01-01\n",
        "a: 0x10\n",
        "a: 1e3\n",
        "a: .inf\n",
        "a: 1_000\n",
        "a:\n",
        "a: [1\n",
        "[a]: 1\n",
    ],
)
def test_libyaml_fast_path_defers_to_ruamel_when_unsure(text):
    assert _yamlfast.load(text) is None
