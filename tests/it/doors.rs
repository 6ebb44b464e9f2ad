//! Every door holds a key's allow-list, rate limit and budget, each refusal in that door's own shape: the three
//! RPCs and `Embed` over gRPC, `Generate` over gRPC-Web, and the REST doors (chat completions, Responses,
//! Messages, streamed or not, and embeddings). One table of doors, one check per limit, against the in-process
//! mock upstream.

use crate::common::*;
use aigw::proto::{
    interactive_request::Action, interactive_response::Event, EmbedRequest, InteractiveRequest,
    SessionStart, UserTurn,
};
use serde_json::{json, Value};
use tokio_stream::wrappers::ReceiverStream;

/// Key "tester" with `limits`; key "limited" allowed model "small" only. "big" and the embedding model "emb" cost
/// a dollar a token, so one call spends any budget under a dollar.
fn doors_config(limits: &str) -> aigw::config::Config {
    config(&format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [[keys]]
        name = "tester"
        env = "TEST_KEY"
        limits = {{ {limits} }}
        [[keys]]
        name = "limited"
        env = "TEST_LIMITED_KEY"
        models = ["small"]
        [[upstreams]]
        name = "mock"
        kind = "mock"
        first_token_latency = "0s"
        [[models]]
        name = "big"
        max_output_tokens = 100
        price = {{ input_per_million = 1000000.0, output_per_million = 1000000.0 }}
        routes = [{{ upstream = "mock", model = "big" }}]
        [[models]]
        name = "small"
        max_output_tokens = 100
        routes = [{{ upstream = "mock", model = "small" }}]
        [[models]]
        name = "emb"
        kind = "embedding"
        price = {{ input_per_million = 1000000.0 }}
        routes = [{{ upstream = "mock", model = "text-embedding-3-small" }}]
        "#
    ))
}

#[derive(Clone, Copy, Debug)]
enum Door {
    Generate,
    StreamGenerate,
    InteractiveStream,
    Embed,
    GrpcWeb,
    Rest { path: &'static str, stream: bool },
}

/// What a door's refusals look like: gRPC codes, or an HTTP status and the dialect's error type.
#[derive(Clone, Copy, PartialEq)]
enum Dialect {
    Grpc,
    OpenAi,
    Anthropic,
}

const DOORS: [Door; 12] = [
    Door::Generate,
    Door::StreamGenerate,
    Door::InteractiveStream,
    Door::Embed,
    Door::GrpcWeb,
    Door::Rest {
        path: "/v1/chat/completions",
        stream: false,
    },
    Door::Rest {
        path: "/v1/chat/completions",
        stream: true,
    },
    Door::Rest {
        path: "/v1/responses",
        stream: false,
    },
    Door::Rest {
        path: "/v1/responses",
        stream: true,
    },
    Door::Rest {
        path: "/v1/messages",
        stream: false,
    },
    Door::Rest {
        path: "/v1/messages",
        stream: true,
    },
    Door::Rest {
        path: "/v1/embeddings",
        stream: false,
    },
];

#[derive(Debug, PartialEq)]
enum Outcome {
    Answered,
    /// The gRPC code's name, or "HTTP-status error-type"; and the message.
    Refused(String, String),
}

impl Door {
    fn dialect(self) -> Dialect {
        match self {
            Door::Rest {
                path: "/v1/messages",
                ..
            } => Dialect::Anthropic,
            Door::Rest { .. } => Dialect::OpenAi,
            _ => Dialect::Grpc,
        }
    }

    fn embeds(self) -> bool {
        matches!(
            self,
            Door::Embed
                | Door::Rest {
                    path: "/v1/embeddings",
                    ..
                }
        )
    }

    /// The model this door asks for: "emb" for embeddings, "big" otherwise.
    fn model(self) -> &'static str {
        if self.embeds() {
            "emb"
        } else {
            "big"
        }
    }

