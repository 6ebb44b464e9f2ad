"""The example clients in examples/ (Python grpcio, Node.js @grpc/grpc-js, gRPC-Web with Connect-ES), run as a
user would run them against the built gateway: each must see every answer whole."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import KEY

ROOT = Path(__file__).resolve().parents[2]


def run(cmd, key=KEY):
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "AIGW_KEY": key})


def check_output(done):
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Generate: ") and "(length, " in lines[0], lines
    assert lines[1].startswith("StreamGenerate: 16 chunks"), lines
    assert lines[2] == "InteractiveStream: session started on gpt-4.1", lines
    assert lines[3].startswith("InteractiveStream: turn 1 complete: ") and "Hello!" in lines[3], lines
    # The second turn's answer knows the first: the session kept its history.
    assert lines[4].startswith("InteractiveStream: turn 2 complete: ") and "earlier you said" in lines[4], lines


def test_python_example(gateway):
    check_output(run([sys.executable, "examples/python/client.py", "--target", gateway]))
    refused = run([sys.executable, "examples/python/client.py", "--target", gateway], key="sk-wrong")
    assert refused.returncode != 0 and "UNAUTHENTICATED" in refused.stderr


def test_node_example(gateway):
    node = shutil.which("node")
    assert node, "node not found"
    assert (ROOT / "examples/node/node_modules/@grpc/grpc-js").exists(), "run: npm ci --prefix examples/node"
    check_output(run([node, "examples/node/client.js", "--target", gateway]))
    refused = run([node, "examples/node/client.js", "--target", gateway], key="sk-wrong")
    assert refused.returncode != 0 and "UNAUTHENTICATED" in refused.stderr


def test_grpc_web_example(gateway):
    """Connect-ES's gRPC-Web transport, over HTTP/1.1 fetch: Generate and StreamGenerate."""
    node = shutil.which("node")
    assert node, "node not found"
    assert (ROOT / "examples/grpc-web/gen/ai_service_pb.js").exists(), \
        "run: npm ci --prefix examples/grpc-web && npm run --prefix examples/grpc-web generate"
    url = f"http://{gateway}"
    done = run([node, "examples/grpc-web/client.js", "--url", url])
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Generate: ") and "finish=length tokens=" in lines[0], lines
    assert "Say hello over gRPC-Web." in lines[0], lines
    assert lines[1].startswith("StreamGenerate: ") and "finish=stop" in lines[1], lines
    refused = run([node, "examples/grpc-web/client.js", "--url", url], key="sk-wrong")
    assert refused.returncode != 0 and "code=16" in refused.stderr, refused.stderr
