"""The kernel relay: clients only ever get what the kernel sent through the filter, under a key the kernel
never has.

First against a stand-in kernel (real ZMQ sockets signing with the kernel's key, as a compromised kernel
could) so that forged and malformed traffic can be sent; then against the real sandboxed kernel through the
provisioner: its channel holds only the kernel's key, the relay's sockets are out of its reach, and what
it displays reaches the client filtered. CONTROL: with `trusted_output` the same messages arrive as sent.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import time
from pathlib import Path

import pytest
import zmq
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.session import Session

from jupyter_openshell.kernel import pool
from jupyter_openshell.kernel.kernelspec import install
from jupyter_openshell.kernel.relay import Relay
from jupyter_openshell.outputs.bundle import OutputOptions

SCRIPT = "<b>shown</b><script>fetch('/api/kernels',{method:'POST'})</script><img src=x onerror=alert(1)>"


class FakeKernel:
    """The five sockets of a kernel, bound where a sandboxed kernel binds them, signing with `key`."""

    def __init__(self, base: str, key: bytes):
        self.ctx = zmq.Context()
        self.session = Session(key=key)
        kinds = {"shell": zmq.ROUTER, "iopub": zmq.XPUB, "stdin": zmq.ROUTER, "control": zmq.ROUTER}
        ports = {"shell": 1, "iopub": 2, "stdin": 3, "control": 4, "hb": 5}
        self.socks = {}
        for name, kind in {**kinds, "hb": zmq.ROUTER}.items():
            sock = self.ctx.socket(kind)
            sock.linger = 0
            sock.bind(f"ipc://{base}-{ports[name]}")
            self.socks[name] = sock

    def subscribed(self, timeout: float = 10) -> None:
        assert self.socks["iopub"].poll(timeout * 1000), "the relay never subscribed to IOPub"
        self.socks["iopub"].recv()

    def publish(self, msg_type: str, content: dict, key: bytes | None = None) -> None:
        session = self.session if key is None else Session(key=key)
        session.send(self.socks["iopub"], msg_type, content, ident=b"kernel.x." + msg_type.encode())

    def close(self) -> None:
        self.ctx.destroy(linger=0)


@pytest.fixture
def relay_and_kernel(tmp_path):
    home = Path(os.path.realpath(tmp_path)) / "k"
    home.mkdir()
    chan = home / "chan"
    chan.mkdir()
    key = secrets.token_hex(32).encode()
    kernel = FakeKernel(str(chan / "k"), key)
    relay = Relay(str(chan / "k"), home / "host", key)
    relay.start()
    client = BlockingKernelClient()
    client.load_connection_info(relay.connection_info())
    client.start_channels()
    try:
        kernel.subscribed()
        yield relay, kernel, client
    finally:
        client.stop_channels()
        relay.close()
        kernel.close()


def _iopub(client, kernel, until: str, timeout: float = 10) -> list[dict]:
    """IOPub messages the client gets, up to the first of type `until` (republished until it comes,
    since a SUB socket only hears what is sent after its subscription arrived)."""
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = client.get_iopub_msg(timeout=0.2)
        except Exception:
            kernel.publish("status", {"execution_state": "idle"})
            continue
        got.append(msg)
        if msg["msg_type"] == until:
            return got
    raise AssertionError(f"no {until} message; got {[m['msg_type'] for m in got]}")


def test_relay_filters_kernel_traffic_and_re_signs_with_a_key_the_kernel_lacks(relay_and_kernel):
    relay, kernel, client = relay_and_kernel
    info = relay.connection_info()
    assert info["key"] != kernel.session.key and info["ip"].startswith(str(relay.host_dir))
    assert stat.S_IMODE(relay.host_dir.stat().st_mode) == 0o700
    _iopub(client, kernel, "status")  # both subscriptions are up

    kernel.publish(
        "display_data", {"data": {"text/html": SCRIPT, "application/javascript": "x"}, "metadata": {}}
    )
    kernel.publish("display_data", {"data": {"text/html": SCRIPT}}, key=b"guessed-key")  # forged: dropped
    kernel.publish("display_data", {"data": {"text/html": SCRIPT}}, key=info["key"][:10])  # dropped
    kernel.publish("debug_event", {"body": {"data": {"text/html": SCRIPT}}})  # no builder: dropped
    kernel.socks["iopub"].send_multipart([b"t", b"<IDS|MSG>", b"sig", b"{}"])  # malformed: dropped
    kernel.publish("stream", {"name": "stdout", "text": "the end"})
    got = _iopub(client, kernel, "stream")
    shown = [m for m in got if m["msg_type"] == "display_data"]
    assert len(shown) == 1 and shown[0]["content"]["data"] == {"text/html": "<b>shown</b><img>"}
    assert not [m for m in got if m["msg_type"] == "debug_event"]
    assert relay.dropped >= 4


def test_client_requests_reach_the_kernel_signed_with_its_key_and_replies_come_back(relay_and_kernel):
    relay, kernel, client = relay_and_kernel
    msg_id = client.kernel_info()
    shell = kernel.socks["shell"]
    assert shell.poll(10_000)
    idents, msg = kernel.session.recv(shell)  # verifies the signature with the kernel's key
    assert msg["header"]["msg_id"] == msg_id and msg["msg_type"] == "kernel_info_request"
    kernel.session.send(
        shell,
        "kernel_info_reply",
        {
            "status": "ok",
            "debugger": True,
            "banner": "b",
            "help_links": [{"text": "x", "url": "javascript:x"}],
            "language_info": {"name": "python"},
            "protocol_version": "5.4",
        },
        parent=msg,
        ident=idents,
    )
    reply = client.get_shell_msg(timeout=10)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["debugger"] is False and reply["content"]["help_links"] == []
    # stdin: the kernel asks the client that sent the request, on the stdin channel
    kernel.session.send(
        kernel.socks["stdin"],
        "input_request",
        {"prompt": "name? ", "password": False},
        parent=msg,
        ident=idents,
    )
    assert client.get_stdin_msg(timeout=10)["content"] == {"prompt": "name? ", "password": False}
    # a client message the relay cannot verify never reaches the kernel
    client.session.key = b"not-the-client-key"
    client.kernel_info()
    assert not shell.poll(500)
    # heartbeat: echoed through
    hb = kernel.socks["hb"]
    probe = zmq.Context.instance().socket(zmq.REQ)
    probe.linger = 0
    probe.connect(f"ipc://{relay.host_dir / 's'}-5")
    probe.send(b"ping")
    deadline = time.monotonic() + 10
    while not probe.poll(100) and time.monotonic() < deadline:
        while hb.poll(0):  # echo, as ipykernel's heartbeat does (the client's own pings too)
            hb.send_multipart(hb.recv_multipart())
    assert probe.poll(0) and probe.recv() == b"ping"
    probe.close()


def test_trusted_output_passes_messages_unfiltered(relay_and_kernel):
    """CONTROL: the filter is what removes the script (the operator's dangerous opt-out shows it)."""
    relay, kernel, client = relay_and_kernel
    relay.configure(OutputOptions(trusted=True))
    _iopub(client, kernel, "status")
    kernel.publish("display_data", {"data": {"text/html": SCRIPT}, "metadata": {}, "transient": {}})
    got = _iopub(client, kernel, "display_data")
    assert got[-1]["content"]["data"]["text/html"] == SCRIPT
    kernel.publish("display_data", {"data": {"text/html": SCRIPT}}, key=b"guessed-key")
    kernel.publish("stream", {"name": "stdout", "text": "end"})
    assert [m["msg_type"] for m in _iopub(client, kernel, "stream")][-1] == "stream"  # forged: still dropped


# -- the real kernel -----------------------------------------------------------------------------------


@pytest.fixture
def openshell_kernelspec(tmp_path, monkeypatch, workspace):
    prefix = tmp_path / "prefix"
    install(prefix=str(prefix), pool_size=0)
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    yield workspace
    pool.shutdown_pools()


async def test_sandboxed_kernel_output_is_filtered_and_the_relay_is_out_of_its_reach(openshell_kernelspec):
    km = AsyncKernelManager(kernel_name="openshell")
    await km.start_kernel(cwd=str(openshell_kernelspec))
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=60)
        box = km.provisioner.box
        relay_dir = box.relay.host_dir
        assert km.get_connection_info()["ip"].startswith(str(relay_dir))
        code = (
            "import os, json, glob\n"
            "from IPython.display import display, HTML, Javascript\n"
            f"display(HTML({SCRIPT!r}))\n"
            "display(Javascript('alert(1)'))\n"
            "ip = get_ipython().kernel\n"
            "forged = {'data': {'text/html': '<svg onload=alert(1)>'}, 'metadata': {}}\n"
            "ip.session.send(ip.iopub_socket, 'display_data', forged, parent=ip.get_parent())\n"
            "inside = json.load(open('/tmp/.openshell-kernel/connection.json'))\n"
            f"print(json.dumps({{'key': inside['key'], 'relay_visible': os.path.exists({str(relay_dir)!r}),"
            " 'channel': sorted(os.listdir('/tmp/.openshell-kernel'))}))\n"
        )
        msgs: list[dict] = []
        reply = await kc.execute_interactive(code, timeout=60, output_hook=msgs.append)
        assert reply["content"]["status"] == "ok"
        shown = [m["content"]["data"] for m in msgs if m["msg_type"] == "display_data"]
        assert {"text/html": "<b>shown</b><img>", "text/plain": "<IPython.core.display.HTML object>"} in shown
        assert not any(
            "application/javascript" in d or "onload" in str(d) or "<script" in str(d) for d in shown
        )
        seen = json.loads("".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream"))
        assert seen["key"].encode() != km.session.key and seen["key"] not in km.session.key.decode()
        assert seen["relay_visible"] is False
        assert all(n.startswith(("k-", "connection.json", "broker.sock")) for n in seen["channel"])
        await km.restart_kernel()  # the kernel is relaunched behind the same relay
        await kc.wait_for_ready(timeout=60)
        assert box.relay is not None and km.get_connection_info()["ip"].startswith(str(relay_dir))
        msgs.clear()
        code = "from IPython.display import HTML; HTML('<i>x</i><script>1</script>')"
        await kc.execute_interactive(code, timeout=60, output_hook=msgs.append)
        results = [m["content"]["data"] for m in msgs if m["msg_type"] == "execute_result"]
        assert results[0]["text/html"] == "<i>x</i>"
    finally:
        kc.stop_channels()
        await km.shutdown_kernel()
    assert not relay_dir.exists()
