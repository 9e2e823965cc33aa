"""The L7 egress policy proxy (mitmproxy + addons), its sandbox gateway, control API and client.

Public API: `ProxyClient`, `ProxyError` (see docs/ARCHITECTURE.md). Everything else is private.
"""

from __future__ import annotations

from .client import ProxyClient, ProxyError

__all__ = ["ProxyClient", "ProxyError"]
