"""Run by test_preset_pip.py inside a fresh network namespace (`unshare -r -n`), where this process may
listen on 127.0.0.1:443: a local HTTPS package index for pypi.org and files.pythonhosted.org (a test
CA, the names pinned to 127.0.0.1 with the proxy's `--resolve`) serving one tiny wheel, the real
policy proxy, and `pip download` through it. Prints one JSON object: per policy, pip's exit status,
whether the wheel arrived, and the proxy's flow records. Nothing here leaves the namespace.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from jupyter_openshell.testing import TestCA, start_proxy

NAMES = ["pypi.org", "files.pythonhosted.org"]
WHEEL = "tinypkg-0.1-py3-none-any.whl"
FILE_PATH = f"/packages/ab/cd/{WHEEL}"


@functools.cache
def tiny_wheel() -> bytes:
    files = {
        "tinypkg/__init__.py": b"VALUE = 1\n",
        "tinypkg-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinypkg\nVersion: 0.1\n",
        "tinypkg-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: openshell-test\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{name},sha256={digest},{len(data)}")
        record.append("tinypkg-0.1.dist-info/RECORD,,")
        zf.writestr("tinypkg-0.1.dist-info/RECORD", "\n".join(record) + "\n")
    return buf.getvalue()


def serve_index(ca: TestCA, wheel: bytes) -> ThreadingHTTPServer:
    sha = hashlib.sha256(wheel).hexdigest()
    page = (f'<!DOCTYPE html><html><body><a href="https://files.pythonhosted.org{FILE_PATH}#sha256={sha}">'
            f"{WHEEL}</a></body></html>").encode()

    class Index(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            host = (self.headers.get("Host") or "").split(":")[0]
            if host == "pypi.org" and self.path in ("/simple/tinypkg/", "/simple/tinypkg"):
                body, ctype = page, "text/html"
            elif host == "files.pythonhosted.org" and self.path == FILE_PATH:
                body, ctype = wheel, "application/octet-stream"
            else:
                body, ctype = b"not found", "text/plain"
            self.send_response(200 if ctype != "text/plain" else 404)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 443), Index)
    server.socket = ca.server_context(NAMES).wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def pip_download(work: Path, name: str, policy: str, ca: TestCA) -> dict:
    state = work / name
    state.mkdir(mode=0o700)
    (state / "policy.yaml").write_text(policy)
    proxy = start_proxy(state, state / "policy.yaml", upstream_ca=ca.ca_path,
                        resolve={n: "127.0.0.1" for n in NAMES})
    out = work / f"{name}-downloads"
    try:
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("PIP_", "HTTP", "NO_PROXY"))}
        pip = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--isolated", "--no-deps", "--no-cache-dir",
             "--disable-pip-version-check", "--retries", "0", "--timeout", "20",
             "--index-url", "https://pypi.org/simple", "--proxy", proxy.url, "--cert", str(proxy.ca_bundle),
             "-d", str(out), "tinypkg==0.1"],
            capture_output=True, text=True, timeout=120, env=env)
        flows = [{k: f[k] for k in ("method", "host", "port", "path", "decision", "rule", "reason", "status")}
                 for f in proxy.client.flows()]
    finally:
        proxy.stop()
    return {"returncode": pip.returncode, "downloaded": (out / WHEEL).exists(),
            "wheel_ok": (out / WHEEL).exists() and (out / WHEEL).read_bytes() == tiny_wheel(),
            "pip_output": (pip.stdout + pip.stderr)[-3000:], "flows": flows}


def main() -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    policies = json.loads(sys.argv[1])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ca = TestCA(work / "ca")
        server = serve_index(ca, tiny_wheel())
        try:
            result = {name: pip_download(work, name, text, ca) for name, text in policies.items()}
        finally:
            server.shutdown()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
