//! `aigw bench` against real servers: the gateway in-process over gRPC, and `aigw mock-upstream` over REST.
//! These check what the load generator counts, not how fast anything is.

use std::time::Duration;

use crate::common::*;
use aigw::{
    tools::bench::{self, Load, Options, Protocol, Report, Rpc, Workload},
    tools::mock_server::{serve, MockServerConfig},
};

const TOKENS: usize = 12;

async fn mock_upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = MockServerConfig {
        dialect: Default::default(),
        shape: Default::default(),
        first_token_latency: Duration::ZERO,
        tokens_per_second: 1e6,
        tokens: Some(TOKENS),
    };
    tokio::spawn(serve(listener, cfg, std::future::pending()));
    addr
}

fn options(protocol: Protocol, target: String, rpc: Rpc, load: Load, calls: u64) -> Options {
    Options {
        protocol,
        target,
        key: Some(KEY.into()),
        headers: Vec::new(),
        work: Workload {
            rpc,
            model: "big".into(),
            prompt: "hello".into(),
            max_tokens: None,
            turns: 3,
            timeout: Duration::from_secs(20),
        },
        load,
        connections: 2,
        warmup: Duration::ZERO,
        // Bounded by the call count; the duration is only a backstop.
        duration: Duration::from_secs(60),
        max_calls: Some(calls),
        max_in_flight: 100,
        progress: false,
    }
}

async fn gateway() -> (Gateway, String) {
    let upstream = mock_upstream().await;
    let gw = Gateway::start(config(&config_text(&format!("http://{upstream}/v1"), ""))).await;
    let target = format!("http://{}", gw.addr);
    (gw, target)
}

fn assert_all_ok(r: &Report, calls: u64) {
    assert!(r.errors.is_empty(), "{r}");
    assert_eq!((r.calls, r.ok), (calls, calls), "{r}");
    let latency = r.latency_us.as_ref().expect("latency");
    assert_eq!(latency.count, calls);
    assert!(latency.p50 > 0.0 && latency.p50 <= latency.p99 && latency.p99 <= latency.max);
    assert!(r.throughput_per_s > 0.0);
}

#[tokio::test]
async fn closed_loop_generate_counts_every_call_and_reads_the_overhead_trailer() {
    let (_gw, target) = gateway().await;
    let opts = options(
        Protocol::Grpc,
        target,
        Rpc::Generate,
        Load::Closed { concurrency: 4 },
        40,
    );
    let r = bench::run(&opts).await.unwrap();
    assert_all_ok(&r, 40);
    assert_eq!(r.gateway_overhead_us.as_ref().unwrap().count, 40);
    assert!(r.ttft_us.is_none() && r.schedule_lag_us.is_none());
    assert_eq!(r.chunks, 0);
    // GenerateRequest: model "big" (5 bytes), the user message "hello" (15), an empty config (2), and the
    // 5-byte prefix.
    assert_eq!(r.request_bytes_per_call, 27.0);
    assert!(r.response_bytes_per_call > 5.0 * TOKENS as f64, "{r}");
}

#[tokio::test]
async fn open_loop_streams_measure_from_the_schedule() {
    let (_gw, target) = gateway().await;
    let opts = options(
        Protocol::Grpc,
        target,
        Rpc::Stream,
        Load::Open { rate: 200.0 },
        20,
    );
    let r = bench::run(&opts).await.unwrap();
    assert_all_ok(&r, 20);
    assert_eq!(r.chunks, 20 * TOKENS as u64, "one chunk per token");
    let ttft = r.ttft_us.as_ref().unwrap();
    assert_eq!(ttft.count, 20);
    assert!(ttft.max <= r.latency_us.as_ref().unwrap().max);
    assert_eq!(r.schedule_lag_us.as_ref().unwrap().count, 20);
    // 20 calls at 200/s are scheduled over 95 ms: the window cannot be shorter.
    assert!(r.seconds >= 0.095, "{r}");
    assert_eq!(r.setup.load, "open");
}

/// The load generator sends each next turn the moment it reads `TurnComplete`: on two threads that once met
/// the session before it had taken the last turn off its books ("turn 1 is still in flight"), about one turn
/// in 3,000. The session now sends `TurnComplete` only after that, so no turn may fail here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_sessions_count_each_turn() {
    let (_gw, target) = gateway().await;
    let opts = options(
        Protocol::Grpc,
        target,
        Rpc::Interactive,
        Load::Closed { concurrency: 16 },
        200,
    );
    let r = bench::run(&opts).await.unwrap();
    // 200 sessions of 3 turns.
    assert_all_ok(&r, 600);
    assert_eq!(r.chunks, 600 * TOKENS as u64);
    assert_eq!(r.ttft_us.as_ref().unwrap().count, 600);
}

#[tokio::test]
async fn idle_sessions_stay_open_until_the_run_ends() {
    let (gw, target) = gateway().await;
    let mut opts = options(
        Protocol::Grpc,
        target,
        Rpc::Idle,
        Load::Closed { concurrency: 30 },
        30,
    );
    // Long enough for 30 sessions to open on a busy machine; the run holds them until it ends.
    opts.duration = Duration::from_secs(10);
    let run = tokio::spawn(async move { bench::run(&opts).await });
    // While the run holds them, all 30 sessions are in flight at the gateway.
    let admin = gw.admin;
    eventually("30 sessions in flight", || async move {
        (in_flight(admin, "InteractiveStream").await == 30).then_some(())
    })
    .await;
    let r = run.await.unwrap().unwrap();
    assert_all_ok(&r, 30);
    assert_eq!(r.chunks, 0);
}

