"""REST handler for GET /openshell/api/gpu: NVML status, or a clear "no GPU" answer.
It must never fail the server where NVML or a GPU is absent.
"""

from __future__ import annotations

import asyncio

from jupyter_server.auth.decorator import authorized
from tornado import web

from jupyter_openshell.services.gpu import gpu_snapshot

from ..base import API_PREFIX, OpenShellAPIHandler


class GpuHandler(OpenShellAPIHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await asyncio.to_thread(gpu_snapshot))


handlers = [(rf"{API_PREFIX}/gpu", GpuHandler)]
