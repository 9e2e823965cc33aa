"""Jupyter server extension of jupyter-openshell: REST API under /openshell/api/ and proxy supervision.

`app.OpenShellExtension` is the ExtensionApp; each service lives in `<service>/{handlers,manager}.py`.
This package must stay importable without jupyter_server loaded (the GPU reader is shared with widgets),
so nothing is imported here.
It must never serve a handler without authentication.
"""
