//! Key groups (teams): limits a group's keys share, on top of each key's own.

use serde_json::json;
use tonic::Code;

use crate::common::*;

fn team(group_limits: &str) -> aigw::config::Config {
    let text = format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [admin]
        listen = "127.0.0.1:0"
        key_env = "TEST_ADMIN_KEY"
        [[groups]]
        name = "team"
        limits = {{ {group_limits} }}
        [[keys]]
        name = "ann"
        env = "TEST_KEY"
        group = "team"
        [[keys]]
        name = "bob"
        env = "TEST_LIMITED_KEY"
        group = "team"
        [[upstreams]]
        name = "mock"
        kind = "mock"
        first_token_latency = "0s"
        tokens_per_second = 100000
        [[models]]
        name = "big"
        max_output_tokens = 100
        price = {{ input_per_million = 1000000.0, output_per_million = 0.0 }}
        routes = [{{ upstream = "mock", model = "big" }}]
        "#
    );
    config(&text)
}

async fn call(gw: &Gateway, key: &str) -> Result<(), tonic::Status> {
    gw.client()
        .await
        .generate(authed(generate("big", "hi"), key))
        .await
        .map(drop)
}

#[tokio::test]
async fn a_groups_rpm_holds_across_its_keys_and_names_the_group() {
    let gw = Gateway::start(team("rpm = 3")).await;
    call(&gw, KEY).await.unwrap();
    call(&gw, LIMITED_KEY).await.unwrap();
    call(&gw, KEY).await.unwrap();
    let refused = call(&gw, LIMITED_KEY).await.unwrap_err();
    assert_status(
        &refused,
        Code::ResourceExhausted,
        "group 'team': 3 requests per minute",
    );
    // Listed with its keys.
    let (_, body) = admin_get(&gw, "/v1/keys/ann", Some(ADMIN_KEY)).await;
    assert!(body.contains("\"group\":\"team\""), "{body}");
}

#[tokio::test]
async fn a_groups_budget_is_spent_by_all_its_keys() {
    // $1 per prompt token: each call spends $5 (4 per message + 1); the group's daily budget is $8.
    let gw = Gateway::start(team("daily_budget_usd = 8.0")).await;
    call(&gw, KEY).await.unwrap();
    call(&gw, LIMITED_KEY).await.unwrap();
    let refused = call(&gw, KEY).await.unwrap_err();
    assert_status(
        &refused,
        Code::ResourceExhausted,
        "group 'team': daily budget of $8.00 spent",
    );
}

#[tokio::test]
async fn keys_made_through_the_api_may_join_a_configured_group() {
    let gw = Gateway::start(team("rpm = 2")).await;
    let made = |body: serde_json::Value| {
        http()
            .post(format!("http://{}/v1/keys", gw.admin))
            .bearer_auth(ADMIN_KEY)
            .body(body.to_string())
            .send()
    };
    let unknown = made(json!({"name": "x", "group": "nobody"})).await.unwrap();
    assert_eq!(unknown.status().as_u16(), 400);
    let resp = made(json!({"name": "cat", "group": "team"})).await.unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let secret: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    let secret = secret["key"].as_str().unwrap().to_owned();
    call(&gw, &secret).await.unwrap();
    call(&gw, KEY).await.unwrap();
    let refused = call(&gw, &secret).await.unwrap_err();
    assert_status(&refused, Code::ResourceExhausted, "group 'team'");
}

/// A call the key refuses after its group admitted it gives the group's token reservation back: a key whose
/// own tokens-per-minute can never fit the call does not eat its team's minute.
#[tokio::test]
async fn a_key_refusal_gives_the_groups_reservation_back() {
    // A call reserves its prompt estimate and the model's 100 output tokens: one fits the group's 150.
    let gw = Gateway::start(team("tpm = 150")).await;
    let made = http()
        .post(format!("http://{}/v1/keys", gw.admin))
        .bearer_auth(ADMIN_KEY)
        .body(json!({"name": "tiny", "group": "team", "limits": {"tpm": 50}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(made.status().as_u16(), 201);
    let made: serde_json::Value = serde_json::from_str(&made.text().await.unwrap()).unwrap();
    let tiny = made["key"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        let refused = call(&gw, &tiny).await.unwrap_err();
        assert_status(
            &refused,
            Code::ResourceExhausted,
            "more than the key's 50 per minute",
        );
    }
    call(&gw, KEY)
        .await
        .expect("the group's minute is whole: the refused calls gave their reservations back");
}

#[test]
fn a_key_must_name_a_configured_group() {
    let err = aigw::config::Config::parse(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [[keys]]
        name = "k"
        sha256 = "2f0527c3d35a1f337ec6033b75e33c053e72e7122963d86dffe7c2f10bcbb482"
        group = "ghosts"
        "#,
        env,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("keys[0].group: no group named 'ghosts'"),
        "{err}"
    );
}
