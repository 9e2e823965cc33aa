"""Named presets: the narrowest egress rules for the first things users reach for (pip, conda,
Hugging Face downloads, GitHub reads, npm). A policy uses one as an egress entry `- preset: pypi`
(or `%policy allow pypi`); the parser expands it in place into the rules below, which `%policy show`
and `openshell policy explain` then show as the effective rules.

Every preset is read-only (GET/HEAD; git's fetch `POST .../git-upload-pack` for GitHub) on port 443
only, on named hosts only (no wildcards). This module is data plus two lookups: it must never widen a
preset past what its tool needs, and never do I/O.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from ._rules import rule_yaml

READ = ["GET", "HEAD"]


def _host(host: str, *paths: str | dict[str, Any]) -> dict[str, Any]:
    """A read-only rule for `host` on 443; `paths` are globs (GET/HEAD) or full path entries."""
    rule: dict[str, Any] = {"host": host, "ports": [443]}
    if paths:
        rule["paths"] = [p if isinstance(p, dict) else {"path": p, "methods": READ} for p in paths]
    else:
        rule["methods"] = READ
    rule["action"] = "allow"
    return rule


@dataclass(frozen=True)
class Preset:
    """A named set of allow rules. `rules` are rule dicts as written in YAML; `yaml` their YAML text."""

    name: str
    description: str
    rules: list[dict[str, Any]] = field(default_factory=list)

    @property
    def yaml(self) -> str:
        return "\n".join(rule_yaml(r) for r in self.rules)


_PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "pypi",
            "pip / uv / poetry downloads from PyPI: the simple index and JSON API on pypi.org, the "
            "package files on files.pythonhosted.org (GET/HEAD, HTTPS)",
            [
                _host("pypi.org", "/simple/**", "/pypi/*/json", "/pypi/*/*/json"),
                _host("files.pythonhosted.org", "/packages/**"),
            ],
        ),
        Preset(
            "conda",
            "conda / mamba channels on conda.anaconda.org (conda-forge, bioconda, ...) and Anaconda's "
            "default channels under /pkgs on repo.anaconda.com (GET/HEAD, HTTPS)",
            [_host("conda.anaconda.org"), _host("repo.anaconda.com", "/pkgs/**")],
        ),
        Preset(
            "huggingface",
            "Hugging Face Hub downloads (huggingface_hub, transformers, datasets): the model, dataset and "
            "space APIs and /resolve/ file URLs on huggingface.co, and the CDN and Xet hosts that large "
            "files redirect to (GET/HEAD, HTTPS; no uploads)",
            [
                _host(
                    "huggingface.co",
                    "/api/models/**",
                    "/api/datasets/**",
                    "/api/spaces/**",
                    "/*/resolve/**",
                    "/*/*/resolve/**",
                    "/datasets/*/resolve/**",
                    "/datasets/*/*/resolve/**",
                    "/spaces/*/*/resolve/**",
                ),
                *(
                    _host(name)
                    for name in (
                        "cdn-lfs.huggingface.co",
                        "cdn-lfs-us-1.huggingface.co",
                        "cdn-lfs-eu-1.huggingface.co",
                        "cdn-lfs.hf.co",
                        "cdn-lfs-us-1.hf.co",
                        "cdn-lfs-eu-1.hf.co",
                        "cas-bridge.xethub.hf.co",
                    )
                ),
            ],
        ),
        Preset(
            "github",
            "GitHub reads: pages, `git clone`/`fetch` over HTTPS (git-upload-pack; never push), the "
            "REST API read-only, archives (codeload), raw files and release assets (GET/HEAD, HTTPS)",
            [
                _host(
                    "github.com",
                    {"path": "/**", "methods": READ},
                    {"path": "/*/*/git-upload-pack", "methods": ["POST"]},
                ),
                *(
                    _host(name)
                    for name in (
                        "api.github.com",
                        "codeload.github.com",
                        "objects.githubusercontent.com",
                        "release-assets.githubusercontent.com",
                        "raw.githubusercontent.com",
                    )
                ),
            ],
        ),
        Preset(
            "npm",
            "npm / yarn / pnpm installs from registry.npmjs.org: package metadata and tarballs "
            "(GET/HEAD, HTTPS; no publish)",
            [_host("registry.npmjs.org")],
        ),
    )
}


def presets() -> dict[str, Preset]:
    """Every preset by name, in a stable order (copies: changing them changes nothing)."""
    return {name: Preset(p.name, p.description, copy.deepcopy(p.rules)) for name, p in _PRESETS.items()}


def preset_names() -> tuple[str, ...]:
    return tuple(_PRESETS)


def expand_preset(name: str) -> list[dict[str, Any]]:
    """The rule dicts of preset `name` (fresh copies). Raises KeyError for an unknown name."""
    return copy.deepcopy(_PRESETS[name].rules)
