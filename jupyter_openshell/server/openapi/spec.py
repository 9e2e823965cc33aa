"""The OpenAPI 3.1 document of the openshell REST API (served at /openshell/api/openapi.json).

It must list every route the extension registers; a test checks the two agree.
It must never drift from the handlers.
"""

from __future__ import annotations

from ... import __version__

_ERR = {
    "description": "error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_E404 = {**_ERR, "description": "no such sandbox, or not yours"}


def _json(ref: str, description: str = "ok") -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}


def _name_param() -> dict:
    return {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}


def openapi_document(base: str = "/openshell/api") -> dict:
    obj = {"type": "object"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "jupyter-openshell",
            "version": __version__,
            "description": "Sandboxes, their egress policies, proxied flows and GPU status. "
            "Every route needs "
            "Jupyter authentication (Authorization: token ...); sandboxes are visible only to their creator.",
        },
        "servers": [{"url": base}],
        "security": [{"JupyterToken": []}],
        "paths": {
            "/sandboxes": {
                "get": {
                    "summary": "List your sandboxes",
                    "responses": {"200": _json("#/components/schemas/SandboxList")},
                },
                "post": {
                    "summary": "Create a sandbox",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/SandboxCreate"}}
                        },
                    },
                    "responses": {
                        "201": _json("#/components/schemas/Sandbox", "created"),
                        "400": _ERR,
                        "409": {**_ERR, "description": "name taken"},
                    },
                },
            },
            "/sandboxes/{name}": {
                "parameters": [_name_param()],
                "get": {
                    "summary": "Get a sandbox",
                    "responses": {"200": _json("#/components/schemas/Sandbox"), "404": _E404},
                },
                "delete": {
                    "summary": "Stop and remove a sandbox",
                    "responses": {"204": {"description": "gone"}, "404": _E404},
                },
            },
            "/sandboxes/{name}/exec": {
                "parameters": [_name_param()],
                "post": {
                    "summary": "Run a command in a sandbox",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/ExecRequest"}}
                        },
                    },
                    "responses": {"200": _json("#/components/schemas/ExecResult"), "400": _ERR, "404": _E404},
                },
            },
            "/sandboxes/{name}/stop": {
                "parameters": [_name_param()],
                "post": {
                    "summary": "Stop a sandbox's processes (files and policy stay)",
                    "responses": {"200": _json("#/components/schemas/Sandbox"), "404": _E404, "409": _ERR},
                },
            },
            "/sandboxes/{name}/logs": {
                "parameters": [_name_param()],
                "get": {
                    "summary": "The end of a sandbox's log",
                    "parameters": [
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}}
                    ],
                    "responses": {
                        "200": {"description": "{name, logs, truncated}",
                                "content": {"application/json": {"schema": obj}}},
                        "404": _E404,
                    },
                },
            },
            "/kernels/{kernel_id}": {
                "parameters": [
                    {"name": "kernel_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "get": {
                    "summary": "The sandbox of a running OpenShell kernel ({kernel_id, sandbox})",
                    "responses": {
                        "200": {"description": "ok", "content": {"application/json": {"schema": obj}}},
                        "404": {**_ERR, "description": "no such kernel, not OpenShell's, or not yours"},
                    },
                },
            },
            "/policy/validate": {
                "post": {
                    "summary": "Validate policy text (nothing is written): issues with line, column, field, "
                    "message, expected, example, severity, did_you_mean",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": obj}}},
                    "responses": {"200": _json("#/components/schemas/Validation"), "400": _ERR, "413": _ERR},
                },
            },
            "/policy/presets": {
                "get": {
                    "summary": "Policy presets to insert ({presets: [{name, description, yaml}]})",
                    "responses": {
                        "200": {"description": "ok", "content": {"application/json": {"schema": obj}}},
                        "501": _ERR,
                    },
                },
                "post": {
                    "summary": "{name, yaml} -> {name, policy}: the text with the preset's rules inserted "
                    "(nothing is written)",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": obj}}},
                    "responses": {
                        "200": {"description": "ok", "content": {"application/json": {"schema": obj}}},
                        "400": _ERR,
                        "404": _ERR,
                        "501": _ERR,
                    },
                },
            },
            "/docs/{page}": {
                "parameters": [
                    {"name": "page", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "get": {
                    "summary": "A documentation page as markdown ({name, markdown}); page: policy-format",
                    "responses": {
                        "200": {"description": "ok", "content": {"application/json": {"schema": obj}}},
                        "404": _ERR,
                    },
                },
            },
            "/policy/variants": {
                "post": {
                    "summary": "Rules that allow {method, url}, narrowest first; with {sandbox}, each "
                    "also as that sandbox's policy with the rule staged (nothing is written)",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": obj}}},
                    "responses": {
                        "200": {"description": "ok", "content": {"application/json": {"schema": obj}}},
                        "400": _ERR,
                        "404": _E404,
                    },
                },
            },
            "/policies/{name}": {
                "parameters": [_name_param()],
                "get": {
                    "summary": "Current policy of a sandbox",
                    "responses": {"200": _json("#/components/schemas/Policy"), "404": _E404},
                },
                "put": {
                    "summary": "Validate and apply a policy (hot reload)",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/yaml": {"schema": {"type": "string"}},
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"yaml": {"type": "string"}},
                                    "required": ["yaml"],
                                }
                            },
                        },
                    },
                    "responses": {
                        "200": _json("#/components/schemas/PolicyApplied"),
                        "400": {**_ERR, "description": "invalid policy; issues name file, line, field"},
                        "404": _E404,
                    },
                },
            },
            "/policies/{name}/history": {
                "parameters": [_name_param()],
                "get": {
                    "summary": "Applied versions of a sandbox's policy",
                    "responses": {
                        "200": {"description": "ok", "content": {"application/json": {"schema": obj}}},
                        "404": _E404,
                    },
                },
            },
            "/flows": {
                "get": {
                    "summary": "Proxied requests of your sandboxes (of each, its current instance), "
                    "oldest first",
                    "parameters": [
                        {"name": "sandbox", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "after",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0},
                            "description": "only records with a larger seq (numbered by the proxy, valid "
                            "across restarts); pass the previous answer's next_after to page (absent: the "
                            "newest records)",
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        },
                    ],
                    "responses": {"200": _json("#/components/schemas/FlowPage"), "400": _ERR, "404": _E404},
                },
            },
            "/flows/stream": {
                "get": {
                    "summary": 'WebSocket: {"flows": [...], "next_after": seq} messages as new requests '
                    "are decided",
                    "parameters": [
                        {"name": "sandbox", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "after",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0},
                            "description": "resume after this seq (absent: the newest records first)",
                        },
                    ],
                    "responses": {"101": {"description": "switching protocols"}, "404": _E404},
                },
            },
            "/gpu": {
                "get": {
                    "summary": "GPU status through NVML",
                    "responses": {"200": _json("#/components/schemas/GpuStatus")},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {
                        "200": {"description": "ok", "content": {"application/json": {"schema": obj}}}
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"JupyterToken": {"type": "apiKey", "in": "header", "name": "Authorization"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "message": {"type": "string"},
                        "issues": {"type": "array", "items": {"$ref": "#/components/schemas/Issue"}},
                    },
                },
                "Issue": {
                    "type": "object",
                    "properties": {
                        k: {"type": ["string", "integer", "null"]}
                        for k in ("file", "line", "column", "field", "message", "expected", "example",
                                  "severity", "did_you_mean")
                    },
                },
                "Validation": {
                    "type": "object",
                    "properties": {
                        "valid": {"type": "boolean"},
                        "version": {"type": ["string", "null"]},
                        "issues": {"type": "array", "items": {"$ref": "#/components/schemas/Issue"}},
                    },
                },
                "SandboxCreate": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,39}$"},
                        "policy": {
                            "type": "string",
                            "description": "policy YAML (default: the default policy)",
                        },
                        "gpu": {"type": "boolean"},
                    },
                },
                "Sandbox": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "state": {"type": "string", "enum": ["running", "stopped", "exited", "creating"]},
                        "owner": {"type": ["string", "null"]},
                        "backend": {"type": "string", "description": "local, docker, kubernetes, a plugin"},
                        "image": {"type": ["string", "null"], "description": "container image (null: local)"},
                        "address": {"type": "string"},
                        "policy_file": {"type": "string"},
                        "policy_version": {
                            "type": ["string", "null"],
                            "description": "the version the proxy enforces now for this sandbox (null: "
                            "the proxy does not run, has not loaded it, or runs in a cluster)",
                        },
                        "workspace": {"type": ["string", "null"]},
                        "created": {"type": "number", "description": "unix time of this instance"},
                        "enforcement": {
                            "type": "object",
                            "description": "what makes each wall: network, filesystem, syscalls, user, "
                            "resources",
                            "additionalProperties": {"type": "string"},
                        },
                        "limits": {"type": "object"},
                        "gpu": {"type": "boolean"},
                        "details": {
                            "type": "object",
                            "description": "backend facts: pid and uid on this host (local, docker), "
                            "resources (what enforces each limit), warnings, ...",
                        },
                    },
                    "additionalProperties": True,
                },
                "SandboxList": {
                    "type": "object",
                    "properties": {
                        "sandboxes": {"type": "array", "items": {"$ref": "#/components/schemas/Sandbox"}}
                    },
                },
                "ExecRequest": {
                    "type": "object",
                    "required": ["argv"],
                    "properties": {
                        "argv": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                        "timeout": {"type": "number"},
                        "stdin": {"type": "string"},
                    },
                },
                "ExecResult": {
                    "type": "object",
                    "properties": {
                        "returncode": {"type": ["integer", "null"]},
                        "stdout": {"type": "string"},
                        "stderr": {"type": "string"},
                        "timed_out": {"type": "boolean"},
                    },
                },
                "Policy": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "version": {"type": "string"},
                        "yaml": {"type": "string"},
                    },
                },
                "PolicyApplied": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "version": {"type": "string"},
                        "warnings": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "Flow": {
                    "type": "object",
                    "properties": {
                        k: {}
                        for k in (
                            "seq",
                            "id",
                            "ts",
                            "sandbox",
                            "sandbox_created",
                            "client",
                            "method",
                            "scheme",
                            "host",
                            "port",
                            "path",
                            "decision",
                            "rule",
                            "reason",
                            "policy_version",
                            "status",
                            "bytes_in",
                            "bytes_out",
                            "duration_ms",
                            "route",
                        )
                    },
                },
                "FlowPage": {
                    "type": "object",
                    "properties": {
                        "flows": {"type": "array", "items": {"$ref": "#/components/schemas/Flow"}},
                        "next_after": {"type": "integer"},
                        "limit": {"type": "integer"},
                    },
                },
                "GpuStatus": {
                    "type": "object",
                    "properties": {
                        "available": {"type": "boolean"},
                        "reason": {"type": "string"},
                        "driver": {"type": ["string", "null"]},
                        "gpus": {"type": "array", "items": obj},
                    },
                },
            },
        },
    }
