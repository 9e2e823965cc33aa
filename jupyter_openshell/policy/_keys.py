"""The vocabulary of the policy format: every section's keys and every closed set of values. The parser
(`_parse` and its sections) and the JSON Schema (`_schema`) both read them, so they cannot drift apart.
Data only; it must never import anything.
"""

from __future__ import annotations

STANDARD_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")
MODES = ("enforce", "audit")
ACTIONS = ("allow", "deny")
AUTH_TYPES = ("bearer", "header", "query")

TOP_KEYS = ("mode", "network", "inference", "filesystem", "process", "resources", "gpu", "description")
NETWORK_KEYS = ("mode", "egress", "limits")
RULE_KEYS = ("host", "port", "ports", "paths", "methods", "query", "addresses", "action")
PRESET_KEYS = ("preset", "addresses")
PATH_KEYS = ("path", "methods", "query")
INFERENCE_KEYS = ("routes",)
ROUTE_KEYS = ("name", "caller_pattern", "match", "backend", "strip_caller_auth")
MATCH_KEYS = ("hosts", "paths")
BACKEND_KEYS = ("url", "auth", "addresses")
AUTH_KEYS = ("type", "token_from_secret", "header", "param")
FS_KEYS = ("read_only", "read_write", "hidden")
FS_NAME_KEYS = ("workspace_writable", "workspace_protected")  # paths relative to the workspace
PROCESS_KEYS = ("user",)
RESOURCE_KEYS = ("cpu", "memory", "pids", "disk", "timeout")
