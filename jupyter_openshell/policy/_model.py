"""The typed, validated form of a policy document (what the parser produces and others read).

Every field has a documented default so the runtime can read `policy.resources.memory` etc. without
checking for absence. This module holds data only: it must never parse YAML or do I/O.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._errors import Issue
from ._normalize import DEFAULT_PORTS

if TYPE_CHECKING:
    from ._compile import CompiledPolicy

INFERENCE_HOST = "inference.local"
GIB = 1024**3


@dataclass(frozen=True)
class PathRule:
    """One entry of a rule's `paths`: a glob (`*` within a segment, `**` across), methods, query."""

    path: str
    methods: tuple[str, ...] | None = None  # None: any method
    query: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (param, value globs); all must match

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path}
        if self.methods is not None:
            out["methods"] = list(self.methods)
        if self.query:
            out["query"] = {k: list(v) for k, v in self.query}
        return out


@dataclass(frozen=True)
class EgressRule:
    """One effective `network.egress` rule. `host` None matches every host (a final `- action: deny`).

    `index` is the rule's position among the effective rules (`Policy.egress`, `Decision.rule_index`);
    `source_index` its entry in the YAML list (`network.egress[N]`, the same unless a `preset:` entry
    above it expanded to several rules); `preset` the preset it came from. `ports` None: every port
    (a deny rule without `ports`). `addresses`: IPs/CIDRs this rule's requests may connect to although
    they are loopback, link-local or the proxy host's own (an IP or CIDR `host` admits itself)."""

    index: int
    action: str  # "allow" | "deny"
    host: str | None = None  # "api.example.com", "*.example.com", "**.example.com", "10.0.0.1", "10.0.0.0/8"
    ports: tuple[int, ...] | None = DEFAULT_PORTS  # None: every port
    paths: tuple[PathRule, ...] | None = None  # None: any path
    methods: tuple[str, ...] | None = None
    query: tuple[tuple[str, tuple[str, ...]], ...] = ()
    line: int = 0
    addresses: tuple[str, ...] = ()
    source_index: int = -1  # -1: same as index
    preset: str | None = None

    @property
    def entry(self) -> int:
        """The position of the YAML entry this rule comes from (`network.egress[entry]`)."""
        return self.index if self.source_index < 0 else self.source_index

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.host is not None:
            out["host"] = self.host
        if self.ports is not None:
            out["ports"] = list(self.ports)
        elif self.host is not None:
            out["ports"] = "any"
        if self.methods is not None:
            out["methods"] = list(self.methods)
        if self.query:
            out["query"] = {k: list(v) for k, v in self.query}
        if self.paths is not None:
            out["paths"] = [p.to_dict() for p in self.paths]
        if self.addresses:
            out["addresses"] = list(self.addresses)
        if self.preset is not None:
            out["preset"] = self.preset
        out["action"] = self.action
        return out

    def to_yaml_dict(self) -> dict[str, Any]:
        """The rule as one would write it in YAML (no canonical-only values, no `preset` marker)."""
        out = self.to_dict()
        out.pop("preset", None)
        if out.get("ports") == "any" or (out.get("ports") == list(DEFAULT_PORTS) and self.action == "allow"):
            del out["ports"]
        return out

    def describe(self) -> str:
        """One line naming the rule: `network.egress[3] (deny, line 12): any host, any port`, with
        `preset NAME` in the parentheses for a rule a preset expanded to."""
        origin = f"{self.action}, line {self.line}" if self.line else self.action
        if self.preset is not None:
            origin += f", preset {self.preset}"
        bits = [f"network.egress[{self.entry}] ({origin}):", self.host or "any host"]
        if self.ports is None:
            bits[-1] += ","
            bits.append("any port")
        elif self.ports != DEFAULT_PORTS:
            bits.append("ports " + ",".join(map(str, self.ports)))
        if self.methods is not None:
            bits.append(",".join(self.methods))
        if self.paths is not None:
            shown = [p.path + (" " + ",".join(p.methods) if p.methods else "") for p in self.paths[:3]]
            bits.append("paths " + "; ".join(shown) + (" ..." if len(self.paths) > 3 else ""))
        return " ".join(bits)


@dataclass(frozen=True)
class AuthSpec:
    """How the proxy injects the backend credential: exactly one, from the secret store."""

    type: str  # "bearer" | "header" | "query"
    token_from_secret: str
    header: str | None = None  # for type "header" (e.g. "x-api-key")
    param: str | None = None  # for type "query" (e.g. "key")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "token_from_secret": self.token_from_secret}
        if self.header:
            out["header"] = self.header
        if self.param:
            out["param"] = self.param
        return out


@dataclass(frozen=True)
class Backend:
    url: str
    scheme: str
    host: str  # normalised (IPv6 without brackets)
    port: int
    base_path: str  # normalised, no trailing slash ("" for the root)
    auth: AuthSpec | None = None
    addresses: tuple[str, ...] = ()  # IPs/CIDRs the backend's name may resolve to although refused

    @classmethod
    def from_url(cls, url: str, auth: AuthSpec | None, host: str, addresses: tuple[str, ...] = ()) -> Backend:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        base = parts.path.rstrip("/")
        return cls(url=url, scheme=parts.scheme, host=host, port=port, base_path=base, auth=auth,
                   addresses=addresses)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"url": self.url}
        if self.auth:
            out["auth"] = self.auth.to_dict()
        if self.addresses:
            out["addresses"] = list(self.addresses)
        return out


