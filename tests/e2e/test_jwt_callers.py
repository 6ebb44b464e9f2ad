"""Callers with an identity provider's token, as a company's users bring them: an issuer made here with PyJWT and
cryptography (an implementation of JWT independent of the gateway's) mints RS256, PS256, ES256 and EdDSA tokens
with keys generated at test time and publishes them as a JWKS document on loopback; grpcurl, the OpenAI SDK and
the Anthropic SDK call the built binary with them. Each kind of bad token is refused as UNAUTHENTICATED (401)."""

import http.server
import json
import signal
import subprocess
import time

import anthropic
import jwt
import openai
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from conftest import serve_upstream, spawn_gateway

ISSUER = "https://login.example.test/tenant/v2.0"
AUDIENCE = "api://aigw"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()
STRANGER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(algorithm, key, kid):
    out = json.loads(algorithm.to_jwk(key.public_key()))
    out["kid"] = kid
    return out


JWKS = {"keys": [jwk(RSAAlgorithm, RSA_KEY, "rsa-1"), jwk(ECAlgorithm, EC_KEY, "ec-1"),
                 jwk(OKPAlgorithm, ED_KEY, "ed-1"),
                 # An encryption key and a symmetric one, which a key set may hold: never used to verify.
                 {**jwk(RSAAlgorithm, STRANGER, "enc-1"), "use": "enc"},
                 {"kty": "oct", "kid": "hs-1", "k": "c2VjcmV0"}]}


class Jwks(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    reads = 0

    def do_GET(self):
        Jwks.reads += 1
        body = json.dumps(JWKS).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    jwks = serve_upstream(Jwks)
    config = tmp_path_factory.mktemp("jwt") / "aigw.toml"
    config.write_text(f"""
[server]
listen = "127.0.0.1:0"
[[auth.jwt]]
name = "corp"
issuer = "{ISSUER}"
jwks_url = "http://127.0.0.1:{jwks.server_address[1]}/discovery/keys"
audiences = ["{AUDIENCE}"]
tenant_claim = "preferred_username"
limits = {{ rpm = 100 }}
[[upstreams]]
name = "mock"
kind = "mock"
first_token_latency = "0s"
tokens_per_second = 100000
[[models]]
name = "gpt-4.1"
max_output_tokens = 100
routes = [{{ upstream = "mock", model = "gpt-4.1" }}]
""")
    proc, addr, lines = spawn_gateway(config)
    yield addr["grpc"]
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    jwks.shutdown()


def claims(**changes):
    now = int(time.time())
    out = {"iss": ISSUER, "aud": AUDIENCE, "sub": "00u1", "preferred_username": "alice@example.test",
           "iat": now, "nbf": now, "exp": now + 3600}
    out.update(changes)
    return {k: v for k, v in out.items() if v is not None}


def token(alg="RS256", key=RSA_KEY, kid="rsa-1", **changes):
    return jwt.encode(claims(**changes), key, algorithm=alg, headers={"kid": kid})


def grpcurl_generate(grpcurl, addr, bearer):
    req = json.dumps({"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]})
    return subprocess.run([grpcurl, "-plaintext", "-max-time", "30", "-H", f"authorization: Bearer {bearer}",
                           "-d", "@", addr, "holysheepai.AIService/Generate"],
                          input=req, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("alg,key,kid", [("RS256", RSA_KEY, "rsa-1"), ("RS512", RSA_KEY, "rsa-1"),
                                         ("PS256", RSA_KEY, "rsa-1"), ("ES256", EC_KEY, "ec-1"),
                                         ("EdDSA", ED_KEY, "ed-1")])
def test_grpcurl_calls_with_a_token_of_each_algorithm(gateway, grpcurl, alg, key, kid):
    out = grpcurl_generate(grpcurl, gateway, token(alg, key, kid))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["content"].startswith("Reply")


def test_the_sdks_call_with_the_token_as_their_key(gateway):
    bearer = token("ES256", EC_KEY, "ec-1")
    chat = openai.OpenAI(base_url=f"http://{gateway}/v1", api_key=bearer, max_retries=0)
    answer = chat.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content.startswith("Reply")
    # Claude Code's ANTHROPIC_AUTH_TOKEN: the Anthropic SDK sends it as `authorization: Bearer`.
    claude = anthropic.Anthropic(base_url=f"http://{gateway}", auth_token=bearer, max_retries=0)
    message = claude.messages.create(model="gpt-4.1", max_tokens=50,
                                     messages=[{"role": "user", "content": "hi"}])
    assert message.content[0].text.startswith("Reply")


def hs256_with_public_key():
    """HS256 keyed with the published RSA modulus: the algorithm-confusion forgery."""
    import base64
    import hashlib
    import hmac

    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    signed = b64(json.dumps({"alg": "HS256", "kid": "rsa-1"}).encode()) + "." + b64(json.dumps(claims()).encode())
    secret = JWKS["keys"][0]["n"].encode()
    return signed + "." + b64(hmac.new(secret, signed.encode(), hashlib.sha256).digest())


BAD = {
    "alg none": (lambda: jwt.encode(claims(), None, algorithm="none", headers={"kid": "rsa-1"}), "alg 'none'"),
    "HS256 keyed with the public key": (hs256_with_public_key, "HMAC-signed tokens"),
    "a key the issuer does not publish": (lambda: token(key=STRANGER), "signature does not verify"),
    "an encryption key's kid": (lambda: token(key=STRANGER, kid="enc-1"), "unknown 'kid'"),
    "expired": (lambda: token(exp=int(time.time()) - 600, iat=int(time.time()) - 4000,
                              nbf=int(time.time()) - 4000), "has expired"),
    "not valid yet": (lambda: token(nbf=int(time.time()) + 3600), "not valid yet"),
    "another audience": (lambda: token(aud="api://someone-else"), "audience"),
    "another issuer": (lambda: token(iss="https://evil.example.test/"), "issuer is not trusted"),
    "no caller claim": (lambda: token(preferred_username=None), "does not name its caller"),
    "oversized": (lambda: token(padding="x" * 9000), "too long"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_bad_token_is_refused_as_unauthenticated(gateway, grpcurl, case):
    make, says = BAD[case]
    bearer = make()
    out = grpcurl_generate(grpcurl, gateway, bearer)
    assert out.returncode != 0
    assert "Code: Unauthenticated" in out.stderr and says in out.stderr, out.stderr
    chat = openai.OpenAI(base_url=f"http://{gateway}/v1", api_key=bearer, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        chat.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "hi"}])
    assert says in str(refused.value)
