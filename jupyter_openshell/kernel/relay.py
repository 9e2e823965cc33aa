"""The ZMQ relay between a sandboxed kernel and everything on the host that talks to it (the Jupyter server,
%%sandbox, nbclient): the only path from the kernel's sockets to a browser.

The kernel binds its five ipc sockets in its channel directory (bound into the sandbox) and signs with its
own key. The relay connects to them and binds the five sockets clients use in a host-only directory (0700,
never bound into a sandbox), under a second key that never enters the sandbox. Kernel -> client: the
signature is checked with the kernel's key (a failure is dropped), the message is rebuilt by
`jupyter_openshell.outputs.messages.MessageFilter` and signed with the client key. Client -> kernel: checked
with the client key, signed with the kernel's key, bytes unchanged. The heartbeat is echoed through.

One thread per process (`_Hub`, its own zmq context and poller) serves every relay: jupyter_client calls the
provisioner from short-lived event loops (nbclient, sync clients, the warm pool), which must not own it.
It must never forward a kernel message it did not verify and rebuild, nor let the kernel learn the client key.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import queue
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import zmq

from jupyter_openshell.outputs.bundle import OutputOptions
from jupyter_openshell.outputs.messages import MessageFilter, clean_header, clean_metadata

log = logging.getLogger("jupyter_openshell.relay")

DELIM = b"<IDS|MSG>"
PORTS = {"shell": 1, "iopub": 2, "stdin": 3, "control": 4, "hb": 5}
MAX_FRAME = 1 << 28  # 256 MiB per frame from the kernel
MAX_IDENTS, MAX_IDENT_LEN = 8, 256
BATCH = 64  # messages taken from one socket before the others get their turn


def sign(key: bytes, parts: list[bytes]) -> bytes:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(part)
    return mac.hexdigest().encode()


def split(frames: list[bytes]) -> tuple[list[bytes], bytes, list[bytes], list[bytes]] | None:
    """(identities, signature, [header, parent, metadata, content], buffers), or None if malformed."""
    try:
        i = frames.index(DELIM)
    except ValueError:
        return None
    if len(frames) < i + 6 or i > MAX_IDENTS or any(len(f) > MAX_IDENT_LEN for f in frames[:i]):
        return None
    return frames[:i], frames[i + 1], frames[i + 2 : i + 6], frames[i + 6 :]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _loads(raw: bytes) -> Any:
    return json.loads(raw, parse_constant=_reject_constant)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, allow_nan=False).encode("utf-8", "surrogateescape")


class _Hub(threading.Thread):
    """The one thread that owns every relay socket of this process."""

    def __init__(self) -> None:
        super().__init__(name="openshell-relay", daemon=True)
        self.ctx = zmq.Context()
        self.poller = zmq.Poller()
        self.handlers: dict[Any, Callable[[Any], None]] = {}
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self.poller.register(self._wake_r, zmq.POLLIN)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` in the hub thread and return its result (sockets are used by one thread only)."""
        if threading.current_thread() is self:
            return fn()
        future: Future = Future()
        self._calls.put((fn, future))
        os.write(self._wake_w, b"x")
        return future.result(timeout=30)

    def watch(self, sock: zmq.Socket, handler: Callable[[zmq.Socket], None]) -> None:
        self.handlers[sock] = handler
        self.poller.register(sock, zmq.POLLIN)

    def unwatch(self, sock: zmq.Socket) -> None:
        self.handlers.pop(sock, None)
        with contextlib.suppress(KeyError):
            self.poller.unregister(sock)

    def run(self) -> None:
        while True:
            for sock, _ in self.poller.poll():
                if sock == self._wake_r:
                    self._run_calls()
                elif sock in self.handlers:
                    try:
                        self.handlers[sock](sock)
                    except Exception:  # one bad message must not stop every kernel's traffic
                        log.exception("openshell relay: message handling failed")

    def _run_calls(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_r, 4096)
        while True:
            try:
                fn, future = self._calls.get_nowait()
            except queue.Empty:
                return
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)


_hub: _Hub | None = None
_hub_lock = threading.Lock()


def hub() -> _Hub:
    global _hub
    with _hub_lock:
        if _hub is None or not _hub.is_alive():
            _hub = _Hub()
            _hub.start()
        return _hub