    async fn call(self, gw: &Gateway, key: &str) -> Outcome {
        let refused =
            |s: tonic::Status| Outcome::Refused(format!("{:?}", s.code()), s.message().into());
        let model = self.model();
        let mut client = gw.client().await;
        match self {
            Door::Generate => match client.generate(authed(generate(model, "hi"), key)).await {
                Ok(_) => Outcome::Answered,
                Err(s) => refused(s),
            },
            Door::StreamGenerate => {
                match client
                    .stream_generate(authed(stream_request(model, "hi"), key))
                    .await
                {
                    Ok(s) => {
                        let (chunks, end) = read_to_end(&mut s.into_inner()).await;
                        match end {
                            Some(s) => refused(s),
                            None => {
                                assert!(chunks.last().unwrap().is_complete);
                                Outcome::Answered
                            }
                        }
                    }
                    Err(s) => refused(s),
                }
            }
            Door::InteractiveStream => {
                let (tx, rx) = tokio::sync::mpsc::channel(4);
                for action in [
                    Action::Start(SessionStart {
                        model: model.into(),
                        ..Default::default()
                    }),
                    Action::Turn(UserTurn {
                        content: "hi".into(),
                        ..Default::default()
                    }),
                ] {
                    tx.send(InteractiveRequest {
                        action: Some(action),
                    })
                    .await
                    .unwrap();
                }
                let mut events = match client
                    .interactive_stream(authed(ReceiverStream::new(rx), key))
                    .await
                {
                    Ok(events) => events.into_inner(),
                    Err(s) => return refused(s),
                };
                loop {
                    match events.message().await {
                        Ok(Some(m)) => match m.event {
                            Some(Event::Complete(_)) => return Outcome::Answered,
                            Some(Event::Error(e)) => {
                                return refused(tonic::Status::new(e.code.into(), e.message))
                            }
                            _ => {}
                        },
                        Ok(None) => panic!("the session ended without an answer or an error"),
                        Err(s) => return refused(s),
                    }
                }
            }
            Door::Embed => {
                let req = EmbedRequest {
                    model: model.into(),
                    input: vec!["hi".into()],
                    ..Default::default()
                };
                match client.embed(authed(req, key)).await {
                    Ok(_) => Outcome::Answered,
                    Err(s) => refused(s),
                }
            }
            Door::GrpcWeb => grpc_web(gw, key, model).await,
            Door::Rest { path, stream } => {
                let hi = json!([{"role": "user", "content": "hi"}]);
                let body = match path {
                    "/v1/chat/completions" => {
                        json!({"model": model, "messages": hi, "stream": stream})
                    }
                    "/v1/responses" => json!({"model": model, "input": "hi", "stream": stream}),
                    "/v1/messages" => {
                        json!({"model": model, "max_tokens": 5, "messages": hi, "stream": stream})
                    }
                    _ => json!({"model": model, "input": "hi"}),
                };
                let (status, text) = post_json(gw, path, key, &body).await;
                if status == 200 {
                    return Outcome::Answered;
                }
                let error: Value = serde_json::from_str(&text).unwrap();
                Outcome::Refused(
                    format!("{status} {}", error["error"]["type"].as_str().unwrap()),
                    error["error"]["message"].as_str().unwrap().into(),
                )
            }
        }
    }
}

/// `Generate` as a browser's gRPC-Web client sends it, over HTTP/1.1: a refusal comes as a trailers-only answer
/// (the status in the headers), an answer as a message frame and a trailer frame.
async fn grpc_web(gw: &Gateway, key: &str, model: &str) -> Outcome {
    match grpc_web_generate(gw, key, model, "hi").await {
        Ok(_) => Outcome::Answered,
        Err((code, message)) => Outcome::Refused(format!("{code:?}"), percent_decoded(&message)),
    }
}

/// A `grpc-message` value as written: percent-encoded (gRPC's HTTP/2 protocol).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], text.get(i + 1..i + 3)) {
            (b'%', Some(hex)) => {
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// The refusal a door gives for a limit: `(gRPC code, OpenAI status and type, Anthropic status and type)`.
fn expected(door: Door, grpc: &str, openai: &str, anthropic: &str) -> String {
    match door.dialect() {
        Dialect::Grpc => grpc,
        Dialect::OpenAi => openai,
        Dialect::Anthropic => anthropic,
    }
    .to_owned()
}

#[tokio::test]
async fn an_allow_list_holds_on_every_door() {
    let gw = Gateway::start(doors_config("")).await;
    for door in DOORS {
        let Outcome::Refused(status, message) = door.call(&gw, LIMITED_KEY).await else {
            panic!("{door:?}: a model the key may not use was answered");
        };
        let want = expected(
            door,
            "PermissionDenied",
            "403 permission_error",
            "403 permission_error",
        );
        assert_eq!(status, want, "{door:?}: {message}");
        assert!(message.contains(door.model()), "{door:?}: {message}");
    }
    // Nothing reached the upstream.
    let (_, text) = admin_get(&gw, "/metrics", None).await;
    assert!(
        !text.contains("aigw_upstream_duration_seconds_count"),
        "{text}"
    );
}

#[tokio::test]
async fn a_rate_limit_holds_on_every_door() {
    for door in DOORS {
        // A gateway per door: the key's window starts empty.
        let gw = Gateway::start(doors_config("rpm = 1")).await;
        assert_eq!(door.call(&gw, KEY).await, Outcome::Answered, "{door:?}");
        let Outcome::Refused(status, message) = door.call(&gw, KEY).await else {
            panic!("{door:?}: a second call in the minute was answered");
        };
        let want = expected(
            door,
            "ResourceExhausted",
            "429 requests",
            "429 rate_limit_error",
        );
        assert_eq!(status, want, "{door:?}: {message}");
        assert!(
            message.contains("1 requests per minute"),
            "{door:?}: {message}"
        );
    }
}

#[tokio::test]
async fn a_budget_holds_on_every_door() {
    for door in DOORS {
        let gw = Gateway::start(doors_config("daily_budget_usd = 0.5")).await;
        assert_eq!(door.call(&gw, KEY).await, Outcome::Answered, "{door:?}");
        cost_booked(&gw, "tester", door.model()).await;
        let Outcome::Refused(status, message) = door.call(&gw, KEY).await else {
            panic!("{door:?}: a call over the spent budget was answered");
        };
        let want = expected(
            door,
            "ResourceExhausted",
            "429 insufficient_quota",
            "429 rate_limit_error",
        );
        assert_eq!(status, want, "{door:?}: {message}");
        assert!(message.contains("daily budget"), "{door:?}: {message}");
    }
}

/// Reads a stream to its end: the chunks, and the status it ended with when not OK.
async fn read_to_end(
    stream: &mut tonic::Streaming<aigw::proto::StreamChunk>,
) -> (Vec<aigw::proto::StreamChunk>, Option<tonic::Status>) {
    let mut chunks = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(chunk)) => chunks.push(chunk),
            Ok(None) => return (chunks, None),
            Err(status) => return (chunks, Some(status)),
        }
    }
}
