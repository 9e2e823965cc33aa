"""Sandboxed output in a real browser: nothing a sandboxed kernel displays acts with the user's authority.

JupyterLab 4 (the real server, with the openshell extension) and headless Chromium. One notebook per kernel
kind holds every payload kind: application/javascript, text/html with <script>, <img onerror>,
<iframe srcdoc>, inline <svg onload> (with <animate onbegin>, which fires from innerHTML), raw HTML inside
text/markdown, an ipywidgets.HTML value and an ipywidgets.Output capturing such a display. Each payload, if
it ran, would (a) start a kernel through POST /api/kernels with the page's _xsrf cookie (a 'probe'
kernelspec that logs its start: code on the host), (b) write a marker file through the contents API,
(c) PUT a policy change on a REST sandbox, and set a flag in the page. From the OpenShell kernel and from
%%sandbox in a plain kernel: no flag, no kernel, no file, no policy change; the notebook the browser saves
(and the server signs) holds no active content, and reopening it runs nothing. CONTROL: the same notebook
on a plain Python kernel (no sandbox, no filter) sets every flag and causes every effect, so the test can
see a failure. Screenshots are left in the test's tmp_path.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from inert import violations

from jupyter_openshell.kernel.kernelspec import install
from jupyter_openshell.testing.browser import chrome, lab_server, missing_browser

pytestmark = pytest.mark.skipif(bool(missing_browser()), reason=missing_browser() or "browser present")

TAGS = ["js", "script", "img", "iframe", "svg", "md", "whtml", "wout"]
SHOWN = {"script", "img", "iframe", "svg", "md", "whtml", "wout"}  # payloads that also show their tag
WIDGET_TAGS = {"whtml", "wout"}

SETUP = r"""
import base64, json
from IPython.display import display, HTML, Javascript, Markdown
import ipywidgets as widgets
KIND, TARGET = {kind!r}, {target!r}
POLICY = "network:\n  egress:\n    - host: pwned.example\n      action: allow\n"

def attack(tag):
    tag = KIND + "-" + tag
    js = ("(function(){{var w=window.top;w.__pwned=w.__pwned||{{}};if(w.__pwned[%(t)s])return;"
          "w.__pwned[%(t)s]=1;"
          "var m=document.cookie.match(/(?:^|; )_xsrf=([^;]*)/);"
          "var h={{'X-XSRFToken':m?decodeURIComponent(m[1]):'','Content-Type':'application/json'}};"
          "fetch('/api/kernels',{{method:'POST',headers:h,body:JSON.stringify({{name:'probe'}})}});"
          "fetch('/api/contents/pwned-'+%(t)s+'.txt',{{method:'PUT',headers:h,"
          "body:JSON.stringify({{type:'file',format:'text',content:%(t)s}})}});"
          "fetch('/openshell/api/policies/'+%(target)s,{{method:'PUT',headers:h,"
          "body:JSON.stringify({{yaml:'# '+%(t)s+'\\n'+%(policy)s}})}});}})()"
          ) % {{"t": json.dumps(tag), "target": json.dumps(TARGET), "policy": json.dumps(POLICY)}}
    return "eval(atob('%s'))" % base64.b64encode(js.encode()).decode()

def seen(tag):
    return "<b>payload %s-%s</b>" % (KIND, tag)
