//! InteractiveStream: a chat session on one bidirectional stream, against a scripted upstream.

use crate::common::{upstream::*, *};
use aigw::proto::{
    interactive_request::Action, interactive_response::Event, CancelTurn, InteractiveRequest,
    InteractiveResponse, SessionStart, UserTurn,
};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};

struct Session {
    tx: mpsc::Sender<InteractiveRequest>,
    rx: Streaming<InteractiveResponse>,
}

fn start(model: &str, system_prompt: &str) -> InteractiveRequest {
    InteractiveRequest {
        action: Some(Action::Start(SessionStart {
            model: model.into(),
            config: None,
            system_prompt: system_prompt.into(),
            history: vec![],
        })),
    }
}

impl Session {
    async fn open(gw: &Gateway, key: &str, first: InteractiveRequest) -> Result<Session, Status> {
        let (tx, rx) = mpsc::channel(8);
        tx.send(first).await.unwrap();
        let rx = gw
            .client()
            .await
            .interactive_stream(authed(ReceiverStream::new(rx), key))
            .await?
            .into_inner();
        Ok(Session { tx, rx })
    }

    async fn send(&self, action: Action) {
        self.tx
            .send(InteractiveRequest {
                action: Some(action),
            })
            .await
            .unwrap();
    }

    async fn say(&self, content: &str) {
        self.send(Action::Turn(UserTurn {
            content: content.into(),
            name: String::new(),
            ..Default::default()
        }))
        .await;
    }

    async fn next(&mut self) -> Result<InteractiveResponse, Status> {
        Ok(self.rx.message().await?.expect("the session ended early"))
    }

    /// Reads one turn to its end: (turn, text, last event).
    async fn turn(&mut self) -> (u32, String, Event) {
        let mut text = String::new();
        loop {
            let msg = self.next().await.unwrap();
            match msg.event.unwrap() {
                Event::Delta(d) => text.push_str(&d.delta),
                Event::Started(_) => panic!("unexpected SessionStarted"),
                end => return (msg.turn, text, end),
            }
        }
    }
}

#[tokio::test]
async fn a_two_turn_conversation_keeps_its_history() {
    let up = Upstream::start(vec![
        Reply::sse(&stream_of(&["Hi", " Ann"])),
        Reply::sse(&stream_of(&["You", " are", " Ann"])),
    ])
    .await;
    let gw = Gateway::in_front_of(&up).await;
    let mut s = Session::open(&gw, KEY, start("big-alias", "be brief"))
        .await
        .unwrap();
    match s.next().await.unwrap() {
        InteractiveResponse {
            turn: 0,
            event: Some(Event::Started(started)),
        } => {
            assert_eq!(started.model, "big");
            assert_eq!(started.max_history_messages, 8);
        }
        other => panic!("expected SessionStarted, got {other:?}"),
    }
    s.say("my name is Ann").await;
    let (turn, text, end) = s.turn().await;
    assert_eq!((turn, text.as_str()), (1, "Hi Ann"));
    let Event::Complete(done) = end else {
        panic!("turn 1 failed: {end:?}")
    };
    assert_eq!(done.finish_reason, "stop");
    assert_eq!(done.usage.unwrap().completion_tokens, 2);

    s.say("what is my name?").await;
    let (turn, text, end) = s.turn().await;
    assert_eq!((turn, text.as_str()), (2, "You are Ann"));
    assert!(matches!(end, Event::Complete(_)));

    // The second upstream call carried the whole conversation.
    let second = &up.requests()[1].body;
    assert_eq!(
        second["messages"],
        json!([
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "my name is Ann"},
            {"role": "assistant", "content": "Hi Ann"},
            {"role": "user", "content": "what is my name?"},
        ])
    );
    assert_eq!(second["model"], "up-big");
    assert_eq!(second["stream"], true);
    // Each turn's time to its first piece is measured, as a stream's.
    let (_, metrics) = admin_get(&gw, "/metrics", None).await;
    assert_eq!(
        metric(
            &metrics,
            r#"aigw_time_to_first_token_seconds_count{model="big"}"#
        ),
        2.0
    );

    drop(s.tx); // half-close: the session ends with OK
    assert!(s.rx.message().await.unwrap().is_none());
}

