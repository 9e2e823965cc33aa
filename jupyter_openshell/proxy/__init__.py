"""The L7 egress policy proxy (mitmproxy + addons), its sandbox gateway, control API and client.

Public API: `ProxyClient`, `ProxyError`, and for managing secrets `SecretError`, `check_secret_name`,
`secret_env_name`, and for reading the flow log files `flow_log_files`, `read_flow_records` (see
docs/ARCHITECTURE.md). Everything else is private.
Other areas must never import its private modules.
"""

from __future__ import annotations

from .._lazy import lazy_exports

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._flowlog import log_files as flow_log_files
    from ._flowlog import read_records as read_flow_records
    from ._secrets import SecretError
    from ._secrets import check_name as check_secret_name
    from ._secrets import env_name as secret_env_name
    from .client import ProxyClient, ProxyError

_EXPORTS = {
    "ProxyClient": ".client",
    "ProxyError": ".client",
    "SecretError": "._secrets",
    "check_secret_name": "._secrets:check_name",
    "flow_log_files": "._flowlog:log_files",
    "read_flow_records": "._flowlog:read_records",
    "secret_env_name": "._secrets:env_name",
}
__all__ = ["ProxyClient", "ProxyError", "SecretError", "check_secret_name", "flow_log_files",
           "read_flow_records", "secret_env_name"]
__getattr__ = lazy_exports(__name__, _EXPORTS)
