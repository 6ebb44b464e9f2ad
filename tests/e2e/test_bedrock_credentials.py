"""Amazon Bedrock through the built binary, with the standard AWS credential chain as users run it: keys in the
environment, a named profile in the shared credentials file, and a web identity exchanged at a scripted STS.
The scripted Bedrock verifies each request's SigV4 signature with botocore (AWS's own Python signer, not the
gateway's library), as Bedrock would, and answers Converse."""

import http.server
import json
import os
import signal
import threading
from urllib.parse import parse_qs

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import rest_chat, serve_upstream, spawn_gateway

KEY = "sk-bedrock-e2e"
REGION = "us-east-1"
MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0"
# Each way the chain finds credentials, and the secret Bedrock knows for its key id.
SECRETS = {
    "AKIDENVIRONMENT01": "env/secret+0123456789",
    "AKIDPROFILE000001": "profile/secret+0123456789",
    "ASIAWEBIDENTITY01": "web/identity+secret0123456789",
}
WEB_TOKEN = "eyJhbGciOiJSUzI1NiJ9.e2e-web-identity.sig"


def verify(handler, body):
    """Why the request's signature does not verify, or None: botocore signs the request as it arrived (its
    signed headers, path and body) with the secret of the key it names, at its time, and compares."""
    auth = handler.headers.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return "not SigV4"
    fields = dict(kv.split("=", 1) for kv in auth[len("AWS4-HMAC-SHA256 "):].split(", "))
    key_id, date, region, service, _ = fields["Credential"].split("/")
    if (region, service) != (REGION, "bedrock") or key_id not in SECRETS:
        return f"wrong scope or key {fields['Credential']}"
    signed = fields["SignedHeaders"].split(";")
    headers = {name: handler.headers[name] for name in signed}
    url = f"http://{handler.headers['host']}{handler.path}"
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    amz_date = handler.headers["x-amz-date"]
    request.context["timestamp"] = amz_date
    token = handler.headers.get("x-amz-security-token")
    signer = SigV4Auth(Credentials(key_id, SECRETS[key_id], token), "bedrock", REGION)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    return None if expected == fields["Signature"] else "signature mismatch"


class Bedrock(http.server.BaseHTTPRequestHandler):
    """Converse, scripted: a signed request gets a short answer naming the key that signed it."""
    protocol_version = "HTTP/1.1"
    seen = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        why = verify(self, body)
        Bedrock.seen.append((self.path, dict(self.headers), why))
        if why:
            out, status = {"message": f"The request signature we calculated does not match: {why}"}, 403
        else:
            key_id = self.headers["authorization"].split("Credential=")[1].split("/")[0]
            out, status = {"output": {"message": {"role": "assistant", "content": [{"text": f"signed by {key_id}"}]}},
                           "stopReason": "end_turn",
                           "usage": {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7}}, 200
        data = json.dumps(out).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class Sts(http.server.BaseHTTPRequestHandler):
    """AWS STS's AssumeRoleWithWebIdentity, scripted: the token file's token for the role gets temporary keys."""
    protocol_version = "HTTP/1.1"
    seen = []

    def do_POST(self):
        form = parse_qs(self.rfile.read(int(self.headers["content-length"])).decode())
        Sts.seen.append(form)
        ok = (form.get("Action") == ["AssumeRoleWithWebIdentity"] and form.get("WebIdentityToken") == [WEB_TOKEN]
              and form.get("RoleArn") == ["arn:aws:iam::123456789012:role/aigw"])
        if ok:
            status, xml = 200, f"""<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <AccessKeyId>ASIAWEBIDENTITY01</AccessKeyId>
      <SecretAccessKey>{SECRETS["ASIAWEBIDENTITY01"]}</SecretAccessKey>
      <SessionToken>web-session-token</SessionToken>
      <Expiration>2099-01-01T00:00:00Z</Expiration>
    </Credentials>
    <AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/aigw/s</Arn><AssumedRoleId>AROA:s</AssumedRoleId></AssumedRoleUser>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>e2e</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"""
        else:
            status, xml = 403, "<ErrorResponse><Error><Code>AccessDenied</Code><Message>no</Message></Error></ErrorResponse>"
        data = xml.encode()
        self.send_response(status)
        self.send_header("content-type", "text/xml")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def upstreams():
    bedrock, sts = serve_upstream(Bedrock), serve_upstream(Sts)
    yield bedrock.server_address[1], sts.server_address[1]
    bedrock.shutdown()
    sts.shutdown()