#[tokio::test]
async fn cancelling_a_turn_keeps_the_session() {
    let up = Upstream::start(vec![
        Reply::sse(&[role_chunk(), chunk("part")]).end(End::Hang),
        Reply::sse(&stream_of(&["fresh"])),
    ])
    .await;
    let gw = Gateway::in_front_of(&up).await;
    let mut s = Session::open(&gw, KEY, start("big", "")).await.unwrap();
    s.next().await.unwrap(); // started
    s.say("tell me a long story").await;
    let first = s.next().await.unwrap();
    assert_eq!(first.turn, 1);
    assert!(matches!(first.event, Some(Event::Delta(ref d)) if d.delta == "part"));
    s.send(Action::Cancel(CancelTurn { turn: 1 })).await;
    let (turn, _, end) = s.turn().await;
    assert_eq!(turn, 1);
    let Event::Error(err) = end else {
        panic!("expected a turn error, got {end:?}")
    };
    assert_eq!(err.code, Code::Cancelled as i32);
    up.wait_aborted(1).await; // the upstream request was dropped

    s.say("hello again").await;
    let (turn, text, end) = s.turn().await;
    assert_eq!((turn, text.as_str()), (2, "fresh"));
    assert!(matches!(end, Event::Complete(_)));
    // The cancelled turn left no trace in the history.
    assert_eq!(
        up.requests()[1].body["messages"],
        json!([{"role": "user", "content": "hello again"}])
    );
}

#[tokio::test]
async fn a_failed_turn_is_reported_in_band_and_the_session_goes_on() {
    let up = Upstream::start(vec![
        Reply::json(503, r#"{"error":{"message":"overloaded"}}"#),
        Reply::sse(&stream_of(&["ok"])),
    ])
    .await;
    let gw = Gateway::without_retries(&up).await;
    let mut s = Session::open(&gw, KEY, start("big", "")).await.unwrap();
    s.next().await.unwrap();
    s.say("one").await;
    let (turn, _, end) = s.turn().await;
    let Event::Error(err) = end else {
        panic!("expected a turn error, got {end:?}")
    };
    assert_eq!((turn, err.code), (1, Code::Unavailable as i32));
    assert!(err.message.contains("overloaded"), "{}", err.message);

    s.say("").await; // an empty turn is refused in-band, too
    let (turn, _, end) = s.turn().await;
    assert!(
        matches!(end, Event::Error(ref e) if e.code == Code::InvalidArgument as i32),
        "{end:?}"
    );
    assert_eq!(turn, 2);

    s.say("two").await;
    let (turn, text, _) = s.turn().await;
    assert_eq!((turn, text.as_str()), (3, "ok"));
    assert_eq!(up.calls(), 2);
}

#[tokio::test]
async fn the_history_is_bounded() {
    let up = Upstream::start(vec![Reply::sse(&stream_of(&["ok"]))]).await;
    let gw = Gateway::in_front_of(&up).await; // max_history_messages = 8
    let mut s = Session::open(&gw, KEY, start("big", "sys")).await.unwrap();
    s.next().await.unwrap();
    for i in 1..=5 {
        s.say(&format!("u{i}")).await;
        assert!(matches!(s.turn().await.2, Event::Complete(_)));
    }
    // After four turns the history (system prompt included) held 9 > 8 messages: the oldest went.
    let fifth = &up.requests()[4].body["messages"];
    let contents: Vec<&str> = fifth
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        ["sys", "ok", "u2", "ok", "u3", "ok", "u4", "ok", "u5"]
    );
}

#[tokio::test]
async fn session_level_errors_end_the_stream() {
    let up = Upstream::start(vec![Reply::sse(&stream_of(&["ok"]))]).await;
    let gw = Gateway::in_front_of(&up).await;
    let status = Session::open(&gw, LIMITED_KEY, start("big", ""))
        .await
        .err()
        .unwrap();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = Session::open(&gw, "sk-nobody", start("big", ""))
        .await
        .err()
        .unwrap();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = Session::open(&gw, KEY, start("gpt-0", ""))
        .await
        .err()
        .unwrap();
    assert_eq!(status.code(), Code::InvalidArgument);
    let not_start = InteractiveRequest {
        action: Some(Action::Turn(UserTurn {
            content: "hi".into(),
            name: String::new(),
            ..Default::default()
        })),
    };
    let status = Session::open(&gw, KEY, not_start).await.err().unwrap();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("SessionStart"));
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn a_rate_limit_ends_the_session_with_a_status() {
    let up = Upstream::start(vec![Reply::sse(&stream_of(&["ok"]))]).await;
    let text = config_text(&up.base_url(), "").replace(
        "name = \"tester\"\n        env = \"TEST_KEY\"",
        "name = \"tester\"\n        env = \"TEST_KEY\"\n        limits = { rpm = 1 }",
    );
    assert!(text.contains("rpm = 1"));
    let gw = Gateway::start(config(&text)).await;
    let mut s = Session::open(&gw, KEY, start("big", "")).await.unwrap();
    s.next().await.unwrap();
    s.say("one").await;
    assert!(matches!(s.turn().await.2, Event::Complete(_)));
    s.say("two").await; // each turn is a request: the second is over the key's 1 per minute
    let status = s.next().await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.metadata().get("retry-after").is_some());
    assert_eq!(up.calls(), 1);
}

