"""Reusable test helpers: a test CA, recording upstream HTTP(S) servers, a fake OpenAI-compatible
server, and a runner that starts the policy proxy on a free loopback port. Loopback only; these
must never be imported by production code.
"""

from __future__ import annotations

from .certs import TestCA
from .proxy import ProxyRun, free_port, start_proxy
from .upstream import FakeOpenAI, Recorded, UpstreamServer

__all__ = ["FakeOpenAI", "ProxyRun", "Recorded", "TestCA", "UpstreamServer", "free_port", "start_proxy"]