@dataclass(frozen=True)
class InferenceRoute:
    """An inference route: requests from callers matching `caller_pattern` to `hosts`/`paths` go to
    `backend`, with caller credentials stripped (if `strip_caller_auth`) and the backend's injected."""

    index: int
    caller_pattern: str
    hosts: tuple[str, ...]
    paths: tuple[str, ...]
    backend: Backend
    strip_caller_auth: bool = True
    name: str = ""

    def target_path(self, path: str) -> str:
        """Upstream path for a (normalised) request path: the backend's base path is prefixed unless
        the request already starts with it (`/v1/chat/completions` on `https://host/v1` stays)."""
        base = self.backend.base_path
        if not base or path == base or path.startswith(base + "/"):
            return path
        return base + path

    def describe(self) -> str:
        return (
            f"inference.routes[{self.index}]"
            + (f" ({self.name})" if self.name else "")
            + (f": {self.caller_pattern!r} -> {self.backend.url}")
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "caller_pattern": self.caller_pattern,
            "match": {"hosts": list(self.hosts), "paths": list(self.paths)},
            "backend": self.backend.to_dict(),
            "strip_caller_auth": self.strip_caller_auth,
        }
        if self.name:
            out["name"] = self.name
        return out


@dataclass(frozen=True)
class Filesystem:
    """Absolute paths. Empty lists mean "the runtime's baseline" (system dirs read-only, workspace rw)."""

    read_only: tuple[str, ...] = ()
    read_write: tuple[str, ...] = ()
    hidden: tuple[str, ...] = ()
    # Paths relative to the workspace: left writable although protected by default / also protected.
    workspace_writable: tuple[str, ...] = ()
    workspace_protected: tuple[str, ...] = ()


@dataclass(frozen=True)
class Process:
    user: str | int = "sandbox"  # user name or numeric uid inside the sandbox


@dataclass(frozen=True)
class Resources:
    cpu: float = 1.0  # CPUs (0.5 = half a core)
    memory: int = 2 * GIB  # bytes
    pids: int = 256
    disk: int | None = None  # bytes of writable scratch; None: no quota
    timeout: float | None = None  # seconds of wall time per sandbox; None: no limit


@dataclass(frozen=True)
class NetworkLimits:
    """`network.limits`: request size limits for this policy's callers; None = the proxy's default."""

    max_body: int | None = None  # bytes of one request body


@dataclass(frozen=True)
class Policy:
    """A validated policy. `version` is a 12-hex hash of the canonical content (comments and
    formatting do not change it). `warnings` are non-fatal issues (shadowed rules, ...)."""

    mode: str = "enforce"  # "enforce" | "audit"
    egress: tuple[EgressRule, ...] = ()
    routes: tuple[InferenceRoute, ...] = ()
    filesystem: Filesystem = field(default_factory=Filesystem)
    process: Process = field(default_factory=Process)
    resources: Resources = field(default_factory=Resources)
    gpu: bool = False
    limits: NetworkLimits = field(default_factory=NetworkLimits)
    source: str = "<string>"
    text: str = field(default="", compare=False, repr=False)
    version: str = ""
    warnings: tuple[Issue, ...] = field(default=(), compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Canonical content (defaults filled in); `version` is the hash of this."""
        network: dict[str, Any] = {"egress": [r.to_dict() for r in self.egress]}
        if self.limits.max_body is not None:  # only when set: existing policies keep their version
            network["limits"] = {"max_body": self.limits.max_body}
        return {
            "mode": self.mode,
            "network": network,
            "inference": {"routes": [r.to_dict() for r in self.routes]},
            "filesystem": {
                "read_only": list(self.filesystem.read_only),
                "read_write": list(self.filesystem.read_write),
                "hidden": list(self.filesystem.hidden),
                # (only when set: policies without them keep their versions)
                **{
                    k: list(v)
                    for k, v in (
                        ("workspace_writable", self.filesystem.workspace_writable),
                        ("workspace_protected", self.filesystem.workspace_protected),
                    )
                    if v
                },
            },
            "process": {"user": self.process.user},
            "resources": {
                "cpu": self.resources.cpu,
                "memory": self.resources.memory,
                "pids": self.resources.pids,
                "disk": self.resources.disk,
                "timeout": self.resources.timeout,
            },
            "gpu": self.gpu,
        }

    def compile(self) -> CompiledPolicy:
        from ._compile import CompiledPolicy

        return CompiledPolicy(self)


def with_version(policy: Policy) -> Policy:
    """`policy` with its `version`: a 12-hex hash of its canonical content (`to_dict`)."""
    canonical = json.dumps(policy.to_dict(), sort_keys=True, separators=(",", ":"))
    return replace(policy, version=hashlib.sha256(canonical.encode()).hexdigest()[:12])