/// A session with tools: the model's calls end a turn in `TurnComplete.tool_calls`, the next turn sends the
/// results, and the upstream sees the whole exchange in OpenAI's form.
#[tokio::test]
async fn sessions_carry_tool_calls_and_their_results() {
    use aigw::proto::{GenerationConfig, Tool, ToolResult};
    let call_event = json!({"id": "s", "model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"aigw\"}"}}]},
        "finish_reason": null}]})
    .to_string();
    let up = Upstream::start(vec![
        Reply::sse(&[
            role_chunk(),
            call_event,
            finish_chunk("tool_calls"),
            usage_chunk(9, 4),
            "[DONE]".into(),
        ]),
        Reply::sse(&stream_of(&["a ", "gateway"])),
    ])
    .await;
    let gw = Gateway::in_front_of(&up).await;
    let mut first = start("big", "");
    if let Some(Action::Start(s)) = first.action.as_mut() {
        s.config = Some(GenerationConfig {
            tools: vec![Tool {
                name: "lookup".into(),
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    let mut s = Session::open(&gw, KEY, first).await.unwrap();
    s.next().await.unwrap(); // started
    s.say("what is aigw?").await;
    let (turn, text, end) = s.turn().await;
    assert_eq!((turn, text.as_str()), (1, ""));
    let Event::Complete(done) = end else {
        panic!("{end:?}")
    };
    assert_eq!(done.finish_reason, "tool_calls");
    assert_eq!(done.tool_calls.len(), 1);
    assert_eq!(done.tool_calls[0].arguments, r#"{"q":"aigw"}"#);
    // A result for a call that was never made is refused in-band; the session goes on.
    let result = |id: &str| ToolResult {
        tool_call_id: id.into(),
        content: "a gateway".into(),
    };
    s.send(Action::Turn(UserTurn {
        tool_results: vec![result("call_9")],
        ..Default::default()
    }))
    .await;
    let (turn, _, end) = s.turn().await;
    assert!(
        matches!(end, Event::Error(ref e) if e.code == Code::InvalidArgument as i32 && e.message.contains("call_9")),
        "{end:?}"
    );
    assert_eq!(turn, 2);
    s.send(Action::Turn(UserTurn {
        tool_results: vec![result("call_1")],
        ..Default::default()
    }))
    .await;
    let (turn, text, end) = s.turn().await;
    assert_eq!((turn, text.as_str()), (3, "a gateway"));
    assert!(matches!(end, Event::Complete(_)));
    let sent = &up.requests()[1].body;
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "user", "content": "what is aigw?"},
            {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "lookup", "arguments": "{\"q\":\"aigw\"}"}}]},
            {"role": "tool", "content": "a gateway", "tool_call_id": "call_1"}])
    );
    assert_eq!(sent["tools"][0]["function"]["name"], "lookup");
}