class Relay:
    """The relay of one kernel: `connection_info()` is what clients get; `close()` ends it."""

    def __init__(
        self, kernel_base: str, host_dir: Path, kernel_key: bytes, options: OutputOptions | None = None
    ):
        self.kernel_base, self.kernel_key = kernel_base, kernel_key
        self.host_dir = host_dir
        self.key = secrets.token_hex(32).encode()  # the client key: never written anywhere in the sandbox
        self.filter = MessageFilter(options or OutputOptions())
        self.front: dict[str, zmq.Socket] = {}
        self.back: dict[str, zmq.Socket] = {}
        self.dropped = 0

    def connection_info(self) -> dict:
        return {
            **{f"{name}_port": port for name, port in PORTS.items()},
            "ip": str(self.host_dir / "s"),
            "transport": "ipc",
            "key": self.key,
            "signature_scheme": "hmac-sha256",
            "kernel_name": "openshell",
        }

    def configure(self, options: OutputOptions) -> None:
        """Set the filter's options (before a client connects: a pooled kernel gets its kernelspec's)."""

        def apply() -> None:
            self.filter = MessageFilter(options)

        hub().call(apply)

    def start(self) -> None:
        self.host_dir.mkdir(mode=0o700, exist_ok=False)
        hub().call(self._open)

    def close(self) -> None:
        if self.front or self.back:
            hub().call(self._close)

    # -- in the hub thread ---------------------------------------------------------------------------

    def _open(self) -> None:
        h = hub()
        identity = secrets.token_bytes(16)  # shell and stdin share it: the kernel answers input on stdin
        kinds = {
            "shell": zmq.ROUTER,
            "iopub": zmq.PUB,
            "stdin": zmq.ROUTER,
            "control": zmq.ROUTER,
            "hb": zmq.ROUTER,
        }
        try:
            for name, port in PORTS.items():
                front = h.ctx.socket(kinds[name])
                front.linger = 0
                front.bind(f"ipc://{self.host_dir / 's'}-{port}")
                self.front[name] = front
                back = h.ctx.socket(zmq.SUB if name == "iopub" else zmq.DEALER)
                back.linger = 0
                back.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME)
                back.setsockopt(zmq.RECONNECT_IVL, 20)
                if name == "iopub":
                    back.setsockopt(zmq.SUBSCRIBE, b"")
                elif name != "hb":
                    back.setsockopt(zmq.IDENTITY, identity if name != "control" else secrets.token_bytes(16))
                back.connect(f"ipc://{self.kernel_base}-{port}")
                self.back[name] = back
        except zmq.ZMQError:
            self._close()
            raise
        for name in PORTS:
            if name != "iopub":
                h.watch(self.front[name], self._from_client(name))
            h.watch(self.back[name], self._from_kernel(name))

    def _close(self) -> None:
        h = hub()
        for sock in [*self.front.values(), *self.back.values()]:
            h.unwatch(sock)
            sock.close(linger=0)
        self.front, self.back = {}, {}

    def _from_client(self, channel: str) -> Callable[[zmq.Socket], None]:
        def handle(sock: zmq.Socket) -> None:
            for _ in range(BATCH):
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    return
                out = frames if channel == "hb" else self._client_message(frames)
                if out is not None:
                    self._send(self.back[channel], out)

        return handle

    def _from_kernel(self, channel: str) -> Callable[[zmq.Socket], None]:
        def handle(sock: zmq.Socket) -> None:
            for _ in range(BATCH):
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    return
                if channel == "hb":
                    out = frames if len(frames) <= 4 and sum(map(len, frames)) <= 4096 else None
                else:
                    out = self._kernel_message(frames)
                if out is None:
                    self.dropped += 1
                else:
                    self._send(self.front[channel], out)

        return handle

    @staticmethod
    def _send(sock: zmq.Socket, frames: list[bytes]) -> None:
        try:
            sock.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:  # the peer is gone or not reading: as a broken connection would
            log.warning("openshell relay: a message was dropped (the receiver does not read)")

    def _client_message(self, frames: list[bytes]) -> list[bytes] | None:
        parts = split(frames)
        if parts is None:
            return None
        idents, signature, body, buffers = parts
        if not hmac.compare_digest(signature, sign(self.key, body)):
            log.warning("openshell relay: a client message with a bad signature was dropped")
            return None
        try:
            msg_type = _loads(body[0]).get("msg_type")
            if msg_type == "comm_open":
                self.filter.from_frontend(msg_type, _loads(body[3]))
        except (ValueError, AttributeError):
            return None
        return [*idents, DELIM, sign(self.kernel_key, body), *body, *buffers]

    def _kernel_message(self, frames: list[bytes]) -> list[bytes] | None:
        parts = split(frames)
        if parts is None:
            return None
        idents, signature, body, buffers = parts
        if not hmac.compare_digest(signature, sign(self.kernel_key, body)):
            return None
        if self.filter.options.trusted:  # the operator's documented, dangerous opt-out
            return [*idents, DELIM, sign(self.key, body), *body, *buffers]
        try:
            header, parent, metadata, content = (_loads(p) for p in body)
            header, parent = clean_header(header), clean_header(parent)
            msg_type = header.get("msg_type", "")
            result = self.filter.from_kernel(msg_type, content, list(buffers))
            if result is None:
                return None
            content, buffers = result
            body = [_dumps(header), _dumps(parent), _dumps(clean_metadata(metadata)), _dumps(content)]
        except (ValueError, TypeError, RecursionError):
            return None
        return [*idents, DELIM, sign(self.key, body), *body, *buffers]
