//! Upstreams of kind "vertex": Gemini on Vertex AI, signed in with OAuth2. A scripted token endpoint checks
//! what Google's checks — the service account's JWT, its RS256 signature verified against the account's public
//! key, its issuer, audience, scope and lifetime — and the scripted Vertex API takes only its access token.
//! The key in `fixtures/google-service-account.pem` is a throwaway made for these tests.

use crate::common::{gemini, upstream::*, *};
use aigw::proto::EmbedRequest;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use serde_json::{json, Value};

const PRIVATE_KEY: &str = include_str!("fixtures/google-service-account.pem");
/// The same key's public half (PKCS#1 DER), which verifies the assertions.
const PUBLIC_KEY: &[u8] = include_bytes!("fixtures/google-service-account.pub.der");
const ACCOUNT: &str = "aigw-test@proj-1.iam.gserviceaccount.com";

/// The JSON key file Google issues for a service account, its token endpoint the scripted one.
fn key_file(token_uri: &str, email: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    let key = json!({"type": "service_account", "project_id": "proj-1", "private_key_id": "kid-1",
        "private_key": PRIVATE_KEY, "client_email": email, "client_id": "1",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": token_uri});
    std::fs::write(file.path(), key.to_string()).unwrap();
    file
}

fn token(access: &str, expires_in: u64) -> Reply {
    Reply::json(
        200,
        &json!({"access_token": access, "expires_in": expires_in, "token_type": "Bearer"})
            .to_string(),
    )
}

fn refuse(why: &str) -> Option<Reply> {
    Some(Reply::json(
        400,
        &json!({"error": "invalid_grant", "error_description": why}).to_string(),
    ))
}

/// Google's token endpoint: a JWT-bearer grant whose assertion is signed by the account's key.
fn check_assertion(req: &Recorded) -> Option<Reply> {
    let form = String::from_utf8_lossy(&req.raw_body).into_owned();
    let field = |name: &str| {
        form.split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .map(str::to_owned)
    };
    if req.path != "/token"
        || req.header("content-type") != Some("application/x-www-form-urlencoded")
    {
        return refuse("not a token request");
    }
    if field("grant_type").as_deref()
        != Some("urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer")
    {
        return refuse("unsupported grant type");
    }
    let assertion = field("assertion").unwrap_or_default();
    let parts: Vec<&str> = assertion.split('.').collect();
    if parts.len() != 3 {
        return refuse("not a JWT");
    }
    let decode = |p: &str| URL_SAFE_NO_PAD.decode(p).unwrap_or_default();
    let signed = format!("{}.{}", parts[0], parts[1]);
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        PUBLIC_KEY,
    );
    if key.verify(signed.as_bytes(), &decode(parts[2])).is_err() {
        return refuse("Invalid JWT Signature.");
    }
    let header: Value = serde_json::from_slice(&decode(parts[0])).unwrap_or_default();
    let claims: Value = serde_json::from_slice(&decode(parts[1])).unwrap_or_default();
    let aud = claims["aud"].as_str().unwrap_or_default();
    let lifetime = claims["exp"].as_u64().unwrap_or(0) - claims["iat"].as_u64().unwrap_or(0);
    if header["alg"] != "RS256" || header["kid"] != "kid-1" {
        return refuse("bad JWT header");
    }
    if claims["iss"] != ACCOUNT
        || !(aud.starts_with("http://127.0.0.1:") && aud.ends_with("/token"))
        || claims["scope"] != "https://www.googleapis.com/auth/cloud-platform"
        || lifetime == 0
        || lifetime > 3600
    {
        return refuse("Invalid JWT: claims");
    }
    None
}

fn vertex_config(api: &Upstream, credentials: &str) -> String {
    format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [[keys]]
        name = "tester"
        env = "TEST_KEY"
        [[upstreams]]
        name = "vertex"
        kind = "vertex"
        base_url = "http://{}/v1"
        project = "proj-1"
        location = "us-central1"
        {credentials}
        [[models]]
        name = "big"
        max_output_tokens = 8000
        routes = [{{ upstream = "vertex", model = "gemini-2.5-pro" }}]
        [models.policy]
        retry = {{ attempts = 1 }}
        [[models]]
        name = "emb"
        kind = "embedding"
        routes = [{{ upstream = "vertex", model = "gemini-embedding-001" }}]
        "#,
        api.addr
    )
}