#[tokio::test]
async fn each_turn_goes_upstream_as_its_own_request_id_with_the_sessions_api_headers() {
    let up = Upstream::start(vec![
        Reply::sse(&stream_of(&["one"])),
        Reply::sse(&stream_of(&["two"])),
    ])
    .await;
    let gw = Gateway::in_front_of(&up).await;
    let (tx, rx) = mpsc::channel(8);
    tx.send(start("big", "")).await.unwrap();
    let mut req = authed(ReceiverStream::new(rx), KEY);
    req.metadata_mut()
        .insert("x-request-id", "session-42".parse().unwrap());
    req.metadata_mut()
        .insert("openai-beta", "assistants=v2".parse().unwrap());
    let rx = gw
        .client()
        .await
        .interactive_stream(req)
        .await
        .unwrap()
        .into_inner();
    let mut s = Session { tx, rx };
    s.next().await.unwrap(); // started
    for _ in 0..2 {
        s.say("hi").await;
        assert!(matches!(s.turn().await.2, Event::Complete(_)));
    }
    let ids: Vec<String> = up
        .requests()
        .iter()
        .map(|r| r.header("x-request-id").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(ids, ["session-42-1", "session-42-2"]);
    for r in up.requests() {
        assert_eq!(r.header("openai-beta"), Some("assistants=v2"));
    }
}

#[tokio::test]
async fn a_session_holds_one_concurrency_slot_for_its_life() {
    let up = Upstream::start(vec![Reply::json(200, &completion("x", "stop", 1, 1))]).await;
    let gw = Gateway::start(config(&priced_config_text(
        &up.base_url(),
        "",
        "concurrency = 1",
        "",
    )))
    .await;
    let mut s = Session::open(&gw, KEY, start("m", "")).await.unwrap();
    s.next().await.unwrap(); // started: the slot is taken
    let status = gw
        .client()
        .await
        .generate(authed(generate("m", "hi"), KEY))
        .await
        .unwrap_err();
    assert_status(&status, Code::ResourceExhausted, "concurrency limit");
    // Closing the session frees it.
    drop(s);
    let gwr = &gw;
    eventually("the slot is free once the session ended", || async move {
        gwr.client()
            .await
            .generate(authed(generate("m", "hi"), KEY))
            .await
            .ok()
    })
    .await;
}

#[tokio::test]
async fn the_clients_deadline_bounds_the_whole_session() {
    let up = Upstream::start(vec![Reply::sse(&stream_of(&["hi"]))]).await;
    let gw = Gateway::in_front_of(&up).await;
    let (tx, rx) = mpsc::channel(8);
    tx.send(start("big", "")).await.unwrap();
    let req = authed_with_timeout(
        ReceiverStream::new(rx),
        KEY,
        std::time::Duration::from_secs(2),
    );
    let mut rx = gw
        .raw_client()
        .interactive_stream(req)
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(
        rx.message().await.unwrap().unwrap().event,
        Some(Event::Started(_))
    ));
    // A quiet session: the deadline, not a turn, ends it, with DEADLINE_EXCEEDED.
    let status = loop {
        match rx.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the session ended OK past its deadline"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    drop(tx);
}

#[tokio::test]
async fn one_turn_at_a_time() {
    // Turn 1 hangs upstream; turn 2, sent meanwhile, is refused in-band and the session goes on.
    let up = Upstream::start(vec![
        Reply::sse(&[chunk("a")]).end(End::Hang),
        Reply::sse(&stream_of(&["b"])),
    ])
    .await;
    let gw = Gateway::in_front_of(&up).await;
    let mut s = Session::open(&gw, KEY, start("big", "")).await.unwrap();
    s.next().await.unwrap(); // started
    s.say("first").await;
    let first = s.next().await.unwrap();
    assert_eq!(first.turn, 1, "turn 1 is answering: {first:?}");
    s.say("second").await;
    let refused = s.next().await.unwrap();
    let Some(Event::Error(e)) = refused.event else {
        panic!("turn 2 was not refused: {refused:?}")
    };
    assert_eq!(refused.turn, 2);
    assert!(
        e.message.contains("turn 1 is still in flight"),
        "{}",
        e.message
    );
    s.send(Action::Cancel(CancelTurn { turn: 1 })).await;
    let (turn, _, end) = s.turn().await;
    assert_eq!(turn, 1);
    assert!(matches!(end, Event::Error(_)), "turn 1 ended cancelled");
    s.say("third").await;
    let (turn, text, end) = s.turn().await;
    assert_eq!((turn, text.as_str()), (3, "b"));
    assert!(matches!(end, Event::Complete(_)));
}

#[tokio::test]
async fn a_quiet_session_ends_with_unavailable_at_shutdown() {
    let up = Upstream::start(vec![Reply::sse(&stream_of(&["hi"]))]).await;
    let mut gw = Gateway::in_front_of(&up).await;
    let mut s = Session::open(&gw, KEY, start("big", "")).await.unwrap();
    s.next().await.unwrap(); // started
    gw.shutdown();
    let status = loop {
        match s.rx.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the session ended OK at shutdown"),
            Err(status) => break status,
        }
    };
    assert_status(&status, Code::Unavailable, "shutting down");
}

