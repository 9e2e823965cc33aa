"""`openshell policy check | explain | schema | suggest`."""

from __future__ import annotations

import json
import subprocess
import sys

from policy_seed import SEED

from jupyter_openshell.cli import main


def test_check_ok_prints_version_and_warnings(tmp_path, capsys):
    f = tmp_path / "p.yaml"
    f.write_text(
        SEED.replace(
            "    - action: deny\n", "    - action: deny\n    - host: late.example\n      action: allow\n"
        )
    )
    assert main(["policy", "check", str(f)]) == 0
    out, err = capsys.readouterr()
    assert "OK (version" in out and "3 egress rules" in out
    assert "warning: network.egress[2]" in err and "unreachable" in err


def test_check_errors_exit_1_with_the_report(tmp_path, capsys):
    f = tmp_path / "bad.yaml"
    f.write_text(SEED.replace('methods: ["GET"]', 'methods: ["GTE", "get"]'))
    assert main(["policy", "check", str(f)]) == 1
    _, err = capsys.readouterr()
    assert f"{f}:6:28: error: network.egress[0].paths[0].methods[1]" in err
    assert "did you mean 'GET'" in err and "example:" in err
    assert main(["policy", "check", str(tmp_path / "missing.yaml")]) == 1
    assert "cannot read policy" in capsys.readouterr().err


def test_explain(tmp_path, capsys):
    f = tmp_path / "p.yaml"
    f.write_text(SEED)
    assert main(["policy", "explain", str(f), "GET", "https://API.example.com./v1/users/%31"]) == 0
    out = capsys.readouterr().out
    assert "decision: allow" in out and "GET https://api.example.com:443/v1/users/1" in out
    assert "network.egress[0]" in out
    assert main(["policy", "explain", str(f), "POST", "https://api.example.com/v1/users/1"]) == 0
    out = capsys.readouterr().out
    assert "decision: deny (403)" in out and "network.egress[1]" in out and "hint:" in out
    assert "or wider: POST on any path of api.example.com: %policy allow POST https://api.example.com/**" \
        in out
    assert (
        main(
            [
                "policy",
                "explain",
                str(f),
                "GET",
                "https://api.example.com/v1/users/1",
                "-H",
                "X-HTTP-Method-Override: DELETE",
            ]
        )
        == 0
    )
    assert "method override to DELETE" in capsys.readouterr().out
    assert main(["policy", "explain", str(f), "GET", "https://api.example.com/a%5cb"]) == 0
    assert "decision: deny (400)" in capsys.readouterr().out
    assert main(["policy", "explain", "--json", str(f), "GET", "http://inference.local/v1/models"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["route"].startswith("inference.routes[0]") and out["action"] == "deny"


def test_presets(capsys):
    assert main(["policy", "presets"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("pypi ")
    assert main(["policy", "presets", "npm"]) == 0
    assert 'host: "registry.npmjs.org"' in capsys.readouterr().out
    assert main(["policy", "presets", "pipy"]) == 1
    assert "unknown preset 'pipy'" in capsys.readouterr().err


def test_schema_and_suggest(tmp_path, capsys):
    assert main(["policy", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "jupyter-openshell policy"
    log = tmp_path / "flows.jsonl"
    log.write_text(
        json.dumps({"method": "GET", "scheme": "https", "host": "h.example", "port": 443, "path": "/v1/x/12"})
        + "\nnot json\n"
    )
    assert main(["policy", "suggest", str(log)]) == 0
    out, err = capsys.readouterr()
    assert "path: /v1/x/*" in out and "flows.jsonl:2: skipped" in err


def test_console_entry_point_runs(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(SEED)
    r = subprocess.run(
        [sys.executable, "-m", "jupyter_openshell", "policy", "check", str(f)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter_openshell",
            "policy",
            "explain",
            str(f),
            "POST",
            "https://api.example.com/v1/users/1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and "deny" in r.stdout
