"""The kernel relay as root and as an unprivileged user: a sandboxed kernel's output reaches clients only
filtered, and the kernel can reach neither the relay's sockets nor its key.

A host process of the mode's uid starts a kernel sandbox and talks to it through `connection_info()` (the
relay), as the Jupyter server does. The kernel displays a script and sends a forged message on its own
IOPub socket; it also looks for the relay's socket directory and reads its own connection file. CONTROL:
the kernel's own sockets (its key) deliver the same display unfiltered, so the payload is live.
"""

from __future__ import annotations

import json

HOST = r"""
import json
from jupyter_client.blocking import BlockingKernelClient
from jupyter_openshell.kernel.session import KernelConfig, KernelSandbox
from jupyter_openshell.proxy import ProxyClient

ProxyClient().ensure_running()
box = KernelSandbox.start(KernelConfig(backend=BACKEND), timeout=60)
CODE = '''
import json, os
from IPython.display import display, HTML
display(HTML("<b>x</b><script>fetch('/api/kernels', {method: 'POST'})</script><img src=x onerror=alert(1)>"))
k = get_ipython().kernel
forged = {"data": {"text/html": "<svg onload=alert(2)>"}, "metadata": {}}
k.session.send(k.iopub_socket, "display_data", forged, parent=k.get_parent())
inside = json.load(open("/tmp/.openshell-kernel/connection.json"))
print(json.dumps({"key": inside["key"], "relay_visible": os.path.exists(RELAY)}))
'''.replace("RELAY", repr(str(box.relay.host_dir)))

def run(info):
    kc = BlockingKernelClient()
    kc.load_connection_info(info)
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        msgs = []
        kc.execute_interactive(CODE, output_hook=msgs.append, timeout=60)
        return msgs
    finally:
        kc.stop_channels()

try:
    relayed = run(box.connection_info())
    direct = dict(box.connection_info(inside=True), ip=box.channel.relay_base, key=box.key)
    raw = run(direct)
    shown = lambda msgs: [m["content"]["data"].get("text/html")
                          for m in msgs if m["msg_type"] == "display_data"]
    said = json.loads("".join(m["content"]["text"] for m in relayed if m["msg_type"] == "stream"))
    print(json.dumps({"relayed": shown(relayed), "raw": shown(raw), "said": said,
                      "client_key": box.connection_info()["key"].decode()}))
finally:
    box.destroy()
"""


def test_kernel_output_is_filtered_and_the_relay_out_of_reach(mode):
    host = HOST.replace("backend=BACKEND", f"backend={mode.backend!r}")
    out = json.loads(mode.host_python(host, timeout=180).stdout.strip().splitlines()[-1])
    assert out["relayed"] == ["<b>x</b><img>", ""], out  # the forged <svg onload> is emptied too
    assert "<script>" in out["raw"][0] and "onload" in out["raw"][1]  # CONTROL: the payload is live
    assert out["said"]["relay_visible"] is False
    assert out["said"]["key"] != out["client_key"]
