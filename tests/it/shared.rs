//! Three gateways sharing one real Redis (`[shared]`): a key's limits, budget and the response cache hold for
//! the three together, and a Redis outage behaves as configured and heals when Redis is back.

use crate::common::{redis::Redis, upstream::*, *};
use aigw::proto::GenerationConfig;
use tonic::Code;

/// Model "m" ($2 in / $8 out per million tokens, caching temperature-0 answers) on a scripted upstream; key
/// "tester" with `limits`; the shared state in `redis`, failing `on_failure`.
fn fleet_config(
    up: &Upstream,
    redis: &Redis,
    limits: &str,
    on_failure: &str,
) -> aigw::config::Config {
    let shared = format!(
        "[shared]\nredis_url = \"{}\"\non_failure = \"{on_failure}\"\ntimeout = \"5s\"",
        redis.url()
    );
    config(&priced_config_text(
        &up.base_url(),
        &shared,
        limits,
        "cache = { ttl = \"1m\" }",
    ))
}

async fn fleet(up: &Upstream, redis: &Redis, limits: &str, on_failure: &str) -> Vec<Gateway> {
    let mut gateways = Vec::new();
    for _ in 0..3 {
        let gw = Gateway::start(fleet_config(up, redis, limits, on_failure)).await;
        wait_for_shared_state(&gw, true).await;
        gateways.push(gw);
    }
    gateways
}

/// Waits until the gateway's `aigw_shared_state_up` says `up`; its monitor checks once a second.
async fn wait_for_shared_state(gw: &Gateway, up: bool) {
    let want = if up { 1.0 } else { 0.0 };
    eventually("aigw_shared_state_up changes", || async move {
        let (_, text) = admin_get(gw, "/metrics", None).await;
        (metric(&text, "aigw_shared_state_up") == want).then_some(())
    })
    .await;
}

/// Two replicas with the admin API on one Redis, and their config text (for a third).
async fn pair(up: &Upstream, redis: &Redis) -> (String, Gateway, Gateway) {
    let top = format!(
        "[admin]\nkey_env = \"TEST_ADMIN_KEY\"\n[shared]\nredis_url = \"{}\"\ntimeout = \"5s\"",
        redis.url()
    );
    let text = priced_config_text(&up.base_url(), &top, "", "");
    let (a, b) = (
        Gateway::start(config(&text)).await,
        Gateway::start(config(&text)).await,
    );
    wait_for_shared_state(&a, true).await;
    wait_for_shared_state(&b, true).await;
    (text, a, b)
}

fn hello() -> Reply {
    Reply::json(200, &completion("Hello!", "stop", 1000, 500))
}

