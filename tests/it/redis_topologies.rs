//! The shared state on Redis as fleets scale it: a Redis Cluster of three primaries (each limiter's keys in one
//! slot by their hash tag, the fleet's own keys in one slot by theirs) and a primary that Redis Sentinel fails
//! over to its replica, both started by the tests.

use serde_json::json;
use tonic::Code;

use crate::common::{
    redis_topologies::{Cluster, Sentinel, SENTINEL_MASTER},
    *,
};

fn text(shared: &str) -> String {
    format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [admin]
        listen = "127.0.0.1:0"
        key_env = "TEST_ADMIN_KEY"
        [shared]
        {shared}
        timeout = "5s"
        [[keys]]
        name = "tester"
        env = "TEST_KEY"
        limits = {{ rpm = 5, daily_budget_usd = 100.0 }}
        model_limits = {{ big = {{ tpm = 1000000 }} }}
        [[upstreams]]
        name = "mock"
        kind = "mock"
        first_token_latency = "0s"
        tokens_per_second = 100000
        [[models]]
        name = "big"
        max_output_tokens = 100
        price = {{ input_per_million = 1.0, output_per_million = 1.0 }}
        routes = [{{ upstream = "mock", model = "big" }}]
        "#
    )
}

async fn call(gw: &Gateway, key: &str) -> Result<(), tonic::Status> {
    gw.client()
        .await
        .generate(authed(generate("big", "hi"), key))
        .await
        .map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_limits_keys_and_usage_are_the_fleets() {
    let cluster = Cluster::start();
    let fleet = replicas(&text(&format!("cluster_nodes = {}", cluster.urls())), 3).await;
    let mut admitted = 0;
    for i in 0..15 {
        match call(&fleet[i % 3], KEY).await {
            Ok(()) => admitted += 1,
            Err(refused) => {
                assert_status(&refused, Code::ResourceExhausted, "5 requests per minute")
            }
        }
    }
    assert_eq!(admitted, 5, "the limit is the fleet's, on the cluster");
    // A key made through the admin API on one replica works on another (the fleet's keys, by script).
    let made = http()
        .post(format!("http://{}/v1/keys", fleet[0].admin))
        .bearer_auth(ADMIN_KEY)
        .body(json!({"name": "made", "limits": {"rpm": 1}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(made.status().as_u16(), 201);
    let made: serde_json::Value = serde_json::from_str(&made.text().await.unwrap()).unwrap();
    let secret = made["key"].as_str().unwrap().to_owned();
    eventually("the key works on another replica", || async {
        call(&fleet[1], &secret).await.ok()
    })
    .await;
    // The third replica takes the key in on its own poll; then its one call a minute is spent already.
    let refused = eventually("the third replica knows the key", || async {
        call(&fleet[2], &secret)
            .await
            .err()
            .filter(|s| s.code() != Code::Unauthenticated)
    })
    .await;
    assert_status(&refused, Code::ResourceExhausted, "1 requests per minute");
    // The fleet's usage is read back from the cluster.
    eventually("the fleet's usage counts every admitted call", || async {
        let (_, usage) = admin_get(&fleet[2], "/v1/usage", Some(ADMIN_KEY)).await;
        let usage: serde_json::Value = serde_json::from_str(&usage).ok()?;
        (usage["scope"] == "fleet" && usage["keys"]["tester"]["today"]["requests"] == 5)
            .then_some(())
    })
    .await;
    // The state is spread over the primaries: more than one holds keys.
    let spread = cluster.keys_per_node().iter().filter(|n| **n > 0).count();
    assert!(spread >= 2, "{:?}", cluster.keys_per_node());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_is_followed_to_the_new_primary() {
    let mut topology = Sentinel::start();
    let shared = format!(
        "sentinels = [\"{}\"]\nsentinel_master = \"{SENTINEL_MASTER}\"",
        topology.sentinel.url()
    );
    let gw = replicas(&text(&shared), 1).await.pop().unwrap();
    call(&gw, KEY).await.unwrap();
    assert!(
        topology.primary.reply("DBSIZE").trim() != ":0",
        "the state is on the primary"
    );
    let old = topology.primary.port;
    topology.primary.kill();
    // The sentinel promotes the replica (a primary silent for 1 s is down); the gateway asks the sentinel
    // again after its first failure and goes on on the new primary.
    eventually("the sentinel promotes the replica", || async {
        let now = topology.primary_port();
        (now != old && now == topology.replica.port).then_some(())
    })
    .await;
    eventually("calls are admitted through the new primary", || async {
        let (_, metrics) = admin_get(&gw, "/metrics", None).await;
        let up = metric(&metrics, "aigw_shared_state_up") == 1.0;
        (up && call(&gw, KEY).await.is_ok()).then_some(())
    })
    .await;
    let writes = topology.replica.reply("INFO replication");
    assert!(writes.contains("role:master"), "{writes}");
    // The rate window went on on the new primary: five calls a minute in all.
    let mut refused = None;
    for _ in 0..6 {
        if let Err(status) = call(&gw, KEY).await {
            refused = Some(status);
            break;
        }
    }
    assert_status(
        &refused.expect("the limit held"),
        Code::ResourceExhausted,
        "5 requests per minute",
    );
}
