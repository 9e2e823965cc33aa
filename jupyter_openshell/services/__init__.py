"""The services every user-facing layer calls: the CLI, the magics, the widgets, the kernel machinery and the
server extension's REST handlers (which the JupyterLab extension calls).

* `sandboxes`: create, list (every backend), status, stop, destroy, logs, exec, cleanup, kernel channels, and
  the JSON form of a sandbox (backend, image, enforcement per layer, the policy version in force, created).
* `policies`: `PolicyService(name)`: show, put, allow/deny/preset/mode, explain, history, rollback. Every
  change goes one way: validated, stored (`policy.PolicyStore`, whose files the proxy watches) through the
  sandbox's backend (a Kubernetes sandbox's proxy reads a ConfigMap too), then the proxy is asked to reload.
* `flows`: the proxy's decisions of one sandbox instance or several (from the proxy, else its log files).
* `gpu`: GPU status through NVML.  `proxy`: start, supervise and stop this state directory's proxy.
* `errors`: `ServiceError` (a refusal with the policy's issues).

Modules above this layer (kernel/, magics/, widgets/, server/) import none of `runtime`, `proxy`, `paths`
(tests/test_import_contracts.py); this layer uses only their public APIs. Nothing is imported here, so that
each caller loads only the service it uses.
"""
