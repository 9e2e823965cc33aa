"""The widgets in a real browser: JupyterLab 4 and Notebook 7 render TrafficMonitor and show its updates.

A real Jupyter server (the `jupyterlab` app, which also serves Notebook 7's /notebooks) with the OpenShell
kernel, headless Chromium driven by Selenium through chromedriver (Debian: `apt-get install chromium
chromium-driver`; nothing is downloaded). The notebook displays a TrafficMonitor, then its next cell makes
a request the policy denies: the row can only reach the page through a widget state update over the comm.
Skipped, with the reason, where Chromium, chromedriver or selenium is missing.
"""

from __future__ import annotations

import json
import re
import urllib.request

import nbformat
import pytest

from jupyter_openshell.kernel.kernelspec import install
from jupyter_openshell.testing.browser import chrome, lab_server, missing_browser

pytestmark = pytest.mark.skipif(bool(missing_browser()), reason=missing_browser() or "browser present")


@pytest.fixture
def server(tmp_path, workspace, state_dir):
    """A JupyterLab server on 127.0.0.1 with the 'openshell' kernelspec (a `LabServer`)."""
    prefix = tmp_path / "prefix"
    install(prefix=str(prefix), pool_size=0)
    with lab_server(tmp_path, workspace, state_dir, prefix / "share" / "jupyter") as lab:
        yield lab


@pytest.fixture
def browser():
    with chrome() as driver:
        yield driver


# A cell run whose key press the page lost is retried after ATTEMPT_S (a run that works answers in a few
# seconds; running the cell again is harmless). Halfway, the page is reloaded: JupyterLab can lose its
# kernel connection while a kernel starts under load (cells stay [*]); a reload connects it anew.
ATTEMPTS, ATTEMPT_S = 8, 12


def _shift_enter(driver) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    ActionChains(driver).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()


def _wait_ready(wait) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, EDITORS)))
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, IDLE)))


def _run_first_cell_until(driver, wait, xpath: str):
    """Run the first cell (Shift+Enter) until the element at `xpath` shows; returns it. A key pressed
    while the page still wires the kernel up is lost: the cell is run again every ATTEMPT_S."""
    from selenium.common.exceptions import (
        ElementNotInteractableException,
        StaleElementReferenceException,
        TimeoutException,
    )
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    for attempt in range(ATTEMPTS):
        try:
            if attempt == ATTEMPTS // 2:
                print(f"no answer after {attempt} runs of the first cell: reloading the page")
                driver.refresh()
                _wait_ready(wait)
            wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, EDITORS))).click()
            _shift_enter(driver)
            shown = ec.presence_of_element_located((By.XPATH, xpath))
            return WebDriverWait(driver, ATTEMPT_S, 0.2).until(shown)
        except (TimeoutException, ElementNotInteractableException, StaleElementReferenceException):
            if attempt == ATTEMPTS - 1:
                raise TimeoutException() from None
    raise AssertionError("unreachable")


def _notebook(path, upstream_url: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "openshell", "display_name": "OpenShell", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from jupyter_openshell.widgets import TrafficMonitor\n"
            "monitor = TrafficMonitor(interval=0.3)\nmonitor"
        ),
        nbformat.v4.new_code_cell(
            "import urllib.request\n"
            f"try:\n    urllib.request.urlopen({upstream_url + '/browser-check'!r}, timeout=10)\n"
            "except Exception as e:\n    print('refused:', e)"
        ),
    ]
    nbformat.write(nb, path)


IDLE = ".jp-Notebook-ExecutionIndicator[data-status='idle']"
EDITORS = ".jp-Notebook .jp-Cell .jp-InputArea-editor"
MONITOR = "//div[contains(@class,'widget-vbox')][.//b[starts-with(., 'Traffic of sandbox')]]"


