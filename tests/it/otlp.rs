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
    // Decode what was exported: spans by name, with their attributes and parents.
    let spans: Vec<wire::Span> = sent
        .iter()
        .map(|r| <wire::Export as prost::Message>::decode(r.raw_body.as_slice()).unwrap())
        .flat_map(|e| e.resource_spans)
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .collect();
    let named = |name: &str| spans.iter().find(|s| s.name == name);
    let rpc = named("rpc").expect("an rpc span");
    let upstream = named("upstream").expect("an upstream span");
    assert_eq!(rpc.attribute("request_id"), Some("trace-me-7"));
    assert_eq!(rpc.attribute("rpc"), Some("Generate"));
    assert_eq!(upstream.trace_id, rpc.trace_id, "one trace");
    assert_eq!(
        upstream.parent_span_id, rpc.span_id,
        "the attempt is a child of the call"
    );
    assert_eq!(upstream.attribute("upstream"), Some("scripted"));
    telemetry.shutdown();
}

/// Just enough of OTLP's trace protobuf (opentelemetry-proto's `trace/v1`) to read names, ids and string
/// attributes back.
mod wire {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Export {
        #[prost(message, repeated, tag = "1")]
        pub resource_spans: Vec<ResourceSpans>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceSpans {
        #[prost(message, repeated, tag = "2")]
        pub scope_spans: Vec<ScopeSpans>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeSpans {
        #[prost(message, repeated, tag = "2")]
        pub spans: Vec<Span>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Span {
        #[prost(bytes = "vec", tag = "1")]
        pub trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub span_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "4")]
        pub parent_span_id: Vec<u8>,
        #[prost(string, tag = "5")]
        pub name: String,
        #[prost(message, repeated, tag = "9")]
        pub attributes: Vec<KeyValue>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<AnyValue>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AnyValue {
        #[prost(string, optional, tag = "1")]
        pub string_value: Option<String>,
    }

    impl Span {
        pub fn attribute(&self, key: &str) -> Option<&str> {
            self.attributes
                .iter()
                .find(|kv| kv.key == key)?
                .value
                .as_ref()?
                .string_value
                .as_deref()
        }
    }
}
