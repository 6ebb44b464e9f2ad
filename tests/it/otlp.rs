//! Traces exported over OTLP/HTTP: a span per RPC (with its request id) and per upstream attempt reach a
//! collector. Its own test binary, because the tracing subscriber is global to the process.

use crate::common::{upstream::*, *};

#[test]
fn spans_reach_the_collector() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (collector, upstream) = rt.block_on(async {
        (
            Upstream::start(vec![Reply::json(200, "")]).await,
            Upstream::start(vec![Reply::json(200, &completion("fine", "stop", 3, 1))]).await,
        )
    });
    let tracing = aigw::config::TracingConfig {
        otlp_endpoint: Some(format!("http://{}/v1/traces", collector.addr)),
        service_name: "aigw-under-test".into(),
    };
    // Installed outside the runtime: the exporter runs on a thread of its own.
    let telemetry =
        aigw::observe::telemetry::init(aigw::config::LogFormat::Text, &tracing).unwrap();
    rt.block_on(async {
        let gw = Gateway::in_front_of(&upstream).await;
        let mut req = authed(generate("big", "hi"), KEY);
        req.metadata_mut()
            .insert("x-request-id", "trace-me-7".parse().unwrap());
        gw.client().await.generate(req).await.unwrap();
    });
    telemetry.flush(); // the collector runs on the runtime's workers meanwhile
    let sent = collector.requests();
    assert!(!sent.is_empty(), "nothing exported");
    assert_eq!(sent[0].path, "/v1/traces");
    assert_eq!(
        sent[0].header("content-type"),
        Some("application/x-protobuf")
    );
    let body: Vec<u8> = sent.iter().flat_map(|r| r.raw_body.clone()).collect();
    let has = |needle: &str| body.windows(needle.len()).any(|w| w == needle.as_bytes());
    for needle in [
        "aigw-under-test",
        "rpc",
        "upstream",
        "trace-me-7",
        "Generate",
    ] {
        assert!(has(needle), "the exported spans do not mention {needle:?}");
    }
    telemetry.shutdown();
}
