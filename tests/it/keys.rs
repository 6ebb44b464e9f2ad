//! Keys made, used, listed, rotated and revoked through the admin API, and kept across a restart by the state
//! file.

use serde_json::{json, Value};
use tonic::Code;

use crate::common::{upstream::*, *};

fn with_state(state: &std::path::Path) -> aigw::config::Config {
    let admin = format!(
        "\n[admin]\nlisten = \"127.0.0.1:0\"\nkey_env = \"TEST_ADMIN_KEY\"\nstate_file = \"{}\"\n",
        state.display()
    );
    config(&(mock_config_text("", 100_000) + &admin))
}

async fn admin(
    gw: &Gateway,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http()
        .request(method, format!("http://{}{path}", gw.admin))
        .bearer_auth(ADMIN_KEY);
    if let Some(body) = body {
        req = req.body(body.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A key made through the API with no more than its name: its secret.
async fn make_key(gw: &Gateway, name: &str) -> String {
    let (status, made) = admin(
        gw,
        reqwest::Method::POST,
        "/v1/keys",
        Some(json!({"name": name})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    made["key"].as_str().unwrap().to_owned()
}

async fn call(gw: &Gateway, key: &str) -> Result<(), tonic::Status> {
    gw.client()
        .await
        .generate(authed(generate("big", "hi"), key))
        .await
        .map(|_| ())
}

#[tokio::test]
async fn a_key_made_through_the_api_works_at_once_holds_its_limits_and_can_be_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(with_state(&dir.path().join("state.json"))).await;
    let (status, made) = admin(
        &gw,
        reqwest::Method::POST,
        "/v1/keys",
        Some(json!({"name": "team-a", "limits": {"rpm": 2}, "metadata": {"owner": "ann"}})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let secret = made["key"].as_str().unwrap().to_owned();
    assert_eq!(made["source"], "api");
    assert_eq!(made["limits"]["rpm"], 2);
    call(&gw, &secret).await.unwrap();
    call(&gw, &secret).await.unwrap();
    assert_eq!(
        call(&gw, &secret).await.unwrap_err().code(),
        Code::ResourceExhausted
    );

    // Listed with the config's keys, never with a secret.
    let (status, list) = admin(&gw, reqwest::Method::GET, "/v1/keys", None).await;
    assert_eq!(status, 200);
    let names: Vec<_> = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["name"].clone(), k["source"].clone()))
        .collect();
    assert_eq!(
        names,
        [
            (json!("team-a"), json!("api")),
            (json!("tester"), json!("config"))
        ]
    );
    assert!(!list.to_string().contains(&secret));
    let (_, one) = admin(&gw, reqwest::Method::GET, "/v1/keys/team-a", None).await;
    assert_eq!(one["metadata"]["owner"], "ann");
    assert!(one.get("key").is_none());
    // Its use is in the usage book (the refused third request too: it reached its model's admission).
    let (_, usage) = admin(&gw, reqwest::Method::GET, "/v1/usage", None).await;
    assert_eq!(usage["keys"]["team-a"]["today"]["requests"], 3);

    // Names are unique across the config and the API; a config key cannot be revoked here.
    let (status, _) = admin(
        &gw,
        reqwest::Method::POST,
        "/v1/keys",
        Some(json!({"name": "tester"})),
    )
    .await;
    assert_eq!(status, 409);
    let (status, body) = admin(&gw, reqwest::Method::DELETE, "/v1/keys/tester", None).await;
    assert_eq!(status, 409);
    assert!(
        body["error"].as_str().unwrap().contains("config file"),
        "{body}"
    );
    let (status, _) = admin(
        &gw,
        reqwest::Method::POST,
        "/v1/keys",
        Some(json!({"name": "bad name"})),
    )
    .await;
    assert_eq!(status, 400);

    let (status, _) = admin(&gw, reqwest::Method::DELETE, "/v1/keys/team-a", None).await;
    assert_eq!(status, 200);
    let refused = call(&gw, &secret).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let (status, _) = admin(&gw, reqwest::Method::DELETE, "/v1/keys/team-a", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn keys_and_their_limits_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let mut gw = Gateway::start(with_state(&state)).await;
    let secret = make_key(&gw, "keeper").await;
    let (status, _) = admin(
        &gw,
        reqwest::Method::PUT,
        "/v1/keys/keeper/limits",
        Some(json!({"rpm": 7})),
    )
    .await;
    assert_eq!(status, 200);
    gw.shutdown();
    gw.task.await.unwrap();

    let again = Gateway::start(with_state(&state)).await;
    call(&again, &secret).await.unwrap();
    let (_, one) = admin(&again, reqwest::Method::GET, "/v1/keys/keeper", None).await;
    assert_eq!(one["limits"]["rpm"], 7);
}

#[tokio::test]
async fn a_rotation_keeps_the_old_secret_for_its_grace_period_and_expiry_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(with_state(&dir.path().join("state.json"))).await;
    let old = make_key(&gw, "r").await;
    let (status, rotated) = admin(
        &gw,
        reqwest::Method::POST,
        "/v1/keys/r/rotate",
        Some(json!({"grace_seconds": 3600})),
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["key"].as_str().unwrap().to_owned();
    assert_ne!(old, new);
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let until = rotated["previous_valid_until"].as_u64().unwrap();
    assert!((now() + 3500..=now() + 3600).contains(&until), "{until}");
    call(&gw, &old).await.unwrap();
    call(&gw, &new).await.unwrap();
    // A grace of one second: the old secret is refused once it is over (the grace's end is reached, not only
    // set), the new one goes on.
    let (_, short) = admin(
        &gw,
        reqwest::Method::POST,
        "/v1/keys/r/rotate",
        Some(json!({"grace_seconds": 1})),
    )
    .await;
    let after_short = short["key"].as_str().unwrap().to_owned();
    let refused = eventually("the one-second grace ends", || async {
        call(&gw, &new).await.err()
    })
    .await;
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(refused.message().contains("expired"), "{refused:?}");
    assert!(now() >= short["previous_valid_until"].as_u64().unwrap());
    call(&gw, &after_short).await.unwrap();
    // No grace: the old secret stops at once.
    let (_, again) = admin(
        &gw,
        reqwest::Method::POST,
        "/v1/keys/r/rotate",
        Some(json!({"grace_seconds": 0})),
    )
    .await;
    let newest = again["key"].as_str().unwrap().to_owned();
    let refused = call(&gw, &after_short).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(refused.message().contains("expired"), "{refused:?}");
    call(&gw, &newest).await.unwrap();
    // The first secret, two rotations back, is gone: only the last one's predecessor is kept.
    assert_eq!(
        call(&gw, &old).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    // A config file's key is rotated in the file.
    let (status, _) = admin(&gw, reqwest::Method::POST, "/v1/keys/tester/rotate", None).await;
    assert_eq!(status, 409);

    // A key past its expires_at is refused.
    let (_, past) = admin(
        &gw,
        reqwest::Method::POST,
        "/v1/keys",
        Some(json!({"name": "old", "expires_at": 1})),
    )
    .await;
    let refused = call(&gw, past["key"].as_str().unwrap()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
}

/// A key revoked while its InteractiveStream session is open stops the session at its next turn: the key is
/// checked again at every turn, not only when the session opened.
#[tokio::test]
async fn a_revoked_key_ends_its_open_session_at_the_next_turn() {
    use aigw::proto::{
        interactive_request::Action, interactive_response::Event, InteractiveRequest, SessionStart,
        UserTurn,
    };
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(with_state(&dir.path().join("state.json"))).await;
    let secret = make_key(&gw, "team-s").await;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let action = |a| InteractiveRequest { action: Some(a) };
    tx.send(action(Action::Start(SessionStart {
        model: "big".into(),
        ..Default::default()
    })))
    .await
    .unwrap();
    let mut events = gw
        .client()
        .await
        .interactive_stream(authed(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            &secret,
        ))
        .await
        .unwrap()
        .into_inner();
    let turn = |content: &str| {
        action(Action::Turn(UserTurn {
            content: content.into(),
            ..Default::default()
        }))
    };
    events.message().await.unwrap(); // started
    tx.send(turn("one")).await.unwrap();
    loop {
        let e = events.message().await.unwrap().unwrap();
        if matches!(e.event, Some(Event::Complete(_))) {
            break;
        }
    }
    let (status, _) = admin(&gw, reqwest::Method::DELETE, "/v1/keys/team-s", None).await;
    assert_eq!(status, 200);
    tx.send(turn("two")).await.unwrap();
    let ended = events.message().await.unwrap_err();
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
}

/// A stored response belongs to the key that made it, not to its name: a key revoked and made again under the
/// same name does not read (or continue, or delete) the old key's conversations.
#[tokio::test]
async fn a_new_key_of_the_same_name_does_not_read_the_old_ones_responses() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(with_state(&dir.path().join("state.json"))).await;
    let old = make_key(&gw, "team-r").await;
    let (status, text) = post_json(
        &gw,
        "/v1/responses",
        &old,
        &json!({"model": "big", "input": "remember this"}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let id = serde_json::from_str::<Value>(&text).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = admin(&gw, reqwest::Method::DELETE, "/v1/keys/team-r", None).await;
    assert_eq!(status, 200);
    let new = make_key(&gw, "team-r").await;
    let read = http()
        .get(format!("http://{}/v1/responses/{id}", gw.addr))
        .bearer_auth(&new)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 404);
    let (status, _) = post_json(
        &gw,
        "/v1/responses",
        &new,
        &json!({"model": "big", "input": "and?", "previous_response_id": id}),
    )
    .await;
    assert_eq!(status, 400);
}

/// Wrong admin keys are throttled per address: after ten failures in a minute the address is answered 429
/// with the rest of its minute, without its key being looked at (so a key cannot be guessed at speed).
#[tokio::test]
async fn wrong_admin_keys_are_throttled_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(with_state(&dir.path().join("state.json"))).await;
    let get = |key: &'static str| {
        let url = format!("http://{}/v1/keys", gw.admin);
        async move {
            let resp = http().get(url).bearer_auth(key).send().await.unwrap();
            let wait = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (resp.status().as_u16(), wait)
        }
    };
    assert_eq!(get(ADMIN_KEY).await.0, 200);
    for _ in 0..10 {
        assert_eq!(get("not-the-admin-key-0000").await.0, 401);
    }
    let (status, wait) = get("not-the-admin-key-0000").await;
    assert_eq!(status, 429);
    let wait: u64 = wait.unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // Even the right key waits out the address's minute.
    assert_eq!(get(ADMIN_KEY).await.0, 429);
}

/// A gateway with the admin API in front of `up` (model "m").
async fn with_admin(up: &Upstream) -> Gateway {
    let admin = "[admin]\nkey_env = \"TEST_ADMIN_KEY\"";
    Gateway::start(config(&priced_config_text(&up.base_url(), admin, "", ""))).await
}

/// Opens a StreamGenerate with `secret` and reads its first piece of text.
async fn open_stream(gw: &Gateway, secret: &str) -> tonic::Streaming<aigw::proto::StreamChunk> {
    let mut stream = gw
        .client()
        .await
        .stream_generate(authed(stream_request("m", "hi"), secret))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.delta, "Hel");
    stream
}

/// The status a stream ends with, past its heartbeats; a hang guard only, never a speed bound.
async fn end_of(mut stream: tonic::Streaming<aigw::proto::StreamChunk>) -> tonic::Status {
    tokio::time::timeout(std::time::Duration::from_secs(120), async {
        loop {
            match stream.message().await {
                Ok(Some(chunk)) => assert!(chunk.heartbeat, "only heartbeats: {chunk:?}"),
                Ok(None) => panic!("the stream ended with OK"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the stream went on")
}

/// A key revoked while one of its streams is open ends that stream with UNAUTHENTICATED (the upstream, which
/// would go on for ever, is let go), instead of letting it run for as long as the upstream talks.
#[tokio::test]
async fn a_revoked_key_ends_its_open_streams() {
    let up = Upstream::start(vec![Reply::sse(&[chunk("Hel")]).end(End::Hang)]).await;
    let gw = with_admin(&up).await;
    let secret = make_key(&gw, "streamer").await;
    let stream = open_stream(&gw, &secret).await;
    let (status, _) = admin(&gw, reqwest::Method::DELETE, "/v1/keys/streamer", None).await;
    assert_eq!(status, 200);
    let ended = end_of(stream).await;
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    assert!(ended.message().contains("revoked"), "{ended:?}");
    eventually("the upstream request is dropped", || async {
        (up.aborted() == 1).then_some(())
    })
    .await;
}

/// A key that expires while one of its streams is open ends it at the expiry, with UNAUTHENTICATED.
#[tokio::test]
async fn a_stream_ends_when_its_key_expires() {
    let up = Upstream::start(vec![Reply::sse(&[chunk("Hel")]).end(End::Hang)]).await;
    let gw = with_admin(&up).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (status, made) = admin(
        &gw,
        reqwest::Method::POST,
        "/v1/keys",
        Some(json!({"name": "brief", "expires_at": now + 2})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let stream = open_stream(&gw, made["key"].as_str().unwrap()).await;
    let ended = end_of(stream).await;
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    assert!(ended.message().contains("expired"), "{ended:?}");
}