/// The gateway's `aigw_in_flight{rpc=...}` gauge, read from the admin listener.
async fn in_flight(admin: std::net::SocketAddr, rpc: &str) -> i64 {
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("aigw_in_flight{{rpc=\"{rpc}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn rest_mode_drives_an_openai_endpoint_with_the_same_workload() {
    let upstream = mock_upstream().await;
    let target = format!("http://{upstream}/v1");
    let json = bench::run(&options(
        Protocol::Rest,
        target.clone(),
        Rpc::Generate,
        Load::Closed { concurrency: 2 },
        10,
    ))
    .await
    .unwrap();
    assert_all_ok(&json, 10);
    assert!(json.gateway_overhead_us.is_none());
    assert_eq!(
        json.request_bytes_per_call as usize,
        r#"{"model":"big","messages":[{"role":"user","content":"hello"}]}"#.len()
    );

    let sse = bench::run(&options(
        Protocol::Rest,
        target.clone(),
        Rpc::Stream,
        Load::Closed { concurrency: 2 },
        10,
    ))
    .await
    .unwrap();
    assert_all_ok(&sse, 10);
    assert_eq!(sse.chunks, 10 * TOKENS as u64);
    assert_eq!(sse.ttft_us.as_ref().unwrap().count, 10);

    let refused = bench::run(&options(
        Protocol::Rest,
        target,
        Rpc::Interactive,
        Load::Closed { concurrency: 1 },
        1,
    ))
    .await;
    assert!(refused.is_err());
}

/// `--header` carries what a gateway takes in headers of its own: here the key itself, which the gateway's REST
/// door refuses without.
#[tokio::test]
async fn rest_mode_sends_the_headers_it_is_given() {
    let (_gw, target) = gateway().await;
    let mut opts = options(
        Protocol::Rest,
        format!("{target}/v1"),
        Rpc::Generate,
        Load::Closed { concurrency: 1 },
        3,
    );
    opts.key = None;
    let bare = bench::run(&opts).await.unwrap();
    assert_eq!(bare.ok, 0, "{bare}");
    assert_eq!(bare.errors.values().sum::<u64>(), 3, "{bare}");

    opts.headers = vec![format!("Authorization:  Bearer {KEY} ")];
    assert_all_ok(&bench::run(&opts).await.unwrap(), 3);

    opts.headers = vec!["no colon".into()];
    let err = bench::run(&opts).await.unwrap_err();
    assert!(err.contains("expected `name: value`"), "{err}");
}

#[tokio::test]
async fn failures_are_counted_by_status() {
    let (_gw, target) = gateway().await;
    let mut opts = options(
        Protocol::Grpc,
        target.clone(),
        Rpc::Generate,
        Load::Closed { concurrency: 2 },
        6,
    );
    opts.key = Some("sk-wrong".into());
    let r = bench::run(&opts).await.unwrap();
    assert_eq!((r.calls, r.ok), (6, 0));
    assert_eq!(r.errors.get("UNAUTHENTICATED"), Some(&6), "{r}");
    assert!(r.latency_us.is_none());

    // A model the gateway does not know: INVALID_ARGUMENT, on streams too.
    let mut opts = options(
        Protocol::Grpc,
        target,
        Rpc::Stream,
        Load::Closed { concurrency: 1 },
        2,
    );
    opts.work.model = "nope".into();
    let r = bench::run(&opts).await.unwrap();
    assert_eq!(r.errors.get("INVALID_ARGUMENT"), Some(&2), "{r}");

    // Nothing listening: the run fails to start, with a message.
    let mut opts = options(
        Protocol::Grpc,
        "http://127.0.0.1:1".into(),
        Rpc::Generate,
        Load::Closed { concurrency: 1 },
        1,
    );
    opts.connections = 1;
    let err = bench::run(&opts).await.unwrap_err();
    assert!(err.contains("connecting to http://127.0.0.1:1"), "{err}");
}

#[tokio::test]
async fn open_loop_beyond_max_in_flight_waits_and_counts_the_wait() {
    let upstream = mock_upstream().await;
    let mut opts = options(
        Protocol::Rest,
        format!("http://{upstream}/v1"),
        Rpc::Generate,
        Load::Open { rate: 10_000.0 },
        20,
    );
    opts.max_in_flight = 1;
    let r = bench::run(&opts).await.unwrap();
    assert_all_ok(&r, 20);
    // One call at a time: every call after the first waited for a slot, and that wait is in its latency.
    let (lag, latency) = (r.schedule_lag_us.unwrap(), r.latency_us.unwrap());
    assert_eq!(lag.count, 20);
    assert!(latency.max >= lag.max, "latency {latency:?} lag {lag:?}");
}

/// The per-second timeline adds up to the run, and `--plot` draws its three charts.
#[tokio::test]
async fn the_timeline_adds_up_and_the_plot_draws_it() {
    let (_gw, target) = gateway().await;
    let opts = options(
        Protocol::Grpc,
        target,
        Rpc::Stream,
        Load::Closed { concurrency: 4 },
        60,
    );
    let r = bench::run(&opts).await.unwrap();
    assert_all_ok(&r, 60);
    assert!(!r.timeline.is_empty());
    let ok: u64 = r.timeline.iter().map(|s| s.ok).sum();
    let errors: u64 = r.timeline.iter().map(|s| s.errors).sum();
    assert_eq!((ok, errors), (60, 0), "every call in exactly one second");
    assert!(r.timeline.windows(2).all(|w| w[0].t < w[1].t));
    assert_eq!(r.latency_curve.len(), 51);
    let svg = bench::svg(&r).unwrap();
    assert!(svg.starts_with("<svg"));
    for caption in [
        "Calls per second",
        "Latency over time",
        "Latency by percentile",
    ] {
        assert!(svg.contains(caption), "{caption}");
    }
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["timeline"].as_array().unwrap().len(), r.timeline.len());
}