/// A session's turn with a reasoning model: heartbeats while the model is silent before its answer, then the
/// reasoning pieces tagged with the turn; the turn's reasoning is kept in the history and goes back with the
/// next turn.
#[tokio::test]
async fn a_thinking_turn_sends_heartbeats_then_its_reasoning_which_the_history_keeps() {
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let thinking = json!({"id": "c", "object": "chat.completion.chunk", "model": "up-big",
        "choices": [{"index": 0, "delta": {"reasoning_content": "Let me think."}, "finish_reason": null}]})
    .to_string();
    let mut events = vec![thinking];
    events.extend(stream_of(&["Hi"]).into_iter().skip(1));
    let rest: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    let first = Reply::sse_raw(vec![
        Part::Bytes(format!("data: {}\n\n", role_chunk()).into_bytes()),
        Part::Gate(gate.clone()),
        Part::Bytes(rest.into_bytes()),
    ]);
    let up = Upstream::start(vec![first, Reply::sse(&stream_of(&["Again"]))]).await;
    let gw = Gateway::start(config(&config_with(
        &up.base_url(),
        "",
        r#"stream = { keepalive = "100ms" }"#,
    )))
    .await;
    let mut s = Session::open(&gw, KEY, start("big", "")).await.unwrap();
    assert!(matches!(
        s.next().await.unwrap().event,
        Some(Event::Started(_))
    ));
    s.say("think").await;
    for _ in 0..2 {
        let msg = s.next().await.unwrap();
        let Some(Event::Delta(d)) = msg.event else {
            panic!("{msg:?}")
        };
        assert!(d.heartbeat && d.delta.is_empty() && msg.turn == 1, "{d:?}");
    }
    gate.notify_one();
    let mut reasoning = String::new();
    let last = loop {
        let msg = s.next().await.unwrap();
        match msg.event.unwrap() {
            Event::Delta(d) => {
                reasoning.extend(d.reasoning.map(|r| r.text));
            }
            end => break end,
        }
    };
    assert_eq!(reasoning, "Let me think.");
    let Event::Complete(done) = last else {
        panic!("{last:?}")
    };
    assert_eq!(done.reasoning[0].text, "Let me think.");
    s.say("again").await;
    let (turn, text, _) = s.turn().await;
    assert_eq!((turn, text.as_str()), (2, "Again"));
    let sent = &up.requests()[1].body["messages"];
    assert_eq!(sent[1]["role"], "assistant");
    assert_eq!(sent[1]["reasoning_content"], "Let me think.");
}

/// A turn that cannot fit the session model's context window is refused before any upstream call, as a unary
/// call is: a TurnError (INVALID_ARGUMENT, naming the window), the session open for the next turn. (A session
/// keeps its model: no context fallback.)
#[tokio::test]
async fn a_turn_over_the_context_window_is_refused_before_the_upstream() {
    let up = Upstream::start(vec![Reply::sse(&stream_of(&["ok"]))]).await;
    let gw = Gateway::start(config(&priced_config_text(
        &up.base_url(),
        "",
        "",
        "context_window = 2000",
    )))
    .await;
    let mut s = Session::open(&gw, KEY, start("m", "")).await.unwrap();
    assert!(matches!(
        s.next().await.unwrap().event,
        Some(Event::Started(_))
    ));
    // 5,000 bytes, about 1,254 tokens, plus the default output budget of 1,024.
    s.say(&"word ".repeat(1000)).await;
    let (turn, text, end) = s.turn().await;
    assert_eq!((turn, text.as_str()), (1, ""));
    let Event::Error(e) = end else {
        panic!("the turn went through: {end:?}")
    };
    assert_eq!(e.code, Code::InvalidArgument as i32);
    assert!(
        e.message.contains("model 'm''s context window of 2000"),
        "{}",
        e.message
    );
    assert_eq!(up.calls(), 0, "nothing went upstream");
    s.say("a short question").await;
    let (turn, text, end) = s.turn().await;
    assert_eq!((turn, text.as_str()), (2, "ok"));
    assert!(matches!(end, Event::Complete(_)), "{end:?}");
    assert_eq!(up.calls(), 1);
}