async fn call(gw: &Gateway, temperature: Option<f32>) -> Result<(), tonic::Status> {
    let req = with_config(
        generate("m", "hi"),
        GenerationConfig {
            temperature,
            ..Default::default()
        },
    );
    gw.client().await.generate(authed(req, KEY)).await.map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_limited_to_n_requests_gets_n_across_three_replicas() {
    let redis = Redis::start();
    let up = Upstream::start(vec![hello()]).await;
    let gateways = fleet(&up, &redis, "rpm = 5", "open").await;
    let (mut ok, mut refused) = (0, 0);
    for i in 0..15 {
        match call(&gateways[i % 3], None).await {
            Ok(()) => ok += 1,
            Err(status) => {
                assert_status(&status, Code::ResourceExhausted, "5 requests per minute");
                assert!(status.metadata().get("retry-after").is_some());
                refused += 1;
            }
        }
    }
    assert_eq!(
        (ok, refused),
        (5, 10),
        "the limit is the fleet's, not each replica's"
    );
    assert_eq!(up.calls(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fired_at_three_replicas_at_once_get_exactly_n() {
    // All at once, so a read-check-write that is not atomic in Redis would admit more than N.
    let redis = Redis::start();
    let up = Upstream::start(vec![hello()]).await;
    let gateways = fleet(&up, &redis, "rpm = 7", "open").await;
    let calls = (0..30).map(|i| call(&gateways[i % 3], None));
    let outcomes = futures_util::future::join_all(calls).await;
    let ok = outcomes.iter().filter(|o| o.is_ok()).count();
    for refused in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        assert_status(refused, Code::ResourceExhausted, "7 requests per minute");
    }
    assert_eq!(
        ok, 7,
        "exactly the fleet's limit, whatever the interleaving"
    );
    assert_eq!(up.calls(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_reserved_on_one_replica_count_on_the_others() {
    let redis = Redis::start();
    let up = Upstream::start(vec![hello()]).await;
    // Each call reserves its prompt estimate + 1,024 output tokens, then is charged 1,500: two fit in 3,500.
    let gateways = fleet(&up, &redis, "tpm = 3500", "open").await;
    assert!(call(&gateways[0], None).await.is_ok());
    assert!(call(&gateways[1], None).await.is_ok());
    let status = call(&gateways[2], None).await.unwrap_err();
    assert_status(&status, Code::ResourceExhausted, "3500 tokens per minute");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_spent_through_one_replica_is_enforced_by_the_others() {
    let redis = Redis::start();
    let up = Upstream::start(vec![hello()]).await;
    // One call costs 1,000 x $2/M + 500 x $8/M = $0.006: over the $0.005 budget.
    let gateways = fleet(&up, &redis, "daily_budget_usd = 0.005", "open").await;
    assert!(call(&gateways[0], None).await.is_ok());
    // Spend is booked in Redis right after the call, on its own task: wait for the booking, not for a refusal
    // (calls made while waiting would spend more than the budget and hide an overspend).
    spent_in_redis(&redis, 0.006).await;
    for replica in &gateways[1..] {
        let status = call(replica, None).await.unwrap_err();
        assert_status(&status, Code::ResourceExhausted, "daily budget");
    }
    assert_eq!(
        up.calls(),
        1,
        "one call spent the budget; no other reached the upstream"
    );
}

/// Waits until the fleet's spend in Redis is `usd` (the booking of a call is on its own task).
async fn spent_in_redis(redis: &Redis, usd: f64) {
    eventually("the spend reaches Redis", || async {
        ((redis.spent_today().await - usd).abs() < 1e-9).then_some(())
    })
    .await;
}

/// Cut off from Redis, a replica admits against the fleet's spend it last heard of, not its own share alone:
/// the budget spent on replica 0 keeps refusing on replica 1 through the outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_from_redis_goes_on_from_the_fleets_spend() {
    let mut redis = Redis::start();
    let up = Upstream::start(vec![hello()]).await;
    let gateways = fleet(&up, &redis, "daily_budget_usd = 0.005", "open").await;
    assert!(call(&gateways[0], None).await.is_ok());
    let replica = &gateways[1];
    spent_in_redis(&redis, 0.006).await;
    // Replica 1 hears of the fleet's spend with its refusal (the admission script answers with it).
    let status = call(replica, None).await.unwrap_err();
    assert_status(&status, Code::ResourceExhausted, "daily budget");
    redis.kill_keeping_data();
    wait_for_shared_state(replica, false).await;
    let status = call(replica, None).await.unwrap_err();
    assert_status(&status, Code::ResourceExhausted, "daily budget");
    assert_eq!(up.calls(), 1);
}

/// What a replica spends while Redis is unreachable is sent when Redis is back: the fleet's budget counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_made_during_a_redis_outage_is_replayed_when_it_is_back() {
    let mut redis = Redis::start();
    let up = Upstream::start(vec![hello()]).await;
    let gateways = fleet(&up, &redis, "daily_budget_usd = 0.005", "open").await;
    redis.kill_keeping_data();
    wait_for_shared_state(&gateways[0], false).await;
    assert!(call(&gateways[0], None).await.is_ok(), "open: local state");
    redis.restart();
    // $0.006: 1,000 prompt tokens at $2/M and 500 completion tokens at $8/M.
    spent_in_redis(&redis, 0.006).await;
    wait_for_shared_state(&gateways[1], true).await;
    let status = call(&gateways[1], None).await.unwrap_err();
    assert_status(&status, Code::ResourceExhausted, "daily budget");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_cached_by_one_replica_is_a_hit_on_another() {
    let redis = Redis::start();
    let up = Upstream::start(vec![hello()]).await;
    let gateways = fleet(&up, &redis, "", "open").await;
    assert!(call(&gateways[0], Some(0.0)).await.is_ok());
    // Kept in Redis right after the answer, on its own task: look for it on replica 1.
    let replica = &gateways[1];
    eventually("replica 1 hits the answer replica 0 kept", || async move {
        assert!(call(replica, Some(0.0)).await.is_ok());
        let (_, text) = admin_get(replica, "/metrics", None).await;
        text.contains(r#"aigw_cache_requests_total{model="m",result="hit"} "#)
            .then_some(())
    })
    .await;
    let calls = up.calls();
    assert!(call(&gateways[2], Some(0.0)).await.is_ok());
    assert_eq!(
        up.calls(),
        calls,
        "replica 2 answered from the shared cache"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_goes_on_with_local_limits_and_heals() {
    let mut redis = Redis::start();
    let up = Upstream::start(vec![hello()]).await;
    let gw = Gateway::start(fleet_config(&up, &redis, "rpm = 3", "open")).await;
    wait_for_shared_state(&gw, true).await;
    assert!(call(&gw, None).await.is_ok());

    redis.kill();
    // Calls go on under this replica's own window (empty: the shared one held the first call).
    for _ in 0..3 {
        assert!(call(&gw, None).await.is_ok());
    }
    assert_status(
        &call(&gw, None).await.unwrap_err(),
        Code::ResourceExhausted,
        "3 requests per minute",
    );
    wait_for_shared_state(&gw, false).await;
    assert_eq!(
        admin_get(&gw, "/readyz", None).await.0,
        200,
        "open: still ready"
    );

    redis.restart(); // empty: a fresh window
    wait_for_shared_state(&gw, true).await;
    for _ in 0..3 {
        assert!(call(&gw, None).await.is_ok(), "the shared window again");
    }
    assert!(call(&gw, None).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_refuses_calls_and_readiness_until_redis_is_back() {
    let mut redis = Redis::start();
    let up = Upstream::start(vec![hello()]).await;
    let gw = Gateway::start(fleet_config(&up, &redis, "rpm = 100", "closed")).await;
    wait_for_shared_state(&gw, true).await;
    assert!(call(&gw, None).await.is_ok());
    assert_eq!(admin_get(&gw, "/readyz", None).await.0, 200);

    redis.kill();
    let status = call(&gw, None).await.unwrap_err();
    assert_status(&status, Code::Unavailable, "shared state");
    wait_for_shared_state(&gw, false).await;
    assert_eq!(admin_get(&gw, "/readyz", None).await.0, 503);
    let calls = up.calls();

    redis.restart();
    wait_for_shared_state(&gw, true).await;
    assert_eq!(admin_get(&gw, "/readyz", None).await.0, 200);
    assert!(call(&gw, None).await.is_ok());
    assert_eq!(up.calls(), calls + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_door_answers_503_while_a_closed_fleet_has_no_redis() {
    // A key with fleet limits: without Redis they cannot be checked, so its calls are refused.
    let mut redis = Redis::start();
    let up = Upstream::start(vec![hello()]).await;
    let gw = Gateway::start(fleet_config(&up, &redis, "rpm = 100", "closed")).await;
    wait_for_shared_state(&gw, true).await;
    redis.kill();
    wait_for_shared_state(&gw, false).await;
    let resp = http()
        .post(format!("http://{}/v1/chat/completions", gw.addr))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "service_unavailable");
    assert_eq!(up.calls(), 0);
}

/// Keys made through the admin API belong to the fleet: made on one replica they work on the others, their
/// limits hold across them, and revoked on another they are refused everywhere. Each replica follows the
/// fleet's keys every 200 ms; the waits below are polls with a hang guard, never a speed bound.
#[tokio::test]
async fn a_key_made_on_one_replica_works_on_the_others_and_its_revocation_too() {
    let redis = Redis::start();
    let up = Upstream::start(vec![hello()]).await;
    let (text, a, b) = pair(&up, &redis).await;
    let secret = make_key_on(
        &a,
        serde_json::json!({"name": "fleet-team", "limits": {"rpm": 2}}),
    )
    .await;
    let fleet_team = |gw: &Gateway| {
        let (gw, secret) = (gw.addr, secret.clone());
        async move { use_key_at(gw, &secret).await }
    };
    // Made on A: B takes it in.
    eventually("the key works on B", || async { fleet_team(&b).await.ok() }).await;
    // rpm 2 across both: one call on B (above), one on A, then neither.
    assert_eq!(fleet_team(&a).await, Ok(()));
    assert_eq!(fleet_team(&b).await, Err(Code::ResourceExhausted));
    assert_eq!(fleet_team(&a).await, Err(Code::ResourceExhausted));
    // Listed on B.
    let (_, list) = admin_get(&b, "/v1/keys/fleet-team", Some(ADMIN_KEY)).await;
    assert!(list.contains("\"source\":\"api\""), "{list}");

    // Revoked on B: refused on A.
    let revoked = http()
        .delete(format!("http://{}/v1/keys/fleet-team", b.admin))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status().as_u16(), 200);
    eventually("A refuses the revoked key", || async {
        (fleet_team(&a).await == Err(Code::Unauthenticated)).then_some(())
    })
    .await;

    // A replica started later loads the fleet's keys.
    let late = make_key_on(&b, serde_json::json!({"name": "late"})).await;
    let c = Gateway::start(config(&text)).await;
    eventually("a new replica knows the fleet's keys", || async {
        use_key(&c, &late).await.ok()
    })
    .await;
}

/// Makes a key through `gw`'s admin API; its secret.
async fn make_key_on(gw: &Gateway, body: serde_json::Value) -> String {
    let made = http()
        .post(format!("http://{}/v1/keys", gw.admin))
        .bearer_auth(ADMIN_KEY)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(made.status().as_u16(), 201);
    let made: serde_json::Value = serde_json::from_str(&made.text().await.unwrap()).unwrap();
    made["key"].as_str().unwrap().to_owned()
}

/// One Generate with `secret` on `gw`: Ok, or the status code it was refused with.
async fn use_key(gw: &Gateway, secret: &str) -> Result<(), Code> {
    use_key_at(gw.addr, secret).await
}

async fn use_key_at(addr: std::net::SocketAddr, secret: &str) -> Result<(), Code> {
    let mut client =
        aigw::proto::ai_service_client::AiServiceClient::connect(format!("http://{addr}"))
            .await
            .map_err(|_| Code::Unavailable)?;
    client
        .generate(authed(generate("m", "hi"), secret))
        .await
        .map(drop)
        .map_err(|s| s.code())
}

/// A Redis that comes back without its data (restarted without persistence, flushed, or failed over to an
/// empty replica) revokes nothing: the replicas write back the keys they know, under a version above any the
/// fleet used, and a replica started afterwards loads them from Redis.
#[tokio::test]
async fn keys_made_at_run_time_survive_redis_losing_its_data() {
    let mut redis = Redis::start();
    let up = Upstream::start(vec![hello()]).await;
    let (text, a, b) = pair(&up, &redis).await;
    let secret = make_key_on(&a, serde_json::json!({"name": "durable"})).await;
    eventually("B knows the key", || async {
        use_key(&b, &secret).await.ok()
    })
    .await;

    redis.kill(); // and its data
    wait_for_shared_state(&a, false).await;
    redis.restart();
    wait_for_shared_state(&a, true).await;
    wait_for_shared_state(&b, true).await;
    let c = Gateway::start(config(&text)).await;
    eventually(
        "a replica started after the loss has the key from Redis",
        || async { use_key(&c, &secret).await.ok() },
    )
    .await;
    assert_eq!(use_key(&a, &secret).await, Ok(()), "A still serves it");
    assert_eq!(use_key(&b, &secret).await, Ok(()), "B still serves it");
}

/// Every replica with `[admin] state_file` keeps a copy of the fleet's keys: after the whole fleet and Redis
/// restarted without data, the first such replica writes them back, and a replica without a file (which never
/// saw the key) serves it.
#[tokio::test]
async fn a_state_file_brings_the_fleets_keys_back_after_a_full_restart() {
    let mut redis = Redis::start();
    let up = Upstream::start(vec![hello()]).await;
    let dir = tempfile::tempdir().unwrap();
    let shared = format!(
        "[shared]\nredis_url = \"{}\"\ntimeout = \"5s\"",
        redis.url()
    );
    let with_file = priced_config_text(
        &up.base_url(),
        &format!(
            "[admin]\nkey_env = \"TEST_ADMIN_KEY\"\nstate_file = \"{}\"\n{shared}",
            dir.path().join("keys.json").display()
        ),
        "",
        "",
    );
    let (a, b) = (
        Gateway::start(config(&with_file)).await,
        Gateway::start(config(&with_file.replace("keys.json", "b.json"))).await,
    );
    wait_for_shared_state(&a, true).await;
    wait_for_shared_state(&b, true).await;
    let secret = make_key_on(&a, serde_json::json!({"name": "kept"})).await;
    eventually("B took the key in, and into its own file", || async {
        let text = std::fs::read_to_string(dir.path().join("b.json")).ok()?;
        text.contains("\"kept\"").then_some(())
    })
    .await;
    for mut gw in [a, b] {
        gw.shutdown();
        gw.task.await.unwrap();
    }
    redis.kill();
    redis.restart();

    let plain = Gateway::start(config(&priced_config_text(&up.base_url(), &shared, "", ""))).await;
    let _b = Gateway::start(config(&with_file.replace("keys.json", "b.json"))).await;
    eventually("the replica without a file serves the key", || async {
        use_key(&plain, &secret).await.ok()
    })
    .await;
}

/// `GET /v1/usage` answers for the whole fleet from Redis (`scope` "fleet"): calls made on A show on B; B's own
/// view stays available with `?scope=replica`.
#[tokio::test]
async fn the_usage_api_answers_for_the_fleet() {
    let redis = Redis::start();
    let up = Upstream::start(vec![hello()]).await;
    let (_, a, b) = pair(&up, &redis).await;
    for _ in 0..3 {
        call(&a, None).await.unwrap();
    }
    let fleet = eventually("B sees A's calls", || async {
        let (_, body) = admin_get(&b, "/v1/usage", Some(ADMIN_KEY)).await;
        let usage: serde_json::Value = serde_json::from_str(&body).ok()?;
        let key = &usage["keys"]["tester"];
        (key["today"]["requests"] == 3 && key["today"]["tokens"] == 4500).then_some(usage)
    })
    .await;
    assert_eq!(fleet["scope"], "fleet");
    let tester = &fleet["keys"]["tester"];
    assert_eq!(tester["this_month"]["requests"], 3);
    assert_eq!(tester["requests_last_minute"], 3);
    // 3 x (1000 in at $2 + 500 out at $8 per million) = $0.018.
    for period in ["today", "this_month"] {
        assert!(
            (tester[period]["cost_usd"].as_f64().unwrap() - 0.018).abs() < 1e-9,
            "{period}: {tester}"
        );
    }
    assert_eq!(fleet["models"]["m"]["today"]["requests"], 3);
    let (_, mine) = admin_get(&b, "/v1/usage?scope=replica", Some(ADMIN_KEY)).await;
    let mine: serde_json::Value = serde_json::from_str(&mine).unwrap();
    assert_eq!(mine["scope"], "replica");
    assert_eq!(mine["keys"]["tester"]["today"]["requests"], 0);
}
