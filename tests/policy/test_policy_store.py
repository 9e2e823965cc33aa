"""PolicyStore: validate-before-write (an invalid policy never lands), atomic 0600 writes,
history, rollback, diff, and names that cannot escape the policies directory."""

from __future__ import annotations

import os
import stat

import pytest
from policy_seed import SEED

from jupyter_openshell.policy import PolicyError, PolicyStore, parse_policy

TIGHT = SEED.replace('          methods: ["GET", "HEAD"]\n', '          methods: ["HEAD"]\n')

pytestmark = pytest.mark.usefixtures("yaml_loader")


@pytest.fixture
def store(tmp_path):
    return PolicyStore(tmp_path)


def test_put_get_and_file_layout(store, tmp_path):
    assert store.get("sb1") is None
    p = store.put("sb1", SEED)
    assert p.version == parse_policy(SEED).version
    current = tmp_path / "policies" / "sb1.yaml"
    assert current.read_text() == SEED
    assert stat.S_IMODE(current.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "policies").stat().st_mode) == 0o700
    (entry,) = store.history("sb1")
    assert entry.path.parent == tmp_path / "policies" / "sb1.history"
    assert entry.path.name == f"{entry.ts_ms}-{p.version}.yaml" and entry.text() == SEED
    assert stat.S_IMODE(entry.path.stat().st_mode) == 0o600
    assert store.get("sb1").version == p.version
    assert store.names() == ["sb1"]
    assert not [f for f in os.listdir(tmp_path / "policies") if f.endswith(".tmp")]


def test_invalid_policy_never_lands(store, tmp_path):
    store.put("sb1", SEED)
    before = sorted(os.listdir(tmp_path / "policies" / "sb1.history"))
    with pytest.raises(PolicyError) as info:
        store.put("sb1", SEED.replace("action: allow", "action: alow"))
    assert "sb1.yaml" in str(info.value)
    assert store.text("sb1") == SEED
    assert sorted(os.listdir(tmp_path / "policies" / "sb1.history")) == before
    with pytest.raises(PolicyError):
        store.put("new", "network: [")
    assert not (tmp_path / "policies" / "new.yaml").exists()
    assert store.history("new") == []


def test_write_is_atomic_rename(store, tmp_path, monkeypatch):
    store.put("sb1", SEED)
    current = tmp_path / "policies" / "sb1.yaml"
    inode = current.stat().st_ino
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(dst).endswith("sb1.yaml"):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        store.put("sb1", TIGHT)
    assert current.read_text() == SEED  # old file untouched, no partial write
    assert not [f for f in os.listdir(tmp_path / "policies") if f.endswith(".tmp")]
    monkeypatch.undo()
    store.put("sb1", TIGHT)
    assert current.read_text() == TIGHT and current.stat().st_ino != inode  # replaced, not rewritten in place


def test_history_rollback_and_diff(store):
    v1 = store.put("sb1", SEED).version
    v2 = store.put("sb1", TIGHT).version
    assert v1 != v2
    assert [e.version for e in store.history("sb1")] == [v1, v2]
    store.put("sb1", TIGHT)  # same text: no new history entry
    assert len(store.history("sb1")) == 2
    diff = store.diff("sb1", v1, v2)
    assert diff.startswith(f"--- sb1@{v1}\n+++ sb1@{v2}\n")
    assert '-          methods: ["GET", "HEAD"]' in diff and '+          methods: ["HEAD"]' in diff
    assert store.diff("sb1", v2) == ""  # v2 is current
    back = store.rollback("sb1", v1[:6])
    assert back.version == v1 and store.text("sb1") == SEED
    assert [e.version for e in store.history("sb1")] == [v1, v2, v1]
    with pytest.raises(LookupError):
        store.rollback("sb1", "deadbeef0000")


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".hidden", "x.history", "a\x00", "-rf"])
def test_names_cannot_escape(store, name):
    with pytest.raises(ValueError):
        store.put(name, SEED)


def test_default_state_dir_comes_from_the_environment(state_dir):
    store = PolicyStore()
    assert store.root == state_dir / "policies"
