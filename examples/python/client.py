"""aigw from Python: grpcio with stubs compiled from proto/ by grpcio-tools at start. Calls Generate,
StreamGenerate and a two-turn InteractiveStream session, printing what comes back.

    pip install grpcio grpcio-tools
    python examples/python/client.py [--target 127.0.0.1:50051] [--model gpt-4.1]   # key: $AIGW_KEY or the dev key

Plaintext by default; --tls uses the system's trust store (--ca FILE for a private CA).
"""

import argparse
import importlib
import importlib.resources
import os
import queue
import sys
import tempfile
from pathlib import Path

import grpc


def stubs():
    from grpc_tools import protoc

    # google/protobuf/*.proto (the contract imports struct.proto) ship inside grpcio-tools.
    wkt = importlib.resources.files("grpc_tools") / "_proto"

    proto_dir = Path(__file__).resolve().parents[2] / "proto"
    # Imported modules live on in memory: the folder they were generated into is removed once they are loaded.
    with tempfile.TemporaryDirectory(prefix="aigw-example-") as out:
        args = ["protoc", f"-I{proto_dir}", f"-I{wkt}", f"--python_out={out}", f"--grpc_python_out={out}",
                "ai_service.proto"]
        if protoc.main(args) != 0:
            sys.exit(f"protoc failed on {proto_dir / 'ai_service.proto'}")
        sys.path.insert(0, out)
        try:
            return importlib.import_module("ai_service_pb2"), importlib.import_module("ai_service_pb2_grpc")
        finally:
            sys.path.remove(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="127.0.0.1:50051")
    ap.add_argument("--model", default="gpt-4.1")
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--ca", help="PEM CA bundle for --tls")
    opts = ap.parse_args()
    pb, pb_grpc = stubs()
    metadata = [("authorization", f"Bearer {os.environ.get('AIGW_KEY', 'sk-aigw-dev')}")]
    if opts.tls:
        ca = Path(opts.ca).read_bytes() if opts.ca else None
        channel = grpc.secure_channel(opts.target, grpc.ssl_channel_credentials(root_certificates=ca))
    else:
        channel = grpc.insecure_channel(opts.target)
    stub = pb_grpc.AIServiceStub(channel)
    messages = [pb.Message(role="user", content="Say hello in one short sentence.")]
    config = pb.GenerationConfig(max_tokens=16)
    try:
        resp = stub.Generate(pb.GenerateRequest(model=opts.model, messages=messages, config=config),
                             metadata=metadata, timeout=30)
        print(f"Generate: {resp.content!r} ({resp.finish_reason}, {resp.usage.total_tokens} tokens)")

        chunks, text, final = 0, "", None
        for chunk in stub.StreamGenerate(pb.StreamGenerateRequest(model=opts.model, messages=messages, config=config),
                                         metadata=metadata, timeout=30):
            if chunk.is_complete:
                final = chunk
            else:
                chunks, text = chunks + 1, text + chunk.delta
        # A stream that ends without its final chunk did not succeed, whatever the status said.
        if final is None:
            sys.exit("StreamGenerate ended without its final chunk")
        print(f"StreamGenerate: {chunks} chunks, {text!r} ({final.finish_reason}, {final.usage.total_tokens} tokens)")

        interactive(stub, pb, opts.model, metadata)
    except grpc.RpcError as e:
        sys.exit(f"error: {e.code().name}: {e.details()}")
    finally:
        channel.close()


def interactive(stub, pb, model, metadata):
    """A session: the next turn is sent only once the previous one completed."""
    outbox = queue.Queue()
    outbox.put(pb.InteractiveRequest(start=pb.SessionStart(model=model, system_prompt="Be brief.",
                                                           config=pb.GenerationConfig(max_tokens=16))))
    turns = ["Hello!", "And again?"]
    outbox.put(pb.InteractiveRequest(turn=pb.UserTurn(content=turns.pop(0))))

    def requests():
        while (msg := outbox.get()) is not None:
            yield msg

    answers = {}
    for msg in stub.InteractiveStream(requests(), metadata=metadata, timeout=30):
        event = msg.WhichOneof("event")
        if event == "started":
            print(f"InteractiveStream: session started on {msg.started.model}")
        elif event == "delta":
            answers[msg.turn] = answers.get(msg.turn, "") + msg.delta.delta
        elif event == "complete":
            print(f"InteractiveStream: turn {msg.turn} complete: {answers.get(msg.turn, '')!r}")
            outbox.put(pb.InteractiveRequest(turn=pb.UserTurn(content=turns.pop(0))) if turns else None)
        elif event == "error":
            outbox.put(None)
            sys.exit(f"error: turn {msg.turn} failed: {msg.error.message}")


if __name__ == "__main__":
    main()
