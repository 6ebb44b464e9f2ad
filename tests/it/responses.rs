//! The Responses door (`POST /v1/responses`) on an Anthropic upstream and an OpenAI-style one: the same event
//! sequence whatever the upstream speaks, and a stream that breaks after its start ends in `error` and
//! `response.failed`, never in a completion.

use crate::common::{upstream::*, *};
use serde_json::{json, Value};

/// The events of an SSE body: (event name, data).
fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_default();
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            (name.to_owned(), serde_json::from_str(data).unwrap())
        })
        .collect()
}

async fn post(gw: &Gateway, body: Value) -> (u16, String) {
    post_json(gw, "/v1/responses", KEY, &body).await
}

#[tokio::test]
async fn an_anthropic_upstream_streams_the_documented_events() {
    let start = json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
        "model": "claude", "content": [], "stop_reason": null, "usage": {"input_tokens": 9, "output_tokens": 1}}});
    let stream = vec![
        start,
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}}),
        json!({"type": "message_stop"}),
    ];
    let up = Upstream::start(vec![Reply::anthropic_sse(&stream)]).await;
    let text = crate::anthropic::anthropic_config_text(&up);
    let gw = Gateway::start(config(&text)).await;
    let (status, body) = post(
        &gw,
        json!({"model": "claude", "input": "hi", "instructions": "Be brief.", "stream": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let got = events(&body);
    let kinds: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    for (i, (kind, data)) in got.iter().enumerate() {
        assert_eq!(data["type"], *kind);
        assert_eq!(data["sequence_number"], i);
    }
    let done = &got.last().unwrap().1["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(done["usage"]["input_tokens"], 9);
    assert_eq!(done["usage"]["output_tokens"], 2);
    // Instructions went as Anthropic's system prompt.
    assert_eq!(up.requests()[0].body["system"], "Be brief.");
}

/// A Responses stream on `up` that must end in `error` and `response.failed`: its event kinds, and the failed
/// response.
async fn failed_stream(up: &Upstream) -> (Vec<String>, Value) {
    let gw = Gateway::without_retries(up).await;
    let (status, body) = post(&gw, json!({"model": "big", "input": "hi", "stream": true})).await;
    assert_eq!(status, 200);
    let mut got = events(&body);
    let kinds: Vec<String> = got.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(
        &kinds[kinds.len() - 2..],
        ["error", "response.failed"],
        "{:?}",
        &kinds[kinds.len().saturating_sub(3)..]
    );
    let failed = got.pop().unwrap().1["response"].take();
    (kinds, failed)
}

#[tokio::test]
async fn a_stream_broken_after_its_start_fails_and_never_completes() {
    let mut words = stream_of(&["par", "tial"]);
    words.truncate(3); // role and two deltas: no finish, no [DONE]
    let up = Upstream::start(vec![Reply::sse(&words).end(End::Reset)]).await;
    let (kinds, failed) = failed_stream(&up).await;
    assert!(!kinds.iter().any(|k| k == "response.completed"));
    assert_eq!(failed["status"], "failed");
    assert!(failed["error"]["message"]
        .as_str()
        .unwrap()
        .contains("scripted"));
}

/// A Responses stream repeats its answer in its closing events, so it keeps what it sent: past 8 MiB kept, the
/// stream ends with `response.failed` (`memory_exhausted`) instead of holding an endless answer four times over,
/// and the upstream, which would go on, is let go.
#[tokio::test]
async fn an_answer_past_what_a_responses_stream_keeps_fails_the_stream() {
    let piece = "x".repeat(256 << 10);
    let chunks: Vec<String> = std::iter::once(role_chunk())
        .chain((0..40).map(|_| chunk(&piece)))
        .collect();
    let up = Upstream::start(vec![Reply::sse(&chunks).end(End::Hang)]).await;
    let (kinds, failed) = failed_stream(&up).await;
    let deltas = kinds
        .iter()
        .filter(|k| *k == "response.output_text.delta")
        .count();
    assert_eq!(deltas, 33, "the deltas up to the first past 8 MiB went out");
    assert_eq!(failed["error"]["code"], "memory_exhausted");
    eventually("the upstream request is dropped", || async {
        (up.aborted() == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn refusals_are_openai_errors_before_any_upstream_call() {
    let up = Upstream::start(vec![]).await;
    let gw = Gateway::without_retries(&up).await;
    for (body, status, says) in [
        (
            json!({"model": "big", "input": "x", "tool_choice": {"type": "file_search"}}),
            400,
            "tool_choice",
        ),
        (
            json!({"model": "big", "input": "x", "previous_response_id": "resp_nope"}),
            400,
            "resp_nope",
        ),
        (json!({"model": "nope", "input": "x"}), 404, "unknown model"),
    ] {
        let (got, text) = post(&gw, body.clone()).await;
        assert_eq!(got, status, "{body}: {text}");
        let err: Value = serde_json::from_str(&text).unwrap();
        assert!(
            err["error"]["message"].as_str().unwrap().contains(says),
            "{text}"
        );
    }
    assert_eq!(up.calls(), 0);
}

/// A field a client adds that the gateway does not model (Codex's `client_metadata`) and a hosted tool it does
/// not run are left out, named in `aigw-dropped`, and never reach a chat-completions upstream; a field whose
/// absence would change the answer is still refused.
#[tokio::test]
async fn fields_the_door_does_not_model_are_left_out_and_named() {
    let up = Upstream::start(vec![Reply::json(200, &completion("ok", "stop", 3, 1))]).await;
    let gw = Gateway::without_retries(&up).await;
    let resp = http()
        .post(format!("http://{}/v1/responses", gw.addr))
        .bearer_auth(KEY)
        .body(
            json!({"model": "big", "input": "hi", "client_metadata": {"x-codex-turn": "1"},
                   "a_new_field": true, "tools": [{"type": "web_search", "external_web_access": false}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["aigw-dropped"],
        "a_new_field, client_metadata, tools[0]:web_search"
    );
    let sent = &up.requests()[0].body;
    assert!(
        sent.get("client_metadata").is_none()
            && sent.get("a_new_field").is_none()
            && sent.get("tools").is_none(),
        "{sent}"
    );
    let (status, text) = post(
        &gw,
        json!({"model": "big", "input": "hi", "conversation": "conv_1"}),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("conversation"), "{text}");
}

/// An upstream that speaks the Responses API itself (`kind = "responses"`) gets what the client sent that the
/// gateway does not model — Codex's `client_metadata`, `include`, `service_tier`, `prompt_cache_key`,
/// `metadata`, `reasoning.summary`, a hosted tool — and its encrypted reasoning back with its id; its events come
/// back to the client with the provider's reasoning id and encrypted content, and nothing is named as left out.
#[tokio::test]
async fn a_responses_upstream_gets_what_the_door_does_not_model() {
    let events_up = [
        json!({"type": "response.created", "response": {"id": "resp_up", "model": "up-big", "status": "in_progress", "output": []}}),
        json!({"type": "response.output_item.added", "output_index": 0, "item": {"type": "reasoning", "id": "rs_new", "summary": []}}),
        json!({"type": "response.reasoning_summary_text.delta", "item_id": "rs_new", "delta": "Run it."}),
        json!({"type": "response.output_item.done", "output_index": 0,
               "item": {"type": "reasoning", "id": "rs_new", "summary": [], "encrypted_content": "enc_new"}}),
        json!({"type": "response.output_item.added", "output_index": 1,
               "item": {"type": "function_call", "id": "fc_1", "call_id": "call_2", "name": "exec_command", "arguments": ""}}),
        json!({"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": "{\"cmd\":"}),
        json!({"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": "\"ls\"}"}),
        json!({"type": "response.completed", "response": {"id": "resp_up", "status": "completed", "output": [],
               "usage": {"input_tokens": 30, "output_tokens": 8, "output_tokens_details": {"reasoning_tokens": 5}}}}),
    ];
    let up = Upstream::start(vec![Reply::anthropic_sse(&events_up)]).await;
    let text =
        config_text(&up.base_url(), "").replace(r#"kind = "openai""#, r#"kind = "responses""#);
    let gw = Gateway::start(config(&text)).await;
    let namespace = json!({"type": "namespace", "name": "agents", "description": "Sub-agents",
        "tools": [{"type": "function", "name": "close_agent", "parameters": {"type": "object"}}]});
    let resp = http()
        .post(format!("http://{}/v1/responses", gw.addr))
        .bearer_auth(KEY)
        .body(
            json!({"model": "big", "stream": true, "store": false,
                "client_metadata": {"x-codex-turn": "2"}, "include": ["reasoning.encrypted_content"],
                "service_tier": "priority", "prompt_cache_key": "session-1", "metadata": {"team": "infra"},
                "reasoning": {"effort": "high", "summary": "auto"}, "text": {"verbosity": "low"},
                "tools": [{"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
                          {"type": "web_search", "external_web_access": false}, namespace.clone()],
                "input": [
                    {"type": "message", "role": "user", "content": "list files"},
                    {"type": "function_call", "call_id": "call_0", "name": "close_agent", "namespace": "agents",
                     "arguments": "{}"},
                    {"type": "function_call_output", "call_id": "call_0", "output": "closed"},
                    {"type": "reasoning", "id": "rs_prev", "summary": [], "encrypted_content": "enc_prev"},
                    {"type": "function_call", "call_id": "call_1", "name": "exec_command", "arguments": "{}"},
                    {"type": "function_call_output", "call_id": "call_1", "output": "nothing"}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("aigw-dropped").is_none());
    let got = events(&resp.text().await.unwrap());
    // What the upstream got.
    let seen = &up.requests()[0];
    assert_eq!(seen.path, "/v1/responses");
    let sent = &seen.body;
    for (field, value) in [
        ("model", json!("up-big")),
        ("client_metadata", json!({"x-codex-turn": "2"})),
        ("service_tier", json!("priority")),
        ("prompt_cache_key", json!("session-1")),
        ("metadata", json!({"team": "infra"})),
        ("reasoning", json!({"effort": "high", "summary": "auto"})),
        ("text", json!({"verbosity": "low"})),
        ("include", json!(["reasoning.encrypted_content"])),
        ("store", json!(false)),
    ] {
        assert_eq!(sent[field], value, "{field}: {sent}");
    }
    // Tools as the client sent them: its function, the hosted tool, the namespace whole (not flattened).
    assert_eq!(
        sent["tools"],
        json!([{"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
               {"type": "web_search", "external_web_access": false}, namespace])
    );
    assert_eq!(
        sent["input"][1],
        json!({"type": "function_call", "call_id": "call_0", "name": "close_agent", "namespace": "agents",
               "arguments": "{}"})
    );
    assert_eq!(
        sent["input"][3],
        json!({"type": "reasoning", "id": "rs_prev", "summary": [], "encrypted_content": "enc_prev"})
    );
    // What the client got: the provider's reasoning item (its id, its encrypted content), the call in pieces.
    let done: Vec<&Value> = got
        .iter()
        .filter(|(k, _)| k == "response.output_item.done")
        .map(|(_, e)| &e["item"])
        .collect();
    assert_eq!(done[0]["id"], "rs_new");
    assert_eq!(done[0]["encrypted_content"], "enc_new");
    assert_eq!(done[0]["summary"][0]["text"], "Run it.");
    assert_eq!(
        (done[1]["name"].as_str(), done[1]["arguments"].as_str()),
        (Some("exec_command"), Some(r#"{"cmd":"ls"}"#))
    );
    let args = got
        .iter()
        .filter(|(k, _)| k == "response.function_call_arguments.delta")
        .count();
    assert_eq!(args, 2);
    let completed = &got.last().unwrap().1["response"];
    assert_eq!(
        completed["usage"]["output_tokens_details"]["reasoning_tokens"],
        5
    );
}

/// A strict route refuses what its upstream's API would leave out, rather than leave it out: nothing reaches the
/// upstream, and the client hears what and why.
#[tokio::test]
async fn a_strict_route_refuses_what_it_would_leave_out() {
    let up = Upstream::start(vec![Reply::json(200, &completion("ok", "stop", 3, 1))]).await;
    let text = config_text(&up.base_url(), "").replace(
        r#"routes = [{ upstream = "scripted", model = "up-big" }]"#,
        r#"routes = [{ upstream = "scripted", model = "up-big", strict = true }]"#,
    );
    let gw = Gateway::start(config(&text)).await;
    let (status, text) = post(
        &gw,
        json!({"model": "big", "input": "hi", "client_metadata": {"x-codex-turn": "1"}}),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("client_metadata") && text.contains("strict"),
        "{text}"
    );
    assert_eq!(up.calls(), 0);
    // What it can take whole goes through.
    let (status, text) = post(&gw, json!({"model": "big", "input": "hi"})).await;
    assert_eq!(status, 200, "{text}");
}

/// A stored response can be read back (`GET /v1/responses/{id}`), its input items listed (newest first, or in
/// order), and deleted, after which it can neither be read nor continued; another key never sees it.
#[tokio::test]
async fn stored_responses_are_read_listed_and_deleted() {
    let up = Upstream::start(vec![Reply::json(200, &completion("kept", "stop", 3, 1))]).await;
    let gw = Gateway::without_retries(&up).await;
    let (status, text) = post(
        &gw,
        json!({"model": "big", "input": [
            {"type": "message", "id": "msg_a", "role": "user", "content": "first"},
            {"type": "message", "id": "msg_b", "role": "user", "content": "second"}]}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let made: Value = serde_json::from_str(&text).unwrap();
    let id = made["id"].as_str().unwrap();
    let call = |method: reqwest::Method, path: String, key: &'static str| {
        let gw = format!("http://{}", gw.addr);
        async move {
            let resp = http()
                .request(method, format!("{gw}{path}"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (
                status,
                serde_json::from_str::<Value>(&resp.text().await.unwrap()).unwrap(),
            )
        }
    };
    let (status, got) = call(reqwest::Method::GET, format!("/v1/responses/{id}"), KEY).await;
    assert_eq!(status, 200);
    assert_eq!(got, made);
    let (status, items) = call(
        reqwest::Method::GET,
        format!("/v1/responses/{id}/input_items"),
        KEY,
    )
    .await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = items["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["msg_b", "msg_a"]);
    let (_, items) = call(
        reqwest::Method::GET,
        format!("/v1/responses/{id}/input_items?order=asc&limit=1"),
        KEY,
    )
    .await;
    assert_eq!(
        (items["first_id"].as_str(), items["has_more"].as_bool()),
        (Some("msg_a"), Some(true))
    );
    let (status, _) = call(
        reqwest::Method::GET,
        format!("/v1/responses/{id}"),
        LIMITED_KEY,
    )
    .await;
    assert_eq!(status, 404, "another key's response");
    let (status, deleted) = call(reqwest::Method::DELETE, format!("/v1/responses/{id}"), KEY).await;
    assert_eq!(status, 200);
    assert_eq!(
        deleted,
        json!({"id": id, "object": "response.deleted", "deleted": true})
    );
    let (status, _) = call(reqwest::Method::GET, format!("/v1/responses/{id}"), KEY).await;
    assert_eq!(status, 404);
    let (status, text) = post(
        &gw,
        json!({"model": "big", "input": "more", "previous_response_id": id}),
    )
    .await;
    assert_eq!(status, 400, "{text}");
}
