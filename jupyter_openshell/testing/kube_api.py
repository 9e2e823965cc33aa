"""A stand-in Kubernetes API server for tests: plain HTTP on 127.0.0.1, the endpoints the Kubernetes
backend, `openshell k8s install` and the proxy's ConfigMap source use, answering as the API server does,
and recording every request.

* Objects: ConfigMaps, Secrets, Pods, Services, ServiceAccounts, Namespaces, Roles, RoleBindings,
  Deployments, NetworkPolicies, Events: create (409 AlreadyExists), get (404 NotFound), list with label
  selectors, watch (JSON lines from a resourceVersion; 410 Gone for one compacted away), merge patch,
  replace, delete (and the garbage collector: objects whose ownerReferences name a deleted uid go too),
  delete by label selector. resourceVersion, uid and creationTimestamp are set like the API server's.
* Pods: Pending, then Running with a pod IP 127.0.0.X after `start_delay` (or never, `hold=True`,
  or failing to pull, `image_error=...`). A Service gets `cluster_ip`.
* Exec (`pods/<name>/exec`, WebSocket, v4.channel.k8s.io): runs the command on THIS host as a subprocess
  with the pod's environment resolved (Secret references, $(VAR)), `python3` being `python` (also on
  PATH); stdout, stderr and the exit status on channels 1, 2, 3, as the kubelet sends them. The command
  is not isolated: it stands in for the container only to exercise the protocol. Logs
  (`pods/<name>/log`) answer `log`.
* Faults: `fail(method, path_regex, status, reason, times)` answers the next matching requests with that
  Status.
Test helper: production code must never import it, and it must never listen beyond loopback.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import json
import os
import random
import re
import select
import socket
import struct
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
KINDS = {  # resource -> (kind, list kind)
    "configmaps": "ConfigMap",
    "secrets": "Secret",
    "pods": "Pod",
    "services": "Service",
    "serviceaccounts": "ServiceAccount",
    "namespaces": "Namespace",
    "roles": "Role",
    "rolebindings": "RoleBinding",
    "deployments": "Deployment",
    "networkpolicies": "NetworkPolicy",
    "events": "Event",
}
_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<resource>[a-z]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[a-z]+))?$"
)
_NS_PATH = re.compile(r"^/api/v1/namespaces(?:/(?P<name>[^/]+))?$")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    content_type: str


@dataclass
class _Fault:
    method: str
    path: re.Pattern
    status: int
    reason: str
    times: int


@dataclass
class PodBehaviour:
    start_delay: float = 0.05
    hold: bool = False  # never Running (scheduling never happens)
    image_error: str = ""  # e.g. "ErrImageNeverPull": the container waits with this reason


@dataclass
class _Store:
    objects: dict[tuple[str, str, str], dict] = field(default_factory=dict)  # (resource, ns, name)
    events: list[tuple[int, str, str, dict]] = field(default_factory=list)  # (rv, resource, type, obj)
    rv: int = 100
    compacted: int = 0  # watches from a resourceVersion below this get 410 Gone
    generation: int = 0  # bumped by compact(): open watches end


def _status(code: int, reason: str, message: str) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _selector_matches(selector: str, labels: dict[str, str]) -> bool:
    for term in filter(None, (t.strip() for t in re.split(r",(?![^(]*\))", selector or ""))):
        if m := re.fullmatch(r"(\S+?)\s*(==|=|!=)\s*(\S*)", term):
            key, op, value = m.groups()
            if (labels.get(key) == value) != (op != "!="):
                return False
        elif m := re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", term):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            if (labels.get(key) in values) != (op == "in"):
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _merge(target: dict, patch: dict) -> dict:
    """JSON merge patch (RFC 7386), which is what strategic merge does for the fields used here."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