"""
PAYLOADS = [
    'display(Javascript(attack("js")))',
    'display(HTML(seen("script") + "<script>" + attack("script") + "</script>"))',
    """display(HTML(seen("img") + '<img src="x" onerror="%s">' % attack("img")))""",
    """display(HTML(seen("iframe") + '<iframe srcdoc="<script>%s</script>"></iframe>' % attack("iframe")))""",
    """display(HTML(seen("svg") + '<svg width="10" height="10" onload="%s"><animate attributeName="x" '"""
    """'dur="1s" onbegin="%s"/></svg>' % (attack("svg"), attack("svg"))))""",
    """display(Markdown("**payload %s-md**\\n\\n<img src='x' onerror=\\"%s\\">" % (KIND, attack("md"))))""",
    """widgets.HTML(value=seen("whtml") + '<img src="x" onerror="%s">' % attack("whtml"))""",
    "out = widgets.Output()\nwith out:\n"
    """    display(HTML(seen("wout") + '<img src="x" onerror="%s">' % attack("wout")))\nout""",
]


def _notebook(path: Path, kernel: str, kind: str, target: str, sandbox: str | None) -> None:
    nb = nbformat.v4.new_notebook()
    names = {"openshell": "OpenShell", "python3": "Python 3 (ipykernel)"}
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": names[kernel], "language": "python"}
    cells = [SETUP.format(kind=kind, target=target), *PAYLOADS, f"print('ALL-DONE-' + {kind!r})"]
    if sandbox:
        cells = [f"%%sandbox {sandbox}\n{c.strip()}" for c in cells]
        cells.insert(0, "%load_ext jupyter_openshell")
    nb.cells = [nbformat.v4.new_code_cell(c.strip()) for c in cells]
    nbformat.write(nb, path)


def _probe_kernelspec(prefix: Path, log: Path) -> None:
    """A kernelspec whose start is a host-side effect anyone can count: it appends a line to `log`."""
    spec = prefix / "share" / "jupyter" / "kernels" / "probe"
    spec.mkdir(parents=True)
    code = "import sys, time; open(sys.argv[1], 'a').write('started\\n'); time.sleep(600)"
    argv = [sys.executable, "-c", code, str(log), "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "probe", "language": "python"})
    )


class Api:
    def __init__(self, base: str, token: str):
        self.base, self.token = base, token

    def __call__(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.base}/{path}", data=data, method=method)
        req.add_header("Authorization", f"token {self.token}")
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else {}


@pytest.fixture
def lab(tmp_path, workspace, state_dir):
    """JupyterLab (a `LabServer`, its app exposed to the page's scripts) and the probe kernel's log."""
    prefix = tmp_path / "prefix"
    install(prefix=str(prefix), pool_size=0)
    probe_log = tmp_path / "probe.log"
    _probe_kernelspec(prefix, probe_log)
    expose = ("--LabApp.expose_app_in_browser=True",)
    with lab_server(tmp_path, workspace, state_dir, prefix / "share" / "jupyter", expose) as server:
        yield server, probe_log


KERNEL_READY = """
const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
return !!(w && w.context && w.context.path === arguments[0] && k && k.connectionStatus === 'connected'
          && k.status === 'idle');
"""


def _open_and_run(driver, server, page: str, kind: str, shot: Path, widgets_shown: bool,
                  rerun: bool = True) -> None:
    """Open the notebook, run all cells, wait until its last cell printed and the payloads rendered.
    JupyterLab can lose its kernel connection while a kernel starts under load (cells stay [*]): with
    `rerun` (running the cells twice is harmless), the page is then reloaded and the cells run again."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(server.page(page))
    path = page.split("lab/tree/")[1].split("?")[0]
    wait = WebDriverWait(driver, 120, poll_frequency=0.3)
    done = f"ALL-DONE-{kind}"

    def run_all(seconds: float) -> None:
        wait.until(lambda d: d.execute_script(KERNEL_READY, path))
        driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        WebDriverWait(driver, seconds, 0.3).until(
            lambda d: done in d.execute_script("return document.body.innerText")
        )

    step = "the cells to run"
    try:
        try:
            run_all(60 if rerun else 120)
        except TimeoutException:
            if not rerun:
                raise
            print(f"{path}: the cells did not run in 60 s, reloading the page\n{server.report(10)}")
            driver.refresh()
            run_all(120)
        step = "the payloads to render"
        expected = [f"payload {kind}-{t}" for t in SHOWN if widgets_shown or t not in WIDGET_TAGS]
        wait.until(lambda d: all(e in d.execute_script("return document.body.innerText") for e in expected))
        time.sleep(1.5)  # script, onerror and onload fire at once; widget views render within ms
    except TimeoutException:
        driver.save_screenshot(str(shot))
        body = driver.execute_script("return document.body.innerText")
        raise AssertionError(
            f"waited in vain for {step} ({shot}); page text:\n{body[-3000:]}\n{server.report()}"
        ) from None
    driver.save_screenshot(str(shot))


def _flags(driver) -> dict:
    return driver.execute_script("return window.__pwned || {}")


def _effects(workspace: Path, probe_log: Path, api: Api, target: str, kind: str) -> dict:
    history = api("GET", f"openshell/api/policies/{target}/history")["history"]
    return {
        "files": sorted(p.name for p in workspace.glob(f"pwned-{kind}-*.txt")),
        "kernels": probe_log.read_text().count("started") if probe_log.exists() else 0,
        "policy_versions": len(history),
    }


SAVED_TYPES = {"text/plain", "text/html", "application/vnd.jupyter.widget-view+json"}


def test_sandboxed_output_cannot_act_in_the_browser(lab, workspace, tmp_path):
    server, probe_log = lab
    api = Api(server.url, server.token)
    target = f"target-{secrets.token_hex(3)}"
    sbx = f"sbx-{secrets.token_hex(3)}"
    api("POST", "openshell/api/sandboxes", {"name": target})
    try:
        start = _effects(workspace, probe_log, api, target, "")
        _notebook(workspace / "os.ipynb", "openshell", "os", target, None)
        _notebook(workspace / "sbx.ipynb", "python3", "sbx", target, sbx)
        _notebook(workspace / "ctl.ipynb", "python3", "ctl", target, None)
        with chrome() as driver:
            # the OpenShell kernel: every payload renders its text, none runs
            _open_and_run(driver, server, "lab/tree/os.ipynb?reset", "os", tmp_path / "os.png", True)
            assert _flags(driver) == {}
            saved = workspace / "os.ipynb"
            before = saved.stat().st_mtime_ns
            driver.execute_script("window.jupyterapp.commands.execute('docmanager:save')")
            for _ in range(300):
                if saved.stat().st_mtime_ns != before and "ALL-DONE-os" in saved.read_text():
                    break
                time.sleep(0.1)
            nb = nbformat.read(saved, as_version=4)
            bundles = [o.get("data", {}) for c in nb.cells for o in c.get("outputs", [])]
            assert "payload os-img" in json.dumps(bundles)  # the outputs were saved ...
            for bundle in bundles:  # ... without active content (text/plain is shown as text)
                assert set(bundle) <= SAVED_TYPES, bundle
                assert violations(bundle.get("text/html", "")) == [], bundle
            from nbformat.sign import NotebookNotary

            notary = NotebookNotary(data_dir=str(tmp_path / "data"))
            if not notary.check_signature(nb):
                # The lab extension saves OpenShell notebooks untrusted, so the server did not sign it;
                # sign it as a server without the extension would: the worst case, a trusted notebook.
                notary.sign(nb)
                nbformat.write(nb, saved)
            assert notary.check_signature(nbformat.read(saved, as_version=4))

            # reopening the signed notebook runs nothing either (widgets come back from the kernel)
            driver.get("about:blank")
            driver.get(server.page("lab/tree/os.ipynb?reset"))
            from selenium.webdriver.support.ui import WebDriverWait

            WebDriverWait(driver, 120, 0.3).until(
                lambda d: "payload os-img" in d.execute_script("return document.body.innerText")
            )
            time.sleep(2)
            driver.save_screenshot(str(tmp_path / "os-reopened.png"))
            assert _flags(driver) == {}

            # %%sandbox in a plain kernel: what it relays is filtered too
            _open_and_run(driver, server, "lab/tree/sbx.ipynb?reset", "sbx", tmp_path / "sbx.png", False)
            assert _flags(driver) == {}

            # CONTROL: the same payloads from a plain Python kernel run, and act
            driver.get("about:blank")
            _open_and_run(  # (not run twice: its effects are counted)
                driver, server, "lab/tree/ctl.ipynb?reset", "ctl", tmp_path / "ctl.png", True, rerun=False
            )
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                effects = _effects(workspace, probe_log, api, target, "ctl")
                if len(effects["files"]) == len(TAGS) and effects["kernels"] - start["kernels"] == len(TAGS):
                    break
                time.sleep(0.5)
            assert sorted(_flags(driver)) == sorted(f"ctl-{t}" for t in TAGS)
        assert effects["files"] == sorted(f"pwned-ctl-{t}.txt" for t in TAGS), effects
        assert effects["kernels"] - start["kernels"] == len(TAGS), effects
        assert effects["policy_versions"] - start["policy_versions"] == len(TAGS), effects
        # ... while nothing the sandboxed kernels showed had any effect (checked after the control's
        # effects arrived: theirs would have been sent earlier)
        for kind in ("os", "sbx"):
            assert _effects(workspace, probe_log, api, target, kind)["files"] == []
        text = api("GET", f"openshell/api/policies/{target}")["yaml"]
        assert "# ctl-" in text and "# os-" not in text and "# sbx-" not in text
    finally:
        api("DELETE", f"openshell/api/sandboxes/{target}")
