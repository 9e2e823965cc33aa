"""`%policy allow` on the host (a real IPython shell, the real magics, a private state directory, no
proxy running): METHOD URL, URL alone (GET and HEAD), globs, `*`, presets, `%policy show` with the
presets expanded, and usage errors as one short message (a UsageError), never a traceback."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from jupyter_openshell.paths import STATE_ENV
from jupyter_openshell.policy import RequestInfo, load_policy_file

START = "# the sandbox's policy\nnetwork:\n  egress:\n    - action: deny  # nothing else\n"


@pytest.fixture
def shell(tmp_path, monkeypatch):
    monkeypatch.setenv(STATE_ENV, str(tmp_path))
    monkeypatch.delenv("OPENSHELL_KERNEL_BROKER", raising=False)
    (tmp_path / "policies").mkdir(mode=0o700)
    (tmp_path / "policies" / "box.yaml").write_text(START)
    ip = InteractiveShell.instance()
    ip.extension_manager.load_extension("jupyter_openshell")
    yield ip
    InteractiveShell.clear_instance()


def _decide(tmp_path, method: str, url: str):
    compiled = load_policy_file(tmp_path / "policies" / "box.yaml").compile()
    return compiled.decide(RequestInfo.from_url(method, url))


def test_allow_forms(shell, tmp_path, capsys):
    shell.run_line_magic("policy", "allow GET https://example.com/** box")
    assert _decide(tmp_path, "GET", "https://example.com/other").allowed
    assert not _decide(tmp_path, "HEAD", "https://example.com/other").allowed
    shell.run_line_magic("policy", "allow https://docs.example.com/api/** box")  # no method: GET, HEAD
    assert _decide(tmp_path, "HEAD", "https://docs.example.com/api/v1/x").allowed
    assert not _decide(tmp_path, "GET", "https://docs.example.com/other").allowed
    shell.run_line_magic("policy", "allow post https://api.example.com/v1/items box")
    assert _decide(tmp_path, "POST", "https://api.example.com/v1/items").allowed
    shell.run_line_magic("policy", "allow * http://any.example.com:8080/** box")
    assert _decide(tmp_path, "DELETE", "http://any.example.com:8080/x").allowed
    text = (tmp_path / "policies" / "box.yaml").read_text()
    assert text.startswith("# the sandbox's policy") and "# nothing else" in text
    assert text.rstrip().endswith("- action: deny  # nothing else")  # new rules went above the final deny
    assert "+    - host: example.com" in capsys.readouterr().out


def test_allow_a_preset_and_show_its_expansion(shell, tmp_path, capsys):
    shell.run_line_magic("policy", "allow pypi box")
    assert "+    - preset: pypi" in capsys.readouterr().out
    assert _decide(tmp_path, "GET", "https://pypi.org/simple/requests/").allowed
    assert _decide(tmp_path, "GET", "https://files.pythonhosted.org/packages/a/b/c.whl").allowed
    shell.run_line_magic("policy", "show box")
    out = capsys.readouterr().out
    assert "- preset: pypi" in out
    assert "# effective network.egress rules (presets expanded):" in out
    assert "# network.egress[0]: preset pypi" in out and 'host: "files.pythonhosted.org"' in out
    shell.run_line_magic("policy", "presets")
    assert "huggingface" in capsys.readouterr().out


def test_explain_offers_the_variants(shell, capsys):
    shell.run_line_magic("policy", "explain https://pypi.org/simple/x/ box")
    out = capsys.readouterr().out
    assert "decision: deny" in out and "allow_with: %policy allow GET https://pypi.org/simple/x/" in out
    assert "%policy allow https://pypi.org/simple/** (GET, HEAD on /simple/ and below)" in out


@pytest.mark.parametrize(
    "line, says",
    [
        ("allow", "not understood"),
        ("allow pipy box", "did you mean the preset 'pypi'?"),
        ("allow GET example.com/x box", "neither a URL nor a preset"),
        ("allow GET ftp://example.com/ box", "not an absolute http(s) URL"),
        ("allow GET 'https://exa mple.com/' box", "invalid host"),
        ("allow GET 'https://example.com/ box", "No closing quotation"),
        ("allow GET https://example.com/a**b box", "'**' must be a whole segment"),
        ("mode sometimes box", "mode must be one of"),
        ("show a b c", "not understood"),
        ("frobnicate", "not understood"),
    ],
)
def test_usage_errors_are_one_message_with_the_usage_line(shell, line, says):
    with pytest.raises(UsageError) as exc:
        shell.run_line_magic("policy", line)
    message = str(exc.value)
    assert says in message, message
    assert "Traceback" not in message
    if "not understood" in says or "URL nor" in says or "closing" in says:
        assert "usage: %policy" in message


def test_usage_errors_leave_the_policy_unchanged(shell, tmp_path):
    with pytest.raises(UsageError):
        shell.run_line_magic("policy", "allow GET https://example.com/a**b box")
    assert (tmp_path / "policies" / "box.yaml").read_text() == START