def _run_cells_and_read_monitor(driver, server, url: str, shot) -> tuple[str, str]:
    """Open `url`, run the first cell (the monitor), then the second (the denied request) with
    Shift+Enter; return (monitor text when first rendered, after the update)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, 90, poll_frequency=0.2)
    step = "the notebook's cells"
    try:
        step = "the notebook's cells and the kernel to be idle"
        _wait_ready(wait)
        step = "the rendered TrafficMonitor"
        first = _run_first_cell_until(driver, wait, MONITOR).text
        step = "the monitor's update"
        _shift_enter(driver)  # the focus moved on to the second cell: the denied request
        wait.until(lambda d: "/browser-check" in d.find_element(By.XPATH, MONITOR).text)
    except TimeoutException:
        driver.save_screenshot(str(shot))
        body = driver.find_element(By.TAG_NAME, "body").text
        raise AssertionError(
            f"waited in vain for {step} ({shot}); page text:\n{body[-3000:]}\n{server.report()}"
        ) from None
    return first, driver.find_element(By.XPATH, MONITOR).text


@pytest.mark.parametrize("frontend", ["lab/tree", "notebooks"], ids=["jupyterlab", "notebook7"])
def test_traffic_monitor_renders_and_updates_in_the_browser(
    server, browser, workspace, upstream, frontend, tmp_path
):
    name = f"monitor-{frontend.split('/')[0]}.ipynb"
    _notebook(workspace / name, upstream.url)
    first, later = _run_cells_and_read_monitor(
        browser, server, server.page(f"{frontend}/{name}"), tmp_path / "page.png"
    )
    assert "Traffic of sandbox kernel-" in first
    assert "/browser-check" in later and "deny" in later and "denied 1" in later, later
    # the kernel really is the sandboxed one, and it is shut down with the server (see the fixture)
    sessions = json.loads(urllib.request.urlopen(server.page("api/sessions")).read())
    assert [s["kernel"]["name"] for s in sessions] == ["openshell"]


def _denial_notebook(path, upstream_url: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "openshell", "display_name": "OpenShell", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(
            f"import urllib.request\nurllib.request.urlopen({upstream_url + '/browser-denied'!r}, timeout=10)"
        ),
        nbformat.v4.new_code_cell("from jupyter_openshell.widgets import PolicyPanel\nPolicyPanel()"),
    ]
    nbformat.write(nb, path)


NOTICE = "//div[contains(@class,'jp-OutputArea-output')][.//b[.='OpenShell denied']]"
TRACEBACK = "//div[contains(@class,'jp-OutputArea-output')][contains(., 'HTTPError')]"
PANEL = "//div[contains(@class,'widget-vbox')][.//b[starts-with(., 'Policy of sandbox')]]"


def _button(driver, label: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.XPATH, f"{PANEL}//button[normalize-space(.)='{label}']")


def test_denial_notice_and_read_only_policy_panel_in_the_browser(
    server, browser, workspace, upstream, tmp_path
):
    """In JupyterLab, in the OpenShell kernel (no policy_edits): the denial notice comes before the
    (shortened) traceback and names the host-side command; PolicyPanel shows why it is read-only, its
    Apply and Rollback buttons disabled. Screenshots of both are kept (paths printed)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    name = "denials.ipynb"
    _denial_notebook(workspace / name, upstream.url)
    shots = {"notice": tmp_path / "denial-notice.png", "panel": tmp_path / "policy-panel-read-only.png"}

    browser.get(server.page(f"lab/tree/{name}"))
    wait = WebDriverWait(browser, 90, poll_frequency=0.2)
    try:
        step = "the notebook's cells and the kernel to be idle"
        _wait_ready(wait)
        step = "the denial notice"
        notice = _run_first_cell_until(browser, wait, NOTICE)
        traceback = wait.until(ec.presence_of_element_located((By.XPATH, TRACEBACK)))
        browser.execute_script("arguments[0].scrollIntoView()", notice)
        browser.save_screenshot(str(shots["notice"]))
        step = "the PolicyPanel"
        browser.find_elements(By.CSS_SELECTOR, EDITORS)[1].click()
        _shift_enter(browser)
        wait.until(ec.presence_of_element_located((By.XPATH, f"{PANEL}//button[normalize-space(.)='Apply']")))
        panel = browser.find_element(By.XPATH, PANEL)
        browser.execute_script("arguments[0].scrollIntoView()", panel)
        browser.save_screenshot(str(shots["panel"]))
    except TimeoutException:
        browser.save_screenshot(str(tmp_path / "page.png"))
        body = browser.find_element(By.TAG_NAME, "body").text
        shot = tmp_path / "page.png"
        raise AssertionError(
            f"waited in vain for {step} ({shot}); page:\n{body[-3000:]}\n{server.report()}"
        ) from None
    for label, path in shots.items():
        print(f"screenshot of the {label}: {path}")
    assert all(path.stat().st_size > 10_000 for path in shots.values())

    said = notice.text
    assert f"GET {upstream.url}/browser-denied" in said and "cannot change its own policy" in said, said
    assert "openshell sandbox allow kernel-" in said and "to allow it, run: %policy" not in said, said
    following = browser.execute_script(
        "return !!(arguments[0].compareDocumentPosition(arguments[1]) & Node.DOCUMENT_POSITION_FOLLOWING)",
        notice, traceback)
    assert following, "the notice comes before the traceback"
    assert "use %tb to see the full traceback" in browser.find_element(By.CSS_SELECTOR, ".jp-Notebook").text

    text = panel.text
    assert "Read-only here" in text and "openshell sandbox policy kernel-" in text, text
    assert not _button(browser, "Apply").is_enabled() and not _button(browser, "Rollback").is_enabled()
    assert _button(browser, "Validate").is_enabled()
    assert "on the host: openshell sandbox allow kernel-" in text  # the recent denial, and what works
    selected = browser.execute_script(
        "return arguments[0].querySelector('select').selectedOptions[0].text", panel)
    # visible and labelled (the browser shows the label's spaces as no-break spaces)
    assert re.match(r"v1\s·\s[0-9a-f]{4}…\s·\s\d\d:\d\d\s·\scurrent$", selected), selected
