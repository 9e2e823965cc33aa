"""Named, persistent sandboxes for `%%sandbox`: each runs an OpenShell kernel that cells are sent to.

Output of the remote cell (stream, display_data, execute_result, errors with traceback) is relayed into
the calling cell's output. The sandbox's kernel is reached through its relay (`kernel.relay`), which
filters everything it sends; display data is filtered again here before this host kernel, whose output
the browser trusts, publishes it. All live sandboxes of this process are destroyed at exit. It must never
run a cell on the host, nor publish a mime bundle that did not pass the output filter.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading

from IPython.display import publish_display_data

from jupyter_openshell.outputs.bundle import OutputOptions, filter_bundle

# The host cell shows the sandbox's denials (with the host's hint): its kernel's own notices would repeat
# them.
HOST_SHOWS_DENIALS = "from jupyter_openshell.magics import host_shows_denials\nhost_shows_denials()"


class SandboxCellError(Exception):
    """The cell raised inside the sandbox; `traceback` is the remote (ANSI) traceback."""

    def __init__(self, message: str, traceback: list[str] | None = None):
        super().__init__(message)
        self.traceback = traceback or [message]

    def _render_traceback_(self) -> list[str]:  # IPython shows the remote traceback instead of ours
        return self.traceback


class RemoteSandbox:
    def __init__(
        self,
        name: str,
        policy_file: str = "",
        gpu: bool = False,
        workspace: str = "",
        backend: str = "",
        image: str = "",
    ):
        from jupyter_client.blocking import BlockingKernelClient

        from jupyter_openshell.kernel.session import KernelConfig, KernelSandbox
        from jupyter_openshell.services.sandboxes import default_backend

        config = KernelConfig(
            backend=backend or default_backend(),
            image=image,
            policy_file=os.path.abspath(policy_file) if policy_file else "",
            workspace=os.path.abspath(workspace or os.getcwd()),
            gpu=gpu,
        )
        self.name = name
        self.box = KernelSandbox.start(config, name=name)
        self.client = BlockingKernelClient()
        self.client.load_connection_info(self.box.connection_info())
        self.client.start_channels()
        try:
            self.client.wait_for_ready(timeout=30)
            self.client.execute_interactive(
                HOST_SHOWS_DENIALS, silent=True, store_history=False, timeout=30, output_hook=lambda msg: None
            )
        except (RuntimeError, TimeoutError):
            self.close()
            raise

    def interrupt(self) -> None:
        msg = self.client.session.msg("interrupt_request", content={})
        self.client.control_channel.send(msg)

    def run(self, code: str, timeout: float | None = None) -> dict:
        """Run `code` in the sandbox's kernel, relaying its output; raise SandboxCellError on error."""
        errors: list[dict] = []

        def relay(msg: dict) -> None:
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                stream = sys.stderr if content.get("name") == "stderr" else sys.stdout
                stream.write(content.get("text", ""))
                stream.flush()
            elif kind in ("display_data", "execute_result", "update_display_data"):
                transient = content.get("transient") or {}
                data, metadata = filter_bundle(content.get("data"), content.get("metadata"), OutputOptions())
                publish_display_data(
                    data,
                    metadata,
                    transient=transient or None,
                    update=kind == "update_display_data",
                )
            elif kind == "error":
                errors.append(content)
            elif kind == "clear_output":
                from IPython.display import clear_output

                clear_output(wait=content.get("wait", False))

        try:
            reply = self.client.execute_interactive(
                code, timeout=timeout, output_hook=relay, allow_stdin=False, stop_on_error=False
            )
        except TimeoutError:
            self.interrupt()
            with contextlib.suppress(Exception):
                self.client.get_shell_msg(timeout=5)
            raise SandboxCellError(
                f"the cell ran longer than --timeout {timeout:g} s in sandbox "
                f"{self.name!r}; it was interrupted"
            ) from None
        except KeyboardInterrupt:
            self.interrupt()
            raise
        content = reply["content"]
        if content.get("status") == "error":
            err = errors[-1] if errors else content
            raise SandboxCellError(f"{err.get('ename')}: {err.get('evalue')}", err.get("traceback"))
        return content

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.stop_channels()
        self.box.destroy()


_lock = threading.Lock()
_live: dict[str, RemoteSandbox] = {}


def get_or_start(
    name: str, policy_file: str = "", gpu: bool = False, backend: str = "", image: str = ""
) -> tuple[RemoteSandbox, bool]:
    """(sandbox, created): the live sandbox `name` of this process, starting it if needed."""
    with _lock:
        if name in _live and _live[name].box.poll() is None:
            return _live[name], False
        stale = _live.pop(name, None)
    if stale:
        stale.close()
    remote = RemoteSandbox(name, policy_file=policy_file, gpu=gpu, backend=backend, image=image)
    with _lock:
        _live[name] = remote
    return remote, True


def live() -> dict[str, RemoteSandbox]:
    with _lock:
        return dict(_live)


def remove(name: str) -> bool:
    with _lock:
        remote = _live.pop(name, None)
    if remote is None:
        return False
    remote.close()
    return True


def close_all() -> None:
    for name in list(live()):
        remove(name)


atexit.register(close_all)