fn answer(text: &str) -> Reply {
    Reply::json(
        200,
        &json!({"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2}})
        .to_string(),
    )
}

/// A service account's token is fetched once and used for every call while it is fresh; a token with less
/// than five minutes left is fetched anew on the next call.
#[tokio::test]
async fn a_service_account_signs_in_and_its_token_is_kept() {
    for (expires_in, fetches) in [(3599, 1), (120, 3)] {
        let tokens = Upstream::start_checked(
            vec![
                token("ya29.first", expires_in),
                token("ya29.second", expires_in),
            ],
            Some(check_assertion),
        )
        .await;
        let api = Upstream::start_checked(vec![answer("Hi.")], Some(gemini::check_vertex)).await;
        let file = key_file(&format!("http://{}/token", tokens.addr), ACCOUNT);
        let credentials = format!("credentials_file = \"{}\"", file.path().display());
        let gw = Gateway::start(config(&vertex_config(&api, &credentials))).await;
        let mut client = gw.client().await;
        for _ in 0..3 {
            let r = client
                .generate(authed(generate("big", "hi"), KEY))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(r.content, "Hi.");
        }
        assert_eq!(tokens.calls(), fetches, "expires_in {expires_in}");
        let sent = api.requests();
        assert_eq!(
            sent[0].path,
            format!("{}gemini-2.5-pro:generateContent", gemini::VERTEX_MODELS)
        );
        assert_eq!(sent[0].header("authorization"), Some("Bearer ya29.first"));
        let last = if fetches == 1 {
            "Bearer ya29.first"
        } else {
            "Bearer ya29.second"
        };
        assert_eq!(sent[2].header("authorization"), Some(last));
    }
}

/// A refused sign-in is the upstream's failure, said without the assertion or any token; the call never
/// reaches the API.
#[tokio::test]
async fn a_refused_sign_in_fails_the_call_as_unavailable() {
    let tokens =
        Upstream::start_checked(vec![token("ya29.never", 3599)], Some(check_assertion)).await;
    let api = Upstream::start_checked(vec![answer("Hi.")], Some(gemini::check_vertex)).await;
    let file = key_file(
        &format!("http://{}/token", tokens.addr),
        "someone-else@proj-1.iam.gserviceaccount.com",
    );
    let credentials = format!("credentials_file = \"{}\"", file.path().display());
    let gw = Gateway::start(config(&vertex_config(&api, &credentials))).await;
    let status = gw
        .client()
        .await
        .generate(authed(generate("big", "hi"), KEY))
        .await
        .unwrap_err();
    assert_status(&status, tonic::Code::Unavailable, "invalid_grant");
    assert!(!status.message().contains("eyJ"), "{status:?}");
    assert_eq!(api.calls(), 0);
}

/// Without a key file the machine's metadata server gives the token (`GCE_METADATA_HOST` names it); streams,
/// `:predict` embeddings and `countTokens` go with it.
#[tokio::test]
async fn the_metadata_server_gives_tokens_for_streams_and_embeddings() {
    fn metadata(req: &Recorded) -> Option<Reply> {
        let ok = req.method == "GET"
            && req.path == "/computeMetadata/v1/instance/service-accounts/default/token"
            && req.header("metadata-flavor") == Some("Google");
        (!ok).then(|| Reply::json(403, "{}"))
    }
    let server = Upstream::start_checked(vec![token("ya29.metadata", 3599)], Some(metadata)).await;
    let stream = [
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}}]}).to_string(),
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "lo."}]}, "finishReason": "STOP"}],
               "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2}})
        .to_string(),
    ];
    let predictions = json!({"predictions": [
        {"embeddings": {"values": [0.5, 1.0], "statistics": {"token_count": 2.0, "truncated": false}}}]});
    let api = Upstream::start_checked(
        vec![
            Reply::sse(&stream),
            Reply::json(200, &predictions.to_string()),
            Reply::json(200, &json!({"totalTokens": 7}).to_string()),
        ],
        Some(gemini::check_vertex),
    )
    .await;
    let host = server.addr.to_string();
    let cfg = aigw::config::Config::parse(&vertex_config(&api, ""), |var| match var {
        "GCE_METADATA_HOST" => Some(host.clone()),
        other => env(other),
    })
    .unwrap();
    let gw = Gateway::start(cfg).await;
    let mut client = gw.client().await;
    let mut s = client
        .stream_generate(authed(stream_request("big", "hi"), KEY))
        .await
        .unwrap()
        .into_inner();
    let mut text = String::new();
    while let Some(c) = s.message().await.unwrap() {
        text.push_str(&c.delta);
    }
    assert_eq!(text, "Hello.");
    let e = client
        .embed(authed(
            EmbedRequest {
                model: "emb".into(),
                input: vec!["one".into()],
                dimensions: Some(2),
                user: String::new(),
            },
            KEY,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(e.embeddings[0].values, vec![0.5, 1.0]);
    assert_eq!(e.usage.unwrap().prompt_tokens, 2);
    let sent = api.requests();
    assert_eq!(
        sent[1].path,
        format!("{}gemini-embedding-001:predict", gemini::VERTEX_MODELS)
    );
    assert_eq!(
        sent[1].body,
        json!({"instances": [{"content": "one"}], "parameters": {"outputDimensionality": 2}})
    );
    // Vertex AI's countTokens takes the request's parts at the top level.
    let (status, body) = post_json(
        &gw,
        "/v1/messages/count_tokens",
        KEY,
        &json!({"model": "big", "system": "Be brief.", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, r#"{"input_tokens":7}"#));
    let sent = api.requests();
    assert_eq!(
        sent[2].path,
        format!("{}gemini-2.5-pro:countTokens", gemini::VERTEX_MODELS)
    );
    assert_eq!(
        sent[2].body["systemInstruction"]["parts"][0]["text"],
        "Be brief."
    );
    assert!(sent[2].body.get("generateContentRequest").is_none());
    assert!(sent
        .iter()
        .all(|r| r.header("authorization") == Some("Bearer ya29.metadata")));
    assert_eq!(server.calls(), 1);
}
