"""Sandboxes created through the REST API: create, list, get, exec, delete, each owned by a Jupyter user.

Ownership is decided here and persisted by `OwnerStore` (a restarted server keeps it): a sandbox is
visible to the user who created it; one without a matching record (made by the CLI, a kernel, a crashed
server's lost record) only to the server's own owner and `admin_users`. The sandboxes themselves are the
runtime's, reached through `jupyter_openshell.services.sandboxes` (every backend's sandboxes are listed; new
ones go to the `backend` setting). It must never reveal another user's sandbox, and it stops every sandbox
it owns records of when the server stops.
"""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any

from traitlets import Int, Set, Unicode
from traitlets.config import LoggingConfigurable

from jupyter_openshell.names import RULE, is_sandbox_name
from jupyter_openshell.services import sandboxes
from jupyter_openshell.services.errors import issue_dicts

from ..base import ApiError
from .owners import OwnerStore, server_owner

MAX_OUTPUT = 1 << 20
AGENT_GONE = (
    "openshell: sandbox {name} did not end the command after the timeout (its agent does not answer; "
    "code inside may have stopped it); remove the sandbox\n"
)


class SandboxManager(LoggingConfigurable):
    backend = Unicode("", help="Backend of sandboxes created through the REST API ('' = $OPENSHELL_BACKEND, "
                      "else local).").tag(config=True)
    exec_timeout = Int(60, help="Default and maximum seconds an exec request may run.").tag(config=True)
    admin_users = Set(
        Unicode(),
        help="Jupyter usernames that may also see and manage sandboxes without a recorded owner (created "
        "by the CLI, by kernels, or before ownership was recorded); never other users' sandboxes.",
    ).tag(config=True)

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        from jupyter_openshell.services.state import owner_records

        self.owners = OwnerStore(owner_records())
        self._records = self.owners.load()  # name -> {"owner", "created"}: what a previous server recorded
        self._lock = asyncio.Lock()

    def _all(self) -> dict[str, Any]:
        """Every sandbox of every backend with records here, by name (a backend that does not answer is
        logged and left out)."""
        def failed(backend: str, exc: Exception) -> None:
            self.log.warning("openshell: %s sandboxes not listed: %s", backend, exc)

        return {i.name: i for i in sandboxes.list_all(failed)}

    def is_admin(self, owner: str) -> bool:
        return owner == server_owner() or owner in self.admin_users

    def _owner(self, info: Any) -> str | None:
        """The recorded owner of this very sandbox (same name and creation time), else None."""
        record = self._records.get(info.name)
        return record["owner"] if record and record.get("created") == info.created else None

    def _may_see(self, owner: str, info: Any) -> bool:
        recorded = self._owner(info)
        return recorded == owner if recorded is not None else self.is_admin(owner)

    def _visible(self, owner: str) -> dict[str, Any]:
        infos = self._all()
        stale = [n for n in self._records if n not in infos or self._owner(infos[n]) is None]
        if stale:  # destroyed or replaced behind our back: the record must not outlive its sandbox
            for name in stale:
                self._records.pop(name, None)
            self.owners.remove(*stale)
        return {n: i for n, i in infos.items() if self._may_see(owner, i)}

    def _check_owner(self, owner: str, name: str) -> Any:
        try:
            info = sandboxes.status(name)
        except Exception:  # unknown or invalid name: the same answer as someone else's sandbox
            raise ApiError(404, f"no sandbox named {name!r}") from None
        if not self._may_see(owner, info):
            raise ApiError(404, f"no sandbox named {name!r}")
        return info

    def _dicts(self, infos: list[Any]) -> list[dict]:
        """The sandboxes' JSON (`services.sandboxes.to_json`: backend, image, enforcement per layer, created,
        the policy version in force) with their owner."""
        out = sandboxes.to_json(infos)
        for data, info in zip(out, infos, strict=True):
            data["owner"] = self._owner(info)
        return out

    def list(self, owner: str) -> list[dict]:
        return self._dicts([info for _, info in sorted(self._visible(owner).items())])

    def get(self, owner: str, name: str) -> dict:
        return self._dicts([self._check_owner(owner, name)])[0]

    async def create(self, owner: str, body: dict) -> dict:
        from jupyter_openshell.policy import PolicyError, parse_policy

        name = body.get("name")
        if not is_sandbox_name(name):
            issue = {"field": "name", "message": RULE, "example": "agent-1"}
            raise ApiError(400, "invalid sandbox name", [issue])
        gpu = body.get("gpu", False)
        if not isinstance(gpu, bool):
            raise ApiError(400, "invalid gpu", [{"field": "gpu", "message": "must be true or false"}])
        policy = body.get("policy")
        if policy is not None and not isinstance(policy, str):
            raise ApiError(400, "invalid policy", [{"field": "policy", "message": "must be YAML text"}])
        async with self._lock:
            if name in self._all():
                raise ApiError(409, f"a sandbox named {name!r} already exists; pick another name")
            if policy is not None:
                try:
                    parse_policy(policy, source="policy")
                except PolicyError as exc:
                    raise ApiError(400, str(exc), issue_dicts(exc)) from None
            spec = sandboxes.SandboxSpec(name=name, policy=policy, policy_source="policy", gpu=gpu or None)
            try:
                info = await asyncio.to_thread(sandboxes.create, spec, self.backend or None)
            except sandboxes.SandboxError as exc:
                raise ApiError(500, f"sandbox {name!r} could not be created: {exc}") from None
            self._records[name] = {"owner": owner, "created": info.created}
            self.owners.set(name, owner, info.created)
        return self._dicts([info])[0]

    async def delete(self, owner: str, name: str) -> None:
        self._check_owner(owner, name)
        await asyncio.to_thread(sandboxes.destroy, name)
        self._records.pop(name, None)
        self.owners.remove(name)

    async def stop(self, owner: str, name: str) -> dict:
        """Stop the sandbox's processes (its files and policy stay; remove it to delete them)."""
        self._check_owner(owner, name)
        try:
            info = await asyncio.to_thread(sandboxes.stop, name)
        except sandboxes.SandboxError as exc:
            raise ApiError(409, f"sandbox {name!r} could not be stopped: {exc}") from None
        return self._dicts([info])[0]

    async def logs(self, owner: str, name: str, limit: int) -> dict:
        """The last `limit` characters of the sandbox's log (agent, bwrap and channel messages)."""
        self._check_owner(owner, name)
        text = await asyncio.to_thread(sandboxes.logs, name)
        return {"name": name, "logs": text[-limit:], "truncated": len(text) > limit}

    async def exec(self, owner: str, name: str, body: dict) -> dict:
        self._check_owner(owner, name)
        argv = body.get("argv")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise ApiError(
                400,
                "invalid argv",
                [
                    {
                        "field": "argv",
                        "message": "must be a non-empty list of strings",
                        "example": ["python", "-c", "print(1)"],
                    }
                ],
            )
        timeout = body.get("timeout", self.exec_timeout)
        if not isinstance(timeout, int | float) or not 0 < timeout <= self.exec_timeout:
            raise ApiError(
                400,
                "invalid timeout",
                [{"field": "timeout", "message": f"must be a number of seconds in (0, {self.exec_timeout}]"}],
            )
        stdin = body.get("stdin", "")
        if not isinstance(stdin, str):
            raise ApiError(400, "invalid stdin", [{"field": "stdin", "message": "must be text"}])
        return await asyncio.to_thread(self._run, name, argv, float(timeout), stdin)

    def _run(self, name: str, argv: list[str], timeout: float, stdin: str) -> dict:
        proc = sandboxes.exec(
            name,
            argv,
            env={},
            cwd=None,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        timed_out = False
        try:
            out, err = proc.communicate(stdin.encode(), timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.kill()
            try:
                out, err = proc.communicate(timeout=sandboxes.KILL_GRACE_S)
            except subprocess.TimeoutExpired:  # the agent ignores the kill: never hold a server thread
                proc.abandon()
                out, err = b"", AGENT_GONE.format(name=name).encode()
        return {
            "returncode": proc.returncode,
            "stdout": out[:MAX_OUTPUT].decode(errors="replace"),
            "stderr": err[:MAX_OUTPUT].decode(errors="replace"),
            "timed_out": timed_out,
        }

    def owned_names(self, owner: str) -> set[str]:
        """Names of the sandboxes `owner` may see (flows, policies)."""
        return set(self._visible(owner))

    def owned_instances(self, owner: str) -> dict[str, float | None]:
        """{name: created} of the sandboxes `owner` may see: their flows are those of that instance only."""
        return {n: i.created for n, i in self._visible(owner).items()}

    def owns(self, owner: str, name: str) -> bool:
        try:
            self._check_owner(owner, name)
        except ApiError:
            return False
        return True

    def stop_all(self) -> None:
        """Destroy every sandbox this server holds a record of (created here or by a server before it)."""
        names = list(self._records)
        for name in names:
            try:
                info = sandboxes.status(name)
                if self._owner(info) is not None:
                    sandboxes.destroy(name)
            except Exception as exc:
                self.log.warning("openshell: could not destroy sandbox %s: %s", name, exc)
        self._records.clear()
        self.owners.remove(*names)

