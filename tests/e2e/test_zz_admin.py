"""The admin listener of the built binary: probes and Prometheus metrics after real calls, which this file
makes itself (it passes alone as well as after the other files)."""

import os
import urllib.request

import grpc
import pytest


def fetch(path):
    with urllib.request.urlopen(f"http://{os.environ['AIGW_E2E_ADMIN']}{path}", timeout=10) as resp:
        return resp.status, resp.read().decode()


def test_probes(gateway):
    assert fetch("/healthz") == (200, "ok\n")
    assert fetch("/readyz") == (200, "ready\n")


def series(text, name):
    """The value of one series in the Prometheus text, 0 when it is not there yet."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_metrics_count_the_calls(gateway, stubs):
    pb, pb_grpc = stubs
    stub = pb_grpc.AIServiceStub(grpc.insecure_channel(gateway))
    req = pb.GenerateRequest(model="gpt-4.1", messages=[pb.Message(role="user", content="count me")])
    ok = 'aigw_requests_total{code="OK",key="local-dev",model="gpt-4.1",rpc="Generate"}'
    # Refused by the auth check before any handler: counted without key, model or rpc.
    refused = 'aigw_requests_total{code="UNAUTHENTICATED",key="",model="",rpc=""}'
    _, before = fetch("/metrics")
    for _ in range(2):
        stub.Generate(req, metadata=[("authorization", "Bearer sk-aigw-dev")], timeout=60)
    with pytest.raises(grpc.RpcError) as e:
        stub.Generate(req, metadata=[("authorization", "Bearer sk-wrong")], timeout=60)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    status, text = fetch("/metrics")
    assert status == 200
    assert series(text, ok) - series(before, ok) == 2
    assert series(text, refused) - series(before, refused) == 1
    assert "aigw_overhead_seconds_bucket" in text
    assert "process_resident_memory_bytes" in text
