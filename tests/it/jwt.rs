//! Callers with an identity provider's token (`[[auth.jwt]]`): a local issuer publishes its keys (made at test
//! time) as a JWKS document on loopback, and the gateway reads them from there.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use serde_json::{json, Value};
use tonic::Code;

use crate::common::{
    redis::Redis,
    signer::Signer,
    upstream::{Reply, Upstream},
    *,
};

const ISSUER: &str = "https://id.example.test/";

/// The issuer's key-set endpoint: each read gets the next document, the last one repeats.
async fn issuer(documents: &[&[&Value]]) -> Upstream {
    let script = documents
        .iter()
        .map(|keys| Reply::json(200, &json!({ "keys": keys }).to_string()))
        .collect();
    Upstream::start(script).await
}

/// A gateway trusting the issuer at `jwks`, with `extra` lines in its `[[auth.jwt]]` table.
async fn gateway(jwks: &Upstream, extra: &str) -> Gateway {
    Gateway::start(config(&config_text(jwks, "", extra))).await
}

/// Its config, with `top` (tables) at the top.
fn config_text(jwks: &Upstream, top: &str, extra: &str) -> String {
    format!(
        r#"
        {top}
        [server]
        listen = "127.0.0.1:0"
        [admin]
        listen = "127.0.0.1:0"
        key_env = "TEST_ADMIN_KEY"
        [[groups]]
        name = "team-a"
        limits = {{ rpm = 2 }}
        models = ["big"]
        [[keys]]
        name = "ann"
        env = "TEST_KEY"
        [[auth.jwt]]
        name = "corp"
        issuer = "{ISSUER}"
        jwks_url = "{}/jwks"
        audiences = ["aigw", "api://aigw"]
        min_refresh = "1h"
        refresh = "1h"
        {extra}
        [[upstreams]]
        name = "mock"
        kind = "mock"
        first_token_latency = "0s"
        tokens_per_second = 100000
        [[models]]
        name = "big"
        max_output_tokens = 100
        routes = [{{ upstream = "mock", model = "big" }}]
        [[models]]
        name = "small"
        max_output_tokens = 100
        routes = [{{ upstream = "mock", model = "small" }}]
        "#,
        jwks.base_url()
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(sub: &str) -> Value {
    json!({"iss": ISSUER, "aud": ["api://aigw"], "sub": sub, "iat": now(), "exp": now() + 3600})
}

async fn call(gw: &Gateway, token: &str, model: &str) -> Result<String, tonic::Status> {
    let resp = gw
        .client()
        .await
        .generate(authed(generate(model, "hi"), token))
        .await?;
    Ok(resp.into_inner().content)
}

#[tokio::test]
async fn a_token_calls_every_door_as_the_caller_its_claim_names() {
    let key = Signer::es256();
    let jwks = issuer(&[&[&key.jwk("k1")]]).await;
    let gw = gateway(&jwks, "").await;
    let token = key.token(json!({"alg": "ES256", "kid": "k1"}), claims("alice"));
    assert!(!call(&gw, &token, "big").await.unwrap().is_empty());
    let chat = json!({"model": "big", "messages": [{"role": "user", "content": "hi"}]});
    let (status, body) = post_json(&gw, "/v1/chat/completions", &token, &chat).await;
    assert_eq!(status, 200, "{body}");
    let messages =
        json!({"model": "big", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let (status, body) = post_json(&gw, "/v1/messages", &token, &messages).await;
    assert_eq!(status, 200, "{body}");
    // Booked as the caller the token names, under its issuer's name; the key set was read once.
    let (_, usage) = admin_get(&gw, "/v1/usage", Some(ADMIN_KEY)).await;
    let usage: Value = serde_json::from_str(&usage).unwrap();
    assert_eq!(
        usage["keys"]["corp:alice"]["today"]["requests"], 3,
        "{usage}"
    );
    assert_eq!(jwks.calls(), 1);
    // API keys work beside the tokens.
    call(&gw, KEY, "big").await.unwrap();
}

#[tokio::test]
async fn every_kind_of_bad_token_is_refused_with_unauthenticated_and_says_why() {
    let (key, stranger, rsa) = (Signer::es256(), Signer::es256(), Signer::rsa());
    let jwks = issuer(&[&[&key.jwk("k1"), &rsa.jwk("r1")]]).await;
    let gw = gateway(&jwks, "").await;
    let es = json!({"alg": "ES256", "kid": "k1"});
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims("alice");
        f(&mut c);
        key.token(es.clone(), c)
    };
    let unsigned = |alg: &str| {
        let head = B64.encode(json!({"alg": alg, "kid": "k1"}).to_string());
        format!("{head}.{}.", B64.encode(claims("alice").to_string()))
    };
    // HS256 with the published RSA key's bytes as the secret: the classic algorithm confusion.
    let confused = {
        let head = B64.encode(json!({"alg": "HS256", "kid": "r1"}).to_string());
        let signed = format!("{head}.{}", B64.encode(claims("alice").to_string()));
        let secret = rsa.jwk("r1")["n"].as_str().unwrap().to_owned();
        let mac = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes()),
            signed.as_bytes(),
        );
        format!("{signed}.{}", B64.encode(mac.as_ref()))
    };
    let tampered = {
        let good = with(&|_| {});
        let parts: Vec<&str> = good.split('.').collect();
        format!(
            "{}.{}.{}",
            parts[0],
            B64.encode(claims("root").to_string()),
            parts[2]
        )
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("alg none", unsigned("none"), "alg 'none'"),
        ("HS256 with the public key", confused, "HMAC-signed tokens"),
        (
            "signed by a key the issuer does not publish",
            stranger.token(es.clone(), claims("alice")),
            "signature does not verify",
        ),
        ("a changed claim", tampered, "signature does not verify"),
        (
            "an unknown kid",
            key.token(json!({"alg": "ES256", "kid": "k9"}), claims("alice")),
            "unknown 'kid'",
        ),
        (
            "expired",
            with(&|c| c["exp"] = json!(now() - 120)),
            "has expired",
        ),
        (
            "not valid yet",
            with(&|c| c["nbf"] = json!(now() + 600)),
            "not valid yet",
        ),
        (
            "another audience",
            with(&|c| c["aud"] = json!("someone-else")),
            "audience",
        ),
        (
            "no audience",
            with(&|c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
            "audience",
        ),
        (
            "another issuer",
            with(&|c| c["iss"] = json!("https://evil.test/")),
            "issuer is not trusted",
        ),
        (
            "no expiry",
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            "no expiry",
        ),
        (
            "no subject",
            with(&|c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
            "does not name its caller",
        ),
        (
            "oversized",
            with(&|c| c["pad"] = json!("x".repeat(9000))),
            "too long",
        ),
        (
            "not a JWT",
            "eyJhbGciOiJFUzI1NiJ9.bm9wZQ.c2ln".into(),
            "not a JSON object",
        ),
    ];
    for (case, token, says) in &cases {
        let refused = call(&gw, token, "big").await.unwrap_err();
        assert_status(&refused, Code::Unauthenticated, says);
        assert!(
            !refused.message().contains(token.as_str()),
            "{case}: echoes the token"
        );
        // The REST doors refuse it the same way, as HTTP 401.
        let chat = json!({"model": "big", "messages": [{"role": "user", "content": "hi"}]});
        let (status, body) = post_json(&gw, "/v1/chat/completions", token, &chat).await;
        assert_eq!(status, 401, "{case}: {body}");
        assert!(body.contains(says), "{case}: {body}");
    }
    // The unknown kid asked for one read of the keys, no more (min_refresh is an hour).
    assert_eq!(jwks.calls(), 2);
}

#[tokio::test]
async fn a_rotated_key_is_read_on_its_first_token_and_a_withdrawn_one_stops_working() {
    let (old, new) = (Signer::rsa(), Signer::es256());
    let jwks = issuer(&[&[&old.jwk("old")], &[&new.jwk("new")]]).await;
    let gw = gateway(&jwks, "").await;
    let before = old.token(json!({"alg": "RS256", "kid": "old"}), claims("alice"));
    call(&gw, &before, "big").await.unwrap();
    call(&gw, &before, "big").await.unwrap();
    assert_eq!(jwks.calls(), 1);
    // The issuer now signs with a new key: the first call that brings it waits for the keys to be read.
    let after = new.token(json!({"alg": "ES256", "kid": "new"}), claims("alice"));
    call(&gw, &after, "big").await.unwrap();
    assert_eq!(jwks.calls(), 2);
    // The old key is gone from the set: a token remembered as verified is checked again, and refused.
    let refused = call(&gw, &before, "big").await.unwrap_err();
    assert_status(&refused, Code::Unauthenticated, "unknown 'kid'");
    // ... without another read: one a call asks for comes at most once per min_refresh.
    let random = new.token(json!({"alg": "ES256", "kid": "k-random"}), claims("eve"));
    for _ in 0..20 {
        call(&gw, &random, "big").await.unwrap_err();
    }
    assert_eq!(jwks.calls(), 2);
}

#[tokio::test]
async fn each_caller_has_the_issuers_limits_and_allow_list_on_their_own() {
    let key = Signer::es256();
    let jwks = issuer(&[&[&key.jwk("k1")]]).await;
    let gw = gateway(&jwks, "limits = { rpm = 1 }\n        models = [\"big\"]").await;
    let token = |sub: &str| key.token(json!({"alg": "ES256", "kid": "k1"}), claims(sub));
    call(&gw, &token("alice"), "big").await.unwrap();
    let refused = call(&gw, &token("alice"), "big").await.unwrap_err();
    assert_status(
        &refused,
        Code::ResourceExhausted,
        "caller 'corp:alice': 1 requests per minute",
    );
    // Another caller of the same issuer has a window of their own.
    call(&gw, &token("bob"), "big").await.unwrap();
    let denied = call(&gw, &token("carol"), "small").await.unwrap_err();
    assert_status(
        &denied,
        Code::PermissionDenied,
        "'corp:carol' may not use model 'small'",
    );
}

#[tokio::test]
async fn the_group_claim_puts_callers_in_a_team_that_shares_its_limits() {
    let key = Signer::es256();
    let jwks = issuer(&[&[&key.jwk("k1")]]).await;
    let gw = gateway(&jwks, "group_claim = \"team\"").await;
    let token = |sub: &str, team: &str| {
        let mut c = claims(sub);
        c["team"] = json!(team);
        key.token(json!({"alg": "ES256", "kid": "k1"}), c)
    };
    call(&gw, &token("alice", "team-a"), "big").await.unwrap();
    call(&gw, &token("bob", "team-a"), "big").await.unwrap();
    let refused = call(&gw, &token("alice", "team-a"), "big")
        .await
        .unwrap_err();
    assert_status(
        &refused,
        Code::ResourceExhausted,
        "group 'team-a': 2 requests per minute",
    );
    // The team's allow-list holds for its callers too.
    let denied = call(&gw, &token("bob", "team-a"), "small")
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let unknown = call(&gw, &token("dan", "team-z"), "big").await.unwrap_err();
    assert_status(&unknown, Code::Unauthenticated, "group names no group");
    // No claim: no group.
    let c = claims("erin");
    call(
        &gw,
        &key.token(json!({"alg": "ES256", "kid": "k1"}), c),
        "big",
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn an_issuer_whose_keys_cannot_be_read_refuses_its_tokens_and_the_keys_still_work() {
    let jwks = Upstream::start(vec![Reply::json(500, "{}")]).await;
    let gw = gateway(&jwks, "").await;
    let token = Signer::es256().token(json!({"alg": "ES256", "kid": "k1"}), claims("alice"));
    let refused = call(&gw, &token, "big").await.unwrap_err();
    assert_status(
        &refused,
        Code::Unauthenticated,
        "no signing keys the gateway could read",
    );
    call(&gw, KEY, "big").await.unwrap();
}

#[tokio::test]
async fn a_session_of_interactive_turns_runs_on_a_token() {
    let key = Signer::ed25519();
    let jwks = issuer(&[&[&key.jwk("ed")]]).await;
    let gw = gateway(&jwks, "").await;
    let token = key.token(json!({"alg": "EdDSA", "kid": "ed"}), claims("alice"));
    let answers = session_turns_as(&gw, &token, "big", &["one", "two"]).await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_limit_holds_across_three_replicas_sharing_redis() {
    let redis = Redis::start();
    let key = Signer::es256();
    let jwks = issuer(&[&[&key.jwk("k1")]]).await;
    let shared = format!(
        "[shared]\nredis_url = \"{}\"\ntimeout = \"5s\"",
        redis.url()
    );
    let text = config_text(&jwks, &shared, "limits = { rpm = 4 }");
    let fleet = replicas(&text, 3).await;
    let token = key.token(json!({"alg": "ES256", "kid": "k1"}), claims("alice"));
    let mut admitted = 0;
    for i in 0..12 {
        match call(&fleet[i % 3], &token, "big").await {
            Ok(_) => admitted += 1,
            Err(refused) => assert_status(&refused, Code::ResourceExhausted, "caller 'corp:alice'"),
        }
    }
    assert_eq!(
        admitted, 4,
        "the caller's limit is the fleet's, not each replica's"
    );
    // Another caller's window is their own.
    let bob = key.token(json!({"alg": "ES256", "kid": "k1"}), claims("bob"));
    call(&fleet[1], &bob, "big").await.unwrap();
}

#[tokio::test]
async fn a_token_in_x_api_key_on_the_messages_door_brings_a_rotated_key_in_too() {
    let (old, new) = (Signer::es256(), Signer::es256());
    let jwks = issuer(&[&[&old.jwk("old")], &[&new.jwk("new")]]).await;
    let gw = gateway(&jwks, "").await;
    let token = new.token(json!({"alg": "ES256", "kid": "new"}), claims("alice"));
    let body =
        json!({"model": "big", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let resp = http()
        .post(format!("http://{}/v1/messages", gw.addr))
        .header("x-api-key", &token)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    assert_eq!(jwks.calls(), 2);
}

#[tokio::test]
async fn one_gateway_trusts_several_issuers_each_with_its_own_keys() {
    let (corp, partner) = (Signer::es256(), Signer::ed25519());
    let corp_jwks = issuer(&[&[&corp.jwk("c1")]]).await;
    let partner_jwks = issuer(&[&[&partner.jwk("p1")]]).await;
    let second = format!(
        "\n        [[auth.jwt]]\n        name = \"partner\"\n        issuer = \"https://partner.test\"\n        jwks_url = \"{}/jwks\"\n        audiences = [\"aigw\"]\n        limits = {{ rpm = 1 }}",
        partner_jwks.base_url()
    );
    let gw = gateway(&corp_jwks, &second).await;
    let partner_claims = |sub: &str| json!({"iss": "https://partner.test", "aud": "aigw", "sub": sub, "exp": now() + 600});
    let theirs = partner.token(
        json!({"alg": "EdDSA", "kid": "p1"}),
        partner_claims("alice"),
    );
    call(&gw, &theirs, "big").await.unwrap();
    // The partner's callers are its own (named for it, with its limits), apart from the corp's Alice.
    let refused = call(&gw, &theirs, "big").await.unwrap_err();
    assert_status(&refused, Code::ResourceExhausted, "caller 'partner:alice'");
    let ours = corp.token(json!({"alg": "ES256", "kid": "c1"}), claims("alice"));
    call(&gw, &ours, "big").await.unwrap();
    // A token that says it is the partner's but is signed with the corp's key is checked with the partner's.
    let forged = corp.token(
        json!({"alg": "ES256", "kid": "c1"}),
        partner_claims("mallory"),
    );
    let refused = call(&gw, &forged, "big").await.unwrap_err();
    assert_status(
        &refused,
        Code::Unauthenticated,
        "key its issuer does not publish",
    );
}

#[tokio::test]
async fn a_reload_that_changes_a_team_holds_for_tokens_already_verified() {
    let key = Signer::es256();
    let jwks = issuer(&[&[&key.jwk("k1")]]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let text = config_text(&jwks, "", "group_claim = \"team\"");
    let wider = text.replace("models = [\"big\"]", "models = [\"big\", \"small\"]");
    std::fs::write(&path, &wider).unwrap();
    let gw = Gateway::start_from_file(&path).await;
    let mut c = claims("alice");
    c["team"] = json!("team-a");
    let token = key.token(json!({"alg": "ES256", "kid": "k1"}), c);
    call(&gw, &token, "small").await.unwrap();
    // The team may no longer use "small": the token verified before is checked against the new team.
    std::fs::write(&path, &text).unwrap();
    let reloaded = http()
        .post(format!("http://{}/v1/reload", gw.admin))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(reloaded.status(), 200);
    let denied = call(&gw, &token, "small").await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
}
