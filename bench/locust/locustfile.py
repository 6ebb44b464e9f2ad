"""Locust load file for aigw over gRPC: a User whose tasks call Generate and StreamGenerate through stubs that
grpcio-tools compiles from proto/ai_service.proto at start, reporting each call to Locust's statistics.

    locust -f bench/locust/locustfile.py --host 127.0.0.1:50051            # web UI on :8089
    locust -f bench/locust/locustfile.py --host 127.0.0.1:50051 --headless -u 50 -r 10 -t 1m

Environment: AIGW_KEY (default: the dev key of config.toml), AIGW_MODEL (default gpt-4.1), AIGW_ROUNDS (each user
stops after this many rounds of one stream and three unary calls, and the run ends when every user has; default:
run until `-t`).
"""

import importlib
import importlib.resources
import os
import sys
import tempfile
import time
from pathlib import Path

import grpc
import grpc.experimental.gevent as grpc_gevent
from locust import SequentialTaskSet, User, constant
from locust.exception import StopUser

grpc_gevent.init_gevent()  # grpcio must yield to gevent, or one user would block them all


def _stubs():
    from grpc_tools import protoc

    # google/protobuf/*.proto (the contract imports struct.proto) ship inside grpcio-tools.
    wkt = importlib.resources.files("grpc_tools") / "_proto"

    proto_dir = Path(__file__).resolve().parents[2] / "proto"
    # Loaded modules live on in memory; the folder they were generated into goes once they are imported.
    with tempfile.TemporaryDirectory(prefix="aigw-locust-") as out:
        args = ["protoc", f"-I{proto_dir}", f"-I{wkt}", f"--python_out={out}", f"--grpc_python_out={out}",
                "ai_service.proto"]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {proto_dir / 'ai_service.proto'}")
        sys.path.insert(0, out)
        try:
            return importlib.import_module("ai_service_pb2"), importlib.import_module("ai_service_pb2_grpc")
        finally:
            sys.path.remove(out)


pb, pb_grpc = _stubs()
KEY = os.environ.get("AIGW_KEY", "sk-aigw-dev")
MODEL = os.environ.get("AIGW_MODEL", "gpt-4.1")
METADATA = [("authorization", f"Bearer {KEY}")]
MESSAGES = [pb.Message(role="user", content="Say hello in one short sentence.")]
ROUNDS = int(os.environ.get("AIGW_ROUNDS", "0"))
_users_done = 0


class IncompleteStream(Exception):
    """The stream ended without its final chunk: a failure, even though the status was OK."""


class Calls(SequentialTaskSet):
    """Per user, in this order and over again: one stream, then three unary calls. A fixed order rather than
    random weights, so that even the shortest run calls both."""

    def _stream(self):
        started, length, exception = time.perf_counter(), 0, None
        try:
            complete = False
            for chunk in self.user.stub.StreamGenerate(pb.StreamGenerateRequest(model=MODEL, messages=MESSAGES),
                                                       metadata=METADATA, timeout=30):
                length += chunk.ByteSize()
                complete = complete or chunk.is_complete
            if not complete:
                exception = IncompleteStream("no final chunk")
        except grpc.RpcError as e:
            exception = e
        self.user.report("StreamGenerate", started, length, exception)

    def _generate(self):
        started, length, exception = time.perf_counter(), 0, None
        try:
            resp = self.user.stub.Generate(pb.GenerateRequest(model=MODEL, messages=MESSAGES), metadata=METADATA,
                                           timeout=30)
            length = resp.ByteSize()
        except grpc.RpcError as e:
            exception = e
        self.user.report("Generate", started, length, exception)

    def _round_done(self):
        """With AIGW_ROUNDS, a count-bounded run: the user stops after its rounds, the run once all have."""
        global _users_done
        self.user.rounds += 1
        if ROUNDS and self.user.rounds >= ROUNDS:
            _users_done += 1
            if _users_done >= self.user.environment.parsed_options.num_users:
                self.user.environment.runner.quit()
            raise StopUser()

    tasks = [_stream, _generate, _generate, _generate, _round_done]


class AigwUser(User):
    """One gRPC channel per user; calls back to back (wait_time 0), three unary calls to one stream."""

    wait_time = constant(0)
    tasks = [Calls]

    def on_start(self):
        self.rounds = 0
        self.channel = grpc.insecure_channel(self.host or "127.0.0.1:50051")
        self.stub = pb_grpc.AIServiceStub(self.channel)

    def on_stop(self):
        self.channel.close()

    def report(self, name, started, length, exception):
        self.environment.events.request.fire(
            request_type="grpc",
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=length,
            exception=exception,
            context={},
        )
