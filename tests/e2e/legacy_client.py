"""A client that knows only the original contract (DESIGN section 1). Run as: legacy_client.py ADDR STUB_DIR"""

import sys

import grpc

addr, stub_dir = sys.argv[1], sys.argv[2]
sys.path.insert(0, stub_dir)
import legacy_ai_service_pb2 as pb  # noqa: E402
import legacy_ai_service_pb2_grpc as rpc  # noqa: E402

META = [("authorization", "Bearer sk-aigw-dev")]

with grpc.insecure_channel(addr) as ch:
    stub = rpc.AIServiceStub(ch)
    msgs = [pb.Message(role="system", content="be brief"), pb.Message(role="user", content="hi")]
    cfg = pb.GenerationConfig(temperature=0.7, max_tokens=64, top_p=0.9)
    resp = stub.Generate(pb.GenerateRequest(model="gpt-4.1", messages=msgs, config=cfg), metadata=META, timeout=30)
    assert resp.content.startswith('Reply 1 to "hi".'), resp.content
    assert resp.model == "gpt-4.1" and resp.usage.total_tokens > 0, resp
    chunks = list(stub.StreamGenerate(pb.StreamGenerateRequest(model="claude-sonnet-4-5", messages=msgs),
                                      metadata=META, timeout=30))
    assert chunks[-1].is_complete, chunks[-1]
    assert chunks[-1].usage.completion_tokens == len(chunks) - 1, chunks[-1]
print("legacy client ok")
