"""The Kubernetes backend: sandboxes as pods behind the in-cluster policy proxy (see _backend).

The backend needs the optional `kubernetes` client (`pip install 'jupyter-openshell[kubernetes]'`); the
manifests (`_manifests`) and their checks (`_invariants`) do not. This module must never import the
client eagerly.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "KubernetesBackend":
        from ._backend import KubernetesBackend

        return KubernetesBackend
    raise AttributeError(name)
