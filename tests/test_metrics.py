"""Prometheus metrics: RPCs by method and code, and live gauges, served over HTTP."""

from __future__ import annotations

import asyncio
import urllib.request

import grpc
import pytest
from clusterops.v1 import work_requests_pb2 as wr_pb

from tests.conftest import AppFactory, connect


async def test_metrics_count_rpcs_by_method_and_status_code(make_app: AppFactory) -> None:
    app = await make_app(metrics_port=0)
    async with connect(app) as stubs:
        await stubs.work_requests.ListWorkRequests(wr_pb.ListWorkRequestsRequest())
        with pytest.raises(grpc.aio.AioRpcError):
            await stubs.work_requests.GetWorkRequest(
                wr_pb.GetWorkRequestRequest(work_request_id="nope")
            )
    url = f"http://127.0.0.1:{app.metrics_port}/metrics"
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read().decode())
    assert (
        'clusterops_rpcs_total{code="OK",'
        'method="/clusterops.v1.WorkRequestService/ListWorkRequests"} 1.0' in body
    )
    assert (
        'clusterops_rpcs_total{code="INVALID_ARGUMENT",'
        'method="/clusterops.v1.WorkRequestService/GetWorkRequest"} 1.0' in body
    )
    assert "clusterops_operations_running 0.0" in body
    assert "clusterops_watchers 0.0" in body