class FakeKubeAPI:
    """Run with `with FakeKubeAPI() as api:`; `api.kubeconfig(path)` writes a kubeconfig for it."""

    def __init__(
        self, *, python: str | None = None, token: str = "stand-in-token", cluster_ip: str = "127.0.0.1"
    ):
        self.store = _Store()
        self.lock = threading.Condition()
        self.requests: list[Request] = []
        self.faults: list[_Fault] = []
        self.pods = PodBehaviour()
        self.python = python
        self.token = token
        self.cluster_ip = cluster_ip
        self.log = "stand-in pod log\n"
        self.exec_root = Path(os.environ.get("TMPDIR", "/tmp"))
        self._next_ip = random.randrange(10, 200)  # (two stand-ins rarely hand out the same address)
        self._procs: list[subprocess.Popen] = []
        self._server: ThreadingHTTPServer | None = None
        self._stopping = False

    # -- control --------------------------------------------------------------------------------------
    def start(self) -> FakeKubeAPI:
        api = self

        class Handler(_Handler):
            owner = api

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping = True
        with self.lock:
            self.lock.notify_all()
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeKubeAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def kubeconfig(self, path: Path, namespace: str = "openshell") -> Path:
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "stand-in",
                    "clusters": [{"name": "stand-in", "cluster": {"server": self.url}}],
                    "users": [{"name": "tester", "user": {"token": self.token}}],
                    "contexts": [
                        {
                            "name": "stand-in",
                            "context": {"cluster": "stand-in", "user": "tester", "namespace": namespace},
                        }
                    ],
                }
            )
        )
        path.chmod(0o600)
        return path

    def fail(self, method: str, path_regex: str, status: int, reason: str = "", times: int = 1) -> None:
        self.faults.append(_Fault(method, re.compile(path_regex), status, reason or str(status), times))

    def compact(self) -> None:
        """Forget the event history and end open watches (as an API server does); a watch again from an
        older resourceVersion gets 410 Gone."""
        with self.lock:
            self.store.compacted = self.store.rv + 1
            self.store.events.clear()
            self.store.generation += 1
            self.lock.notify_all()

    def objects(self, resource: str, namespace: str | None = None, selector: str = "") -> list[dict]:
        with self.lock:
            return [
                copy.deepcopy(o)
                for (r, ns, _), o in sorted(self.store.objects.items())
                if r == resource
                and (namespace is None or ns == namespace)
                and _selector_matches(selector, o["metadata"].get("labels") or {})
            ]

    def get(self, resource: str, namespace: str, name: str) -> dict | None:
        with self.lock:
            found = self.store.objects.get((resource, namespace, name))
            return copy.deepcopy(found) if found else None

    def calls(self, method: str | None = None, pattern: str = "") -> list[str]:
        """'METHOD path' of the recorded requests (matching `pattern`)."""
        return [
            f"{r.method} {r.path}"
            for r in self.requests
            if (method is None or r.method == method) and re.search(pattern, r.path)
        ]

    # -- store ----------------------------------------------------------------------------------------
    def _event(self, resource: str, kind: str, obj: dict) -> None:
        self.store.events.append(
            (int(obj["metadata"]["resourceVersion"]), resource, kind, copy.deepcopy(obj))
        )
        self.lock.notify_all()

    def _bump(self, obj: dict) -> None:
        self.store.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.store.rv)

    def create(self, resource: str, namespace: str, obj: dict) -> tuple[int, dict]:
        with self.lock:
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            key = (resource, namespace, meta.get("name", ""))
            if key in self.store.objects:
                return 409, _status(409, "AlreadyExists", f'{resource} "{key[2]}" already exists')
            if resource != "namespaces":
                meta["namespace"] = namespace
            meta.update(
                uid=str(uuid.uuid4()), creationTimestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            )
            obj.setdefault("kind", KINDS[resource])
            self._bump(obj)
            if resource == "pods":
                obj["status"] = {"phase": "Pending", "conditions": []}
                self._schedule(namespace, meta["name"])
            if resource == "services":
                obj.setdefault("spec", {})["clusterIP"] = self.cluster_ip
            self.store.objects[key] = obj
            self._event(resource, "ADDED", obj)
            return 201, copy.deepcopy(obj)

    def _schedule(self, namespace: str, name: str) -> None:
        if self.pods.hold:
            return

        def run() -> None:
            time.sleep(self.pods.start_delay)
            with self.lock:
                pod = self.store.objects.get(("pods", namespace, name))
                if pod is None:
                    return
                if self.pods.image_error:
                    pod["status"]["containerStatuses"] = [
                        {
                            "name": "sandbox",
                            "ready": False,
                            "restartCount": 0,
                            "image": "x",
                            "imageID": "",
                            "state": {
                                "waiting": {
                                    "reason": self.pods.image_error,
                                    "message": f"image not present ({self.pods.image_error})",
                                }
                            },
                        }
                    ]
                else:
                    self._next_ip = 10 + (self._next_ip - 9) % 240  # 127.0.0.10 .. 249, never .1
                    pod["status"] = {
                        "phase": "Running",
                        "podIP": f"127.0.0.{self._next_ip}",
                        "conditions": [{"type": "Ready", "status": "True"}],
                        "containerStatuses": [
                            {
                                "name": "sandbox",
                                "ready": True,
                                "restartCount": 0,
                                "image": "x",
                                "imageID": "",
                                "state": {"running": {}},
                            }
                        ],
                    }
                self._bump(pod)
                self._event("pods", "MODIFIED", pod)

        threading.Thread(target=run, daemon=True).start()

    def delete(self, resource: str, namespace: str, name: str) -> tuple[int, dict]:
        with self.lock:
            obj = self.store.objects.pop((resource, namespace, name), None)
            if obj is None:
                return 404, _status(404, "NotFound", f'{resource} "{name}" not found')
            self._bump(obj)
            self._event(resource, "DELETED", obj)
            self._collect(obj["metadata"]["uid"])
            return 200, obj

    def _collect(self, uid: str) -> None:
        """The garbage collector: dependents of a deleted owner go too."""
        for key, obj in list(self.store.objects.items()):
            if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or []):
                self.store.objects.pop(key, None)
                self._bump(obj)
                self._event(key[0], "DELETED", obj)
                self._collect(obj["metadata"]["uid"])

    def patch(self, resource: str, namespace: str, name: str, body: Any) -> tuple[int, dict]:
        with self.lock:
            obj = self.store.objects.get((resource, namespace, name))
            if obj is None:
                return 404, _status(404, "NotFound", f'{resource} "{name}" not found')
            if isinstance(body, list):
                return 415, _status(415, "UnsupportedMediaType", "the stand-in takes merge patches only")
            keep = {k: obj["metadata"][k] for k in ("uid", "creationTimestamp", "namespace", "name")}
            _merge(obj, body)
            obj["metadata"].update(keep)
            self._bump(obj)
            self._event(resource, "MODIFIED", obj)
            return 200, copy.deepcopy(obj)

    def replace(self, resource: str, namespace: str, name: str, body: dict) -> tuple[int, dict]:
        with self.lock:
            obj = self.store.objects.get((resource, namespace, name))
            if obj is None:
                return 404, _status(404, "NotFound", f'{resource} "{name}" not found')
            new = copy.deepcopy(body)
            new["metadata"].update(
                {
                    k: obj["metadata"][k]
                    for k in ("uid", "creationTimestamp", "namespace")
                    if k in obj["metadata"]
                }
            )
            if resource == "pods":
                new["status"] = obj.get("status")
            self._bump(new)
            self.store.objects[(resource, namespace, name)] = new
            self._event(resource, "MODIFIED", new)
            return 200, copy.deepcopy(new)

    # -- exec -------------------------------------------------------------------------------------------
    def pod_env(self, pod: dict) -> dict[str, str]:
        """The container's environment as the kubelet would give it (Secrets resolved, $(VAR) expanded)."""
        path = "/usr/local/bin:/usr/bin:/bin"
        if self.python:  # its directory first: `python3` in the pod is that interpreter
            path = f"{os.path.dirname(self.python)}:{path}"
        env: dict[str, str] = {"PATH": path, "HOSTNAME": pod["metadata"]["name"]}
        ns = pod["metadata"]["namespace"]
        for item in pod["spec"]["containers"][0].get("env") or []:
            ref = (item.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                secret = self.get("secrets", ns, ref["name"]) or {}
                value = base64.b64decode((secret.get("data") or {}).get(ref["key"], "")).decode()
            else:
                value = re.sub(
                    r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), item.get("value", "")
                )
            env[item["name"]] = value
        return env

    def exec_argv(self, argv: list[str]) -> list[str]:
        return [self.python, *argv[1:]] if self.python and argv and argv[0] == "python3" else argv


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: FakeKubeAPI

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else None

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        api = self.owner
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        body = None if self.headers.get("Upgrade", "").lower() == "websocket" else self._body()
        api.requests.append(Request(method, url.path, query, body, self.headers.get("Content-Type", "")))
        if self.headers.get("Authorization") != f"Bearer {api.token}":
            self._send(401, _status(401, "Unauthorized", "Unauthorized"))
            return
        for fault in api.faults:
            if fault.times > 0 and fault.method == method and fault.path.search(url.path):
                fault.times -= 1
                reasons = {403: "Forbidden", 409: "AlreadyExists", 404: "NotFound", 500: "InternalError"}
                message = f"stand-in fault: {fault.reason}"
                if fault.status == 403:
                    message = (
                        f'{url.path.rsplit("/", 1)[-1]} is forbidden: User "system:serviceaccount:x:y" '
                        f"cannot {method.lower()} resource in the namespace ({fault.reason})"
                    )
                self._send(fault.status, _status(fault.status, reasons.get(fault.status, "Error"), message))
                return
        if m := _NS_PATH.match(url.path):
            self._resource(method, "namespaces", "", m.group("name"), None, query, body)
            return
        m = _PATH.match(url.path)
        if m is None or m.group("resource") not in KINDS:
            self._send(404, _status(404, "NotFound", f"the stand-in does not serve {url.path}"))
            return
        self._resource(
            method, m.group("resource"), m.group("ns") or "", m.group("name"), m.group("sub"), query, body
        )

    def _resource(
        self,
        method: str,
        resource: str,
        ns: str,
        name: str | None,
        sub: str | None,
        query: dict[str, list[str]],
        body: Any,
    ) -> None:
        api = self.owner
        if sub == "exec" and resource == "pods" and name:
            self._exec(ns, name, query)
            return
        if sub == "log" and resource == "pods" and name:
            pod = api.get("pods", ns, name)
            data = api.log.encode() if pod else b""
            self.send_response(200 if pod else 404)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if sub == "status" and name and method in ("PATCH", "PUT"):
            self._send(
                *api.patch(resource, ns, name, body if method == "PATCH" else {"status": body["status"]})
            )
            return
        selector = (query.get("labelSelector") or [""])[0]
        if name is None:
            if method == "GET" and (query.get("watch") or [""])[0] in ("true", "1", "True"):
                self._watch(resource, ns, selector, query)
            elif method == "GET":
                with api.lock:
                    rv = str(api.store.rv)
                self._send(
                    200,
                    {
                        "kind": KINDS[resource] + "List",
                        "apiVersion": "v1",
                        "metadata": {"resourceVersion": rv},
                        "items": api.objects(resource, ns or None, selector),
                    },
                )
            elif method == "POST":
                self._send(*api.create(resource, ns, body or {}))
            elif method == "DELETE":
                for obj in api.objects(resource, ns, selector):
                    api.delete(resource, ns, obj["metadata"]["name"])
                self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}})
            else:
                self._send(405, _status(405, "MethodNotAllowed", method))
            return
        if method == "GET":
            obj = api.get(resource, ns, name)
            self._send(200, obj) if obj else self._send(
                404, _status(404, "NotFound", f'{resource} "{name}" not found')
            )
        elif method == "DELETE":
            self._send(*api.delete(resource, ns, name))
        elif method == "PATCH":
            self._send(*api.patch(resource, ns, name, body))
        elif method == "PUT":
            self._send(*api.replace(resource, ns, name, body))
        else:
            self._send(405, _status(405, "MethodNotAllowed", method))

    def _watch(self, resource: str, ns: str, selector: str, query: dict[str, list[str]]) -> None:
        api = self.owner
        since = int((query.get("resourceVersion") or ["0"])[0] or 0)
        timeout = float((query.get("timeoutSeconds") or ["30"])[0])
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(obj: dict) -> None:
            data = json.dumps(obj).encode() + b"\n"
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        deadline = time.monotonic() + timeout
        generation = api.store.generation
        try:
            with api.lock:
                if since and since < api.store.compacted:
                    chunk({"type": "ERROR", "object": _status(410, "Expired", "too old resource version")})
                    since = -1
                elif not since:  # from now: the current objects first, as ADDED
                    for obj in api.objects(resource, ns or None, selector):
                        chunk({"type": "ADDED", "object": obj})
                    since = api.store.rv
            while (
                since >= 0
                and not api._stopping
                and time.monotonic() < deadline
                and api.store.generation == generation
            ):
                with api.lock:
                    pending = [
                        (rv, kind, obj)
                        for rv, r, kind, obj in api.store.events
                        if r == resource
                        and rv > since
                        and (not ns or obj["metadata"].get("namespace") == ns)
                        and _selector_matches(selector, obj["metadata"].get("labels") or {})
                    ]
                    if not pending:
                        api.lock.wait(min(0.5, max(0.0, deadline - time.monotonic())))
                        continue
                for rv, kind, obj in pending:
                    chunk({"type": kind, "object": obj})
                    since = max(since, rv)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass
        self.close_connection = True

    # -- WebSocket exec -----------------------------------------------------------------------------------
    def _exec(self, ns: str, name: str, query: dict[str, list[str]]) -> None:
        api = self.owner
        pod = api.get("pods", ns, name)
        if pod is None or (pod.get("status") or {}).get("phase") != "Running":
            self._send(
                400 if pod else 404,
                _status(
                    400 if pod else 404,
                    "BadRequest" if pod else "NotFound",
                    f"pod {name} is not running" if pod else f'pods "{name}" not found',
                ),
            )
            return
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.send_header("Sec-WebSocket-Protocol", "v4.channel.k8s.io")
        self.end_headers()
        self.wfile.flush()
        argv = api.exec_argv(query.get("command") or [])
        workdir = api.exec_root / f"kube-exec-{name}"
        workdir.mkdir(exist_ok=True)
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=api.pod_env(pod),
                cwd=workdir,
                start_new_session=True,
            )
        except OSError as exc:
            self._ws_send(3, json.dumps(_status(500, "InternalError", f"exec failed: {exc}")).encode())
            self._ws_close()
            return
        api._procs.append(proc)
        sock = self.connection
        write_lock = threading.Lock()
        outs = {proc.stdout.fileno(): 1, proc.stderr.fileno(): 2}  # type: ignore[union-attr]

        def pump_in() -> None:
            try:
                while True:
                    opcode, data = _ws_read(sock)
                    if opcode == 8 or opcode is None:
                        break
                    if data and data[0] == 0:
                        proc.stdin.write(data[1:])  # type: ignore[union-attr]
                        proc.stdin.flush()  # type: ignore[union-attr]
            except (OSError, ValueError):
                pass
            finally:
                with contextlib.suppress(OSError):
                    proc.stdin.close()  # type: ignore[union-attr]

        threading.Thread(target=pump_in, daemon=True).start()
        while outs:
            ready, _, _ = select.select(list(outs), [], [], 1.0)
            for fd in ready:
                data = os.read(fd, 65536)
                if not data:
                    del outs[fd]
                    continue
                with write_lock:
                    self._ws_send(outs[fd], data)
        code = proc.wait()
        if code == 0:
            status = {"metadata": {}, "status": "Success"}
        else:
            status = {
                "metadata": {},
                "status": "Failure",
                "message": f"command terminated with non-zero exit code: "
                f"error executing command, exit status {code}",
                "reason": "NonZeroExitCode",
                "details": {
                    "causes": [{"reason": "ExitCode", "message": str(code if code > 0 else 128 - code)}]
                },
            }
        with write_lock:
            self._ws_send(3, json.dumps(status).encode())
            self._ws_close()
        self.close_connection = True

    def _ws_send(self, channel: int, data: bytes, opcode: int = 2) -> None:
        payload = bytes([channel]) + data if opcode == 2 else data
        head = bytes([0x80 | opcode])
        n = len(payload)
        head += (
            bytes([n])
            if n < 126
            else bytes([126]) + struct.pack(">H", n)
            if n < 65536
            else bytes([127]) + struct.pack(">Q", n)
        )
        with contextlib.suppress(OSError):
            self.connection.sendall(head + payload)

    def _ws_close(self) -> None:
        try:
            self.connection.sendall(b"\x88\x02\x03\xe8")
            self.connection.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _ws_read(sock: socket.socket) -> tuple[int | None, bytes]:
    """One (client, masked) WebSocket frame; (None, b"") at EOF."""

    def exact(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    try:
        b0, b1 = exact(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", exact(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", exact(8))[0]
        mask = exact(4) if b1 & 0x80 else b"\0\0\0\0"
        data = bytes(c ^ mask[i % 4] for i, c in enumerate(exact(n)))
    except EOFError:
        return None, b""
    return b0 & 0x0F, data
