"""The standard OpenTelemetry variables configure trace export of the built binary: with only
OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES set (no [tracing] in the config),
a call's spans reach an OTLP/HTTP receiver at `<endpoint>/v1/traces` under that service name."""

import http.server
import json
import signal
import threading
import urllib.request

from conftest import KEY, ROOT, spawn_gateway


class Receiver(http.server.BaseHTTPRequestHandler):
    bodies = []

    def do_POST(self):
        Receiver.bodies.append((self.path, self.rfile.read(int(self.headers["content-length"]))))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_otel_variables_turn_export_on(tmp_path):
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.server_port}",
           "OTEL_SERVICE_NAME": "aigw-from-env", "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=e2e"}
    proc, addr, lines = spawn_gateway(ROOT / "config.toml", env)
    try:
        req = urllib.request.Request(
            f"http://{addr['grpc']}/v1/chat/completions", method="POST",
            headers={"authorization": f"Bearer {KEY}", "content-type": "application/json",
                     "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
            data=json.dumps({"model": "gpt-4.1", "messages": [{"role": "user", "content": "trace me"}],
                             "max_tokens": 3}).encode())
        with urllib.request.urlopen(req, timeout=60) as resp:
            assert resp.status == 200
    finally:
        # Spans are flushed at shutdown.
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, "".join(lines)
        receiver.shutdown()
    assert Receiver.bodies, "no spans exported"
    assert {path for path, _ in Receiver.bodies} == {"/v1/traces"}
    exported = b"".join(body for _, body in Receiver.bodies)
    for expected in [b"aigw-from-env", b"deployment.environment", b"e2e", b"chat gpt-4.1", b"gen_ai.usage.input_tokens",
                     bytes.fromhex("0af7651916cd43dd8448eb211c80319c")]:
        assert expected in exported, expected