def chain_env(tmp_path, **vars):
    """The process environment with no AWS settings of this machine's, no instance metadata, and `vars`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    empty = tmp_path / "empty"
    empty.write_text("")
    env.update({"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": str(empty),
                "AWS_SHARED_CREDENTIALS_FILE": str(empty), "BEDROCK_E2E_KEY": KEY})
    env.update(vars)
    return env


def call_through(tmp_path, port, env):
    config = tmp_path / "config.toml"
    config.write_text(f"""
[server]
listen = "127.0.0.1:0"
[[keys]]
name = "e2e"
env = "BEDROCK_E2E_KEY"
[[upstreams]]
name = "aws"
kind = "bedrock"
base_url = "http://127.0.0.1:{port}"
region = "{REGION}"
[[models]]
name = "claude"
max_output_tokens = 1000
routes = [{{ upstream = "aws", model = "{MODEL}" }}]
""")
    proc, addr, lines = spawn_gateway(config, env)
    try:
        status, body = rest_chat(addr["grpc"], KEY, "claude")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert status == 200, body.decode() + "".join(lines)
    return json.loads(body)["choices"][0]["message"]["content"], lines


def test_keys_in_the_environment_sign_requests(tmp_path, upstreams):
    env = chain_env(tmp_path, AWS_ACCESS_KEY_ID="AKIDENVIRONMENT01",
                    AWS_SECRET_ACCESS_KEY=SECRETS["AKIDENVIRONMENT01"], AWS_SESSION_TOKEN="env-session-token")
    text, lines = call_through(tmp_path, upstreams[0], env)
    assert text == "signed by AKIDENVIRONMENT01"
    path, headers, why = Bedrock.seen[-1]
    assert why is None and path == "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse"
    assert headers["x-amz-security-token"] == "env-session-token"
    assert not any(SECRETS["AKIDENVIRONMENT01"] in line for line in lines)


def test_a_named_profile_signs_requests(tmp_path, upstreams):
    credentials = tmp_path / "credentials"
    credentials.write_text(f"""[default]
aws_access_key_id = AKIDNOTTHISONE000
aws_secret_access_key = wrong
[aigw]
aws_access_key_id = AKIDPROFILE000001
aws_secret_access_key = {SECRETS["AKIDPROFILE000001"]}
""")
    env = chain_env(tmp_path, AWS_SHARED_CREDENTIALS_FILE=str(credentials), AWS_PROFILE="aigw")
    text, _ = call_through(tmp_path, upstreams[0], env)
    assert text == "signed by AKIDPROFILE000001"
    assert Bedrock.seen[-1][2] is None


def test_a_web_identity_is_exchanged_at_sts(tmp_path, upstreams):
    token = tmp_path / "token"
    token.write_text(WEB_TOKEN)
    env = chain_env(tmp_path, AWS_WEB_IDENTITY_TOKEN_FILE=str(token),
                    AWS_ROLE_ARN="arn:aws:iam::123456789012:role/aigw", AWS_ROLE_SESSION_NAME="aigw-e2e",
                    AWS_ENDPOINT_URL_STS=f"http://127.0.0.1:{upstreams[1]}")
    text, _ = call_through(tmp_path, upstreams[0], env)
    assert text == "signed by ASIAWEBIDENTITY01"
    assert Sts.seen and Sts.seen[-1]["WebIdentityToken"] == [WEB_TOKEN]
    path, headers, why = Bedrock.seen[-1]
    assert why is None
    assert headers["x-amz-security-token"] == "web-session-token"
