"""The Docker backend (`--backend docker`): sandboxes as containers of any image, on a Docker Engine.

`DockerBackend` (entry point `docker` of `jupyter_openshell.backends`) is in `_backend`; the default
image's build (`openshell image build`) in `_image`; the layer every image gets (agent, package, probe)
in `_runtime_image`; the seccomp profile in `_profile`; the engine connection in `_engine`; the
container's PID 1 in `_init` (runs inside). Access to the engine's socket is root-equivalent on the host:
this backend is for users already trusted with root. Importing this package must never import the
`docker` SDK (it is an optional extra, `jupyter-openshell[docker]`) nor contact the engine.
"""

from ._backend import DockerBackend

__all__ = ["DockerBackend"]
