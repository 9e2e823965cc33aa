"""The widgets in a real browser: JupyterLab 4 and Notebook 7 render TrafficMonitor and show its updates.

A real Jupyter server (the `jupyterlab` app, which also serves Notebook 7's /notebooks) with the OpenShell
kernel, headless Chromium driven by Selenium through chromedriver (Debian: `apt-get install chromium
chromium-driver`; nothing is downloaded). The notebook displays a TrafficMonitor, then its next cell makes
a request the policy denies: the row can only reach the page through a widget state update over the comm.
Skipped, with the reason, where Chromium, chromedriver or selenium is missing.
"""

from __future__ import annotations

import json
import urllib.request

import nbformat
import pytest
from browser import SKIP, chromium, jupyterlab

from jupyter_openshell.kernel.kernelspec import install

pytestmark = SKIP


@pytest.fixture
def server(tmp_path, workspace, state_dir):
    """A JupyterLab server on 127.0.0.1 with the 'openshell' kernelspec; yields (base url, token)."""
    prefix = tmp_path / "prefix"
    install(prefix=str(prefix), pool_size=0)
    env = {
        "JUPYTER_PATH": str(prefix / "share" / "jupyter"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "OPENSHELL_STATE_DIR": str(state_dir),
    }
    with jupyterlab(tmp_path, workspace, env) as url_token:
        yield url_token


@pytest.fixture
def browser():
    with chromium() as driver:
        yield driver


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


def _run_cells_and_read_monitor(driver, url: str, shot) -> tuple[str, str]:
    """Open `url`, run the first cell (the monitor), then the second (the denied request) with
    Shift+Enter; return (monitor text when first rendered, after the update)."""
    from selenium.common.exceptions import ElementNotInteractableException, TimeoutException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    def shift_enter():
        ActionChains(driver).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()

    driver.get(url)
    wait = WebDriverWait(driver, 90, poll_frequency=0.2)
    step = "the notebook's cells"
    try:
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, EDITORS)))
        step = "the kernel to be idle"
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, IDLE)))
        step = "the rendered TrafficMonitor"
        for attempt in range(5):  # a key pressed while the page still wires the kernel up can be lost
            try:
                wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, EDITORS))).click()
                shift_enter()
                first = WebDriverWait(driver, 45, 0.2).until(
                    ec.presence_of_element_located((By.XPATH, MONITOR))
                ).text
                break
            except (TimeoutException, ElementNotInteractableException):
                if attempt == 4:
                    raise TimeoutException() from None
        step = "the monitor's update"
        shift_enter()  # the focus moved on to the second cell: the denied request
        wait.until(lambda d: "/browser-check" in d.find_element(By.XPATH, MONITOR).text)
    except TimeoutException:
        driver.save_screenshot(str(shot))
        body = driver.find_element(By.TAG_NAME, "body").text
        raise AssertionError(f"waited in vain for {step} ({shot}); page text:\n{body[-3000:]}") from None
    return first, driver.find_element(By.XPATH, MONITOR).text


@pytest.mark.parametrize("frontend", ["lab/tree", "notebooks"], ids=["jupyterlab", "notebook7"])
def test_traffic_monitor_renders_and_updates_in_the_browser(
    server, browser, workspace, upstream, frontend, tmp_path
):
    base, token = server
    name = f"monitor-{frontend.split('/')[0]}.ipynb"
    _notebook(workspace / name, upstream.url)
    url = f"{base}/{frontend}/{name}?token={token}"
    first, later = _run_cells_and_read_monitor(browser, url, tmp_path / "page.png")
    assert "Traffic of sandbox kernel-" in first
    assert "/browser-check" in later and "deny" in later and "denied 1" in later, later
    # the kernel really is the sandboxed one, and it is shut down with the server (see the fixture)
    sessions = json.loads(urllib.request.urlopen(f"{base}/api/sessions?token={token}").read())
    assert [s["kernel"]["name"] for s in sessions] == ["openshell"]
