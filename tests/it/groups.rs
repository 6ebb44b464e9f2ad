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

/// An organisation over two teams: a call must fit the key's team and the organisation, whose limits all the
/// teams' keys share — and a call one level refuses leaves no trace in the others' windows; the usage API books
/// each call in the team and in the organisation.
#[tokio::test]
async fn an_organisations_limits_hold_across_its_teams_and_usage_is_booked_at_each_level() {
    let text = r#"
        [server]
        listen = "127.0.0.1:0"
        [admin]
        listen = "127.0.0.1:0"
        key_env = "TEST_ADMIN_KEY"
        [[groups]]
        name = "acme"
        limits = { rpm = 3 }
        [[groups]]
        name = "ml"
        parent = "acme"
        model_limits = { big = { rpm = 2 } }
        [[groups]]
        name = "web"
        parent = "acme"
        [[keys]]
        name = "ann"
        env = "TEST_KEY"
        group = "ml"
        [[keys]]
        name = "bob"
        env = "TEST_LIMITED_KEY"
        group = "web"
        [[upstreams]]
        name = "mock"
        kind = "mock"
        first_token_latency = "0s"
        tokens_per_second = 100000
        [[models]]
        name = "big"
        max_output_tokens = 100
        routes = [{ upstream = "mock", model = "big" }]
        "#;
    let gw = Gateway::start(config(text)).await;
    call(&gw, KEY).await.unwrap();
    call(&gw, KEY).await.unwrap();
    // The team's limit on the model refuses Ann's third; the organisation still has room for Bob.
    let team = call(&gw, KEY).await.unwrap_err();
    assert_status(
        &team,
        Code::ResourceExhausted,
        "group 'ml' on model 'big': 2 requests per minute",
    );
    call(&gw, LIMITED_KEY).await.unwrap();
    let org = call(&gw, LIMITED_KEY).await.unwrap_err();
    assert_status(
        &org,
        Code::ResourceExhausted,
        "group 'acme': 3 requests per minute",
    );
    let (_, usage) = admin_get(&gw, "/v1/usage", Some(ADMIN_KEY)).await;
    let usage: serde_json::Value = serde_json::from_str(&usage).unwrap();
    // (as for keys, the book counts every call that reached a model, the refused ones too)
    let requests = |g: &str| usage["groups"][g]["today"]["requests"].clone();
    assert_eq!(
        (requests("ml"), requests("web"), requests("acme")),
        (json!(3), json!(2), json!(5)),
        "{usage}"
    );
    assert_eq!(usage["keys"]["ann"]["today"]["requests"], 3, "{usage}");
    assert_eq!(usage["groups"]["acme"]["limits"]["rpm"], 3, "{usage}");
}

#[test]
fn groups_nest_without_a_circle_and_not_too_deep() {
    let groups = |g: &str| {
        format!("[server]\nlisten = \"127.0.0.1:0\"\n{g}\n[[upstreams]]\nname = \"mock\"\nkind = \"mock\"\n")
    };
    let parse = |text: String| {
        aigw::config::Config::parse(&text, env)
            .map(drop)
            .map_err(|e| e.0)
    };
    let ok = "[[groups]]\nname = \"a\"\n[[groups]]\nname = \"b\"\nparent = \"a\"";
    assert!(parse(groups(ok)).is_ok());
    for (text, says) in [
        ("[[groups]]\nname = \"a\"\nparent = \"x\"", "no group named 'x'"),
        ("[[groups]]\nname = \"a\"\nparent = \"a\"", "without a circle"),
        ("[[groups]]\nname = \"a\"\nparent = \"b\"\n[[groups]]\nname = \"b\"\nparent = \"a\"", "without a circle"),
        (
            "[[groups]]\nname = \"a\"\n[[groups]]\nname = \"b\"\nparent = \"a\"\n[[groups]]\nname = \"c\"\nparent = \"b\"\n[[groups]]\nname = \"d\"\nparent = \"c\"\n[[groups]]\nname = \"e\"\nparent = \"d\"",
            "at most 4 deep",
        ),
    ] {
        let e = parse(groups(text)).unwrap_err();
        assert!(e.contains(says), "{text}: {e}");
    }
}

/// Allow-lists at each level: a key may use only the models its own list, its team's and its organisation's
/// all allow.
#[tokio::test]
async fn a_key_may_use_only_the_models_every_level_allows() {
    let text = r#"
        [server]
        listen = "127.0.0.1:0"
        [[groups]]
        name = "acme"
        models = ["big", "small"]
        [[groups]]
        name = "ml"
        parent = "acme"
        models = ["big", "huge"]
        [[keys]]
        name = "ann"
        env = "TEST_KEY"
        group = "ml"
        [[keys]]
        name = "bob"
        env = "TEST_LIMITED_KEY"
        group = "acme"
        [[upstreams]]
        name = "mock"
        kind = "mock"
        first_token_latency = "0s"
        tokens_per_second = 100000
        [[models]]
        name = "big"
        max_output_tokens = 100
        routes = [{ upstream = "mock", model = "big" }]
        [[models]]
        name = "small"
        max_output_tokens = 100
        routes = [{ upstream = "mock", model = "small" }]
        [[models]]
        name = "huge"
        max_output_tokens = 100
        routes = [{ upstream = "mock", model = "huge" }]
        "#;
    let gw = Gateway::start(config(text)).await;
    let on = |key: &'static str, model: &'static str| {
        let gw = &gw;
        async move {
            gw.client()
                .await
                .generate(authed(generate(model, "hi"), key))
                .await
                .map(drop)
                .map_err(|s| s.code())
        }
    };
    // Ann's team allows big and huge, its organisation big and small: big only.
    assert_eq!(on(KEY, "big").await, Ok(()));
    assert_eq!(on(KEY, "small").await, Err(Code::PermissionDenied));
    assert_eq!(on(KEY, "huge").await, Err(Code::PermissionDenied));
    // Bob is in the organisation itself.
    assert_eq!(on(LIMITED_KEY, "small").await, Ok(()));
    assert_eq!(on(LIMITED_KEY, "huge").await, Err(Code::PermissionDenied));
}
