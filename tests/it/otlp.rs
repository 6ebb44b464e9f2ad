//! Traces exported over OTLP/HTTP: a server span per RPC (with its request id), a child of the caller's W3C
//! `traceparent`, and a client span per upstream attempt with OpenTelemetry's GenAI attributes, whose context
//! the upstream receives. Installs the process's global tracing subscriber.

use crate::common::{upstream::*, *};

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn spans_reach_the_collector() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (collector, upstream_server) = rt.block_on(async {
        (
            Upstream::start(vec![Reply::json(200, "")]).await,
            Upstream::start(vec![
                Reply::json(200, &completion("fine", "stop", 3, 1)),
                Reply::sse(&stream_of(&["a", "b"])),
            ])
            .await,
        )
    });
    let tracing = aigw::config::TracingConfig {
        otlp_endpoint: Some(format!("http://{}/v1/traces", collector.addr)),
        service_name: Some("aigw-under-test".into()),
    };
    // Installed outside the runtime: the exporter runs on a thread of its own.
    let telemetry =
        aigw::observe::telemetry::init(aigw::config::LogFormat::Text, &tracing).unwrap();
    rt.block_on(async {
        let gw = Gateway::in_front_of(&upstream_server).await;
        let mut req = authed(generate("big", "hi"), KEY);
        req.metadata_mut()
            .insert("x-request-id", "trace-me-7".parse().unwrap());
        req.metadata_mut().insert(
            "traceparent",
            format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01")
                .parse()
                .unwrap(),
        );
        gw.client().await.generate(req).await.unwrap();
        // A stream: its attempt span lasts until the stream ends, and carries the usage from its last event.
        let mut req = authed(stream_request("big", "hi"), KEY);
        req.metadata_mut()
            .insert("x-request-id", "trace-me-8".parse().unwrap());
        let mut chunks = gw
            .client()
            .await
            .stream_generate(req)
            .await
            .unwrap()
            .into_inner();
        while chunks.message().await.unwrap().is_some() {}
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
    // The subscriber is the process's: other tests' spans arrive too, so ours are found by request id and
    // parentage, never by position.
    let call = |id: &str| {
        spans
            .iter()
            .find(|s| s.name == "rpc" && s.attribute("request_id") == Some(id))
            .unwrap_or_else(|| panic!("an rpc span for {id}"))
    };
    let attempt_of = |rpc: &wire::Span| {
        spans
            .iter()
            .find(|s| s.parent_span_id == rpc.span_id && s.name == "chat up-big")
            .expect("an attempt span named `chat {model}`, child of the call")
    };
    let rpc = call("trace-me-7");
    let upstream = attempt_of(rpc);
    assert_eq!(rpc.attribute("rpc"), Some("Generate"));
    // The caller's trace continues: same trace id, the caller's span as parent.
    assert_eq!(hex(&rpc.trace_id), CALLER_TRACE);
    assert_eq!(hex(&rpc.parent_span_id), CALLER_SPAN);
    assert_eq!(rpc.kind, 2, "a server span");
    assert_eq!(upstream.trace_id, rpc.trace_id, "one trace");
    assert_eq!(upstream.kind, 3, "a client span");
    assert_eq!(upstream.attribute("upstream"), Some("scripted"));
    // GenAI conventions: the request, the answer and its usage, on the attempt and on the call.
    for (span, model) in [(upstream, "up-big"), (rpc, "big")] {
        assert_eq!(span.attribute("gen_ai.operation.name"), Some("chat"));
        assert_eq!(span.attribute("gen_ai.request.model"), Some(model));
        assert_eq!(span.attribute("gen_ai.response.id"), Some("chatcmpl-test"));
        assert_eq!(
            span.attribute("gen_ai.response.finish_reasons"),
            Some(r#"["stop"]"#)
        );
        assert_eq!(span.int_attribute("gen_ai.usage.input_tokens"), Some(3));
        assert_eq!(span.int_attribute("gen_ai.usage.output_tokens"), Some(1));
    }
    assert_eq!(upstream.attribute("gen_ai.provider.name"), Some("openai"));
    let streamed = attempt_of(call("trace-me-8"));
    assert_eq!(streamed.int_attribute("gen_ai.usage.input_tokens"), Some(7));
    assert_eq!(
        streamed.int_attribute("gen_ai.usage.output_tokens"),
        Some(2)
    );
    assert_eq!(
        streamed.attribute("gen_ai.response.finish_reasons"),
        Some(r#"["stop"]"#)
    );
    // The upstream was told the attempt's context.
    let sent = &upstream_server.requests()[0];
    let traceparent = sent.header("traceparent").expect("a traceparent upstream");
    assert_eq!(
        traceparent,
        format!("00-{CALLER_TRACE}-{}-01", hex(&upstream.span_id))
    );
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
        #[prost(int32, tag = "6")]
        pub kind: i32,
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
        #[prost(int64, optional, tag = "3")]
        pub int_value: Option<i64>,
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

        pub fn int_attribute(&self, key: &str) -> Option<i64> {
            self.attributes
                .iter()
                .find(|kv| kv.key == key)?
                .value
                .as_ref()?
                .int_value
        }
    }
}

/// `[usage_records] otlp_endpoint`: each call's record also goes out as an OpenTelemetry log record, decoded
/// here from the OTLP protobuf the collector received.
#[tokio::test]
async fn usage_records_are_exported_as_otlp_logs() {
    let collector = Upstream::start(vec![Reply::json(200, "")]).await;
    let up = Upstream::start(vec![Reply::json(200, &completion("ok", "stop", 10, 5))]).await;
    let top = format!(
        "[usage_records]\notlp_endpoint = \"http://{}/v1/logs\"",
        collector.addr
    );
    let mut gw = Gateway::start(config(&priced_config_text(&up.base_url(), &top, "", ""))).await;
    let mut req = authed(generate("m", "hi"), KEY);
    req.metadata_mut()
        .insert("x-request-id", "otlp-bill-1".parse().unwrap());
    gw.client().await.generate(req).await.unwrap();
    gw.shutdown();
    gw.task.await.unwrap(); // shutdown flushes the exporter
    let sent = collector.requests();
    assert!(!sent.is_empty(), "nothing exported");
    assert_eq!(sent[0].path, "/v1/logs");
    let records: Vec<logs::LogRecord> = sent
        .iter()
        .map(|r| <logs::Export as prost::Message>::decode(r.raw_body.as_slice()).unwrap())
        .flat_map(|e| e.resource_logs)
        .flat_map(|r| r.scope_logs)
        .flat_map(|s| s.log_records)
        .collect();
    let ours = records
        .iter()
        .find(|r| r.text("request_id") == Some("otlp-bill-1"))
        .expect("the call's record");
    assert_eq!(ours.event_name, "aigw.usage");
    assert_eq!(ours.text("key"), Some("tester"));
    assert_eq!(ours.text("gen_ai.request.model"), Some("m"));
    assert_eq!(ours.text("code"), Some("OK"));
    assert_eq!(ours.int("gen_ai.usage.input_tokens"), Some(10));
    assert_eq!(ours.int("gen_ai.usage.output_tokens"), Some(5));
}

/// Just enough of OTLP's logs protobuf (opentelemetry-proto's `logs/v1`) to read records back.
mod logs {
    use super::wire::{AnyValue, KeyValue};

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Export {
        #[prost(message, repeated, tag = "1")]
        pub resource_logs: Vec<ResourceLogs>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceLogs {
        #[prost(message, repeated, tag = "2")]
        pub scope_logs: Vec<ScopeLogs>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeLogs {
        #[prost(message, repeated, tag = "2")]
        pub log_records: Vec<LogRecord>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LogRecord {
        #[prost(message, repeated, tag = "6")]
        pub attributes: Vec<KeyValue>,
        #[prost(string, tag = "12")]
        pub event_name: String,
    }

    impl LogRecord {
        fn value(&self, key: &str) -> Option<&AnyValue> {
            self.attributes
                .iter()
                .find(|kv| kv.key == key)?
                .value
                .as_ref()
        }
        pub fn text(&self, key: &str) -> Option<&str> {
            self.value(key)?.string_value.as_deref()
        }
        pub fn int(&self, key: &str) -> Option<i64> {
            self.value(key)?.int_value
        }
    }
}
