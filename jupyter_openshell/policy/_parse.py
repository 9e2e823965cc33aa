"""Parse and validate policy YAML (ruamel.yaml, so every issue carries a line and column).

All errors of a document are collected and raised together as one `PolicyError`; warnings (shadowed
rules, unusual values) ride on `Policy.warnings`. This module reads the document and checks its top level;
each section has its own module: `_parse_egress` (network.egress), `_limits` (network.limits),
`_parse_inference` (inference.routes), `_parse_sandbox` (filesystem, process, resources), on the shapes of
`_validator`, with the vocabulary of `_keys`. It must never accept an unknown key, never guess a missing
security-relevant value, and never read anything but the file it is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from . import _yamlfast
from ._errors import Issue, PolicyError
from ._keys import INFERENCE_KEYS, MODES, NETWORK_KEYS, TOP_KEYS
from ._limits import parse_network_limits
from ._model import (
    EgressRule,
    Filesystem,
    InferenceRoute,
    NetworkLimits,
    Policy,
    Process,
    Resources,
    with_version,
)
from ._parse_inference import InferenceParser
from ._parse_sandbox import SandboxParser
from ._validator import Loc, is_bool, type_name, val_loc


class _Validator(InferenceParser, SandboxParser):
    """One document's validator: the sections' mixins (egress, inference, sandbox) plus the whole policy."""

    def policy(self, doc: Any, source: str, text: str) -> Policy:
        top: Loc = (1, 1)
        if doc is None:
            doc = CommentedMap()
        if not self.mapping(
            doc,
            "",
            top,
            TOP_KEYS,
            'network:\n  egress:\n    - host: "api.example.com"\n      action: allow\n    - action: deny',
        ):
            raise PolicyError(self.errors)
        mode = "enforce"
        modes: list[tuple[str, Loc, str]] = []
        if "mode" in doc:
            modes.append((doc["mode"], val_loc(doc, "mode", top), "mode"))
        network = doc.get("network")
        egress: tuple[EgressRule, ...] = ()
        limits = NetworkLimits()
        if network is not None:
            nloc = val_loc(doc, "network", top)
            if self.mapping(
                network,
                "network",
                nloc,
                NETWORK_KEYS,
                'network:\n  egress:\n    - host: "x.org"\n      action: allow',
            ):
                if "mode" in network:
                    modes.append((network["mode"], val_loc(network, "mode", nloc), "network.mode"))
                if "egress" in network:
                    egress = self.egress(network["egress"], val_loc(network, "egress", nloc))
                if "limits" in network:
                    limits = parse_network_limits(self, network["limits"], val_loc(network, "limits", nloc))
        if len(modes) > 1:
            self.error(
                modes[1][1],
                modes[1][2],
                "mode is set twice (top level and under network)",
                "one `mode:` key, at the top level or under `network:`",
                "mode: audit",
            )
        for value, loc, field in modes[:1]:
            mode = self.choice(value, field, loc, MODES, "mode: enforce") or mode
        if mode == "audit":
            self.warn(
                modes[0][1],
                modes[0][2],
                "audit mode: requests the rules deny are logged and let through",
                "mode: enforce once the rules are tight",
                "mode: enforce",
            )
        routes: tuple[InferenceRoute, ...] = ()
        if doc.get("inference") is not None:
            iloc = val_loc(doc, "inference", top)
            inf = doc["inference"]
            if (
                self.mapping(inf, "inference", iloc, INFERENCE_KEYS, "inference:\n  routes: []")
                and "routes" in inf
            ):
                routes = self.routes(inf["routes"], val_loc(inf, "routes", iloc))
        filesystem = (
            self.filesystem(doc["filesystem"], val_loc(doc, "filesystem", top))
            if doc.get("filesystem") is not None
            else Filesystem()
        )
        process = (
            self.process(doc["process"], val_loc(doc, "process", top))
            if doc.get("process") is not None
            else Process()
        )
        resources = (
            self.resources(doc["resources"], val_loc(doc, "resources", top))
            if doc.get("resources") is not None
            else Resources()
        )
        gpu = False
        if "gpu" in doc:
            if not is_bool(doc["gpu"]):
                self.error(
                    val_loc(doc, "gpu", top),
                    "gpu",
                    f"expected true or false, got {type_name(doc['gpu'])}",
                    "a boolean",
                    "gpu: true",
                )
            else:
                gpu = bool(doc["gpu"])
        if "description" in doc:
            self.string(
                doc["description"],
                "description",
                val_loc(doc, "description", top),
                "a string",
                'description: "research agent, read-only GitHub"',
            )
        if self.errors:
            raise PolicyError(sorted(self.errors, key=lambda i: (i.line, i.column)), tuple(self.warnings))
        self.shadowing(egress, doc)
        return with_version(
            Policy(
                mode=mode,
                egress=egress,
                routes=routes,
                filesystem=filesystem,
                process=process,
                resources=resources,
                gpu=gpu,
                limits=limits,
                source=source,
                text=text,
                warnings=tuple(self.warnings),
            )
        )


# --- entry points ------------------------------------------------------------------------------------


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.allow_duplicate_keys = False
    return y


def parse_policy(text: str, source: str = "<string>") -> Policy:
    """Parse and validate policy YAML text. Raises `PolicyError` listing every error found."""
    fast = _yamlfast.load(text)
    try:
        doc = fast[0] if fast is not None else _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        message = " ".join(str(s) for s in (exc.context, exc.problem) if s)
        raise PolicyError(
            [
                Issue(
                    source,
                    line,
                    col,
                    "",
                    f"not valid YAML: {message}",
                    "valid YAML",
                    "check indentation, quotes and brackets near this line",
                )
            ]
        ) from None
    except YAMLError as exc:
        raise PolicyError([Issue(source, 0, 0, "", f"not valid YAML: {exc}", "valid YAML", "")]) from None
    return _Validator(source).policy(doc, source, text)


def load_policy_file(path: str | Path) -> Policy:
    """Read and validate a policy file. Raises `PolicyError` (and `OSError` if it cannot be read)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(
            [Issue(str(p), 0, 0, "", f"file is not UTF-8: {exc}", "a UTF-8 YAML file", "")]
        ) from None
    return parse_policy(text, source=str(p))
