//! Upstreams of kind "gemini": the scripted upstream speaks Google's Gemini API (`generateContent`, its SSE
//! stream of partial responses, `batchEmbedContents`) and refuses what the real API refuses (`common::gemini`).
//! Every door sees Gemini's thoughts, signatures, calls and usage as it sees Anthropic's and OpenAI's.

use crate::common::{gemini, upstream::*, *};
use crate::reasoning::{
    chat_stream, grpc_stream, messages_stream, post_sse, responses_stream, whole_args, Seen,
    SIGNATURE, THOUGHTS,
};
use aigw::proto::{EmbedRequest, GenerationConfig, Message, Reasoning, ReasoningConfig, ToolCall};
use serde_json::{json, Value};

/// Model "big" (and the embedding model "emb") on a Gemini upstream at `up`, one attempt per call.
fn gemini_config(up: &Upstream) -> aigw::config::Config {
    config(&format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [[keys]]
        name = "tester"
        env = "TEST_KEY"
        [[upstreams]]
        name = "google"
        kind = "gemini"
        base_url = "http://{}/v1beta"
        api_key_env = "TEST_UPSTREAM_KEY"
        [[models]]
        name = "big"
        max_output_tokens = 64000
        default_output_tokens = 8000
        price = {{ input_per_million = 1.25, output_per_million = 10.0, cached_input_per_million = 0.125 }}
        routes = [{{ upstream = "google", model = "gemini-2.5-pro" }}]
        [models.policy]
        retry = {{ attempts = 1 }}
        [[models]]
        name = "emb"
        kind = "embedding"
        routes = [{{ upstream = "google", model = "gemini-embedding-001" }}]
        "#,
        up.addr
    ))
}

/// The call's arguments as Gemini's object comes out in JSON text: compact.
fn compact_args() -> String {
    serde_json::from_str::<Value>(&whole_args())
        .unwrap()
        .to_string()
}

async fn gemini_upstream(script: Vec<Reply>) -> Upstream {
    Upstream::start_checked(script, Some(gemini::check)).await
}

/// A thinking Gemini model's stream: four thought pieces, a line of text, then a function call (whole, as
/// Gemini sends it) carrying the step's thought signature; usage with the finish reason.
fn gemini_stream() -> Vec<String> {
    let chunk = |parts: Value| {
        json!({"candidates": [{"content": {"role": "model", "parts": parts}, "index": 0}],
               "modelVersion": "gemini-2.5-pro", "responseId": "resp-g"})
        .to_string()
    };
    let mut events: Vec<String> = THOUGHTS
        .iter()
        .map(|t| chunk(json!([{"text": t, "thought": true}])))
        .collect();
    events.push(chunk(json!([{"text": "Editing."}])));
    let args: Value = serde_json::from_str(&whole_args()).unwrap();
    events.push(
        json!({"candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"name": "edit_file", "args": args}, "thoughtSignature": SIGNATURE}]},
               "finishReason": "STOP", "index": 0}],
               "usageMetadata": {"promptTokenCount": 25, "candidatesTokenCount": 20, "thoughtsTokenCount": 40,
                                 "totalTokenCount": 85},
               "modelVersion": "gemini-2.5-pro", "responseId": "resp-g"})
        .to_string(),
    );
    events
}

/// Gemini's stream through each door: thoughts piece by piece, then the text, then the call (its arguments in
/// the one piece Gemini sent), the signature with them; the call's finish reason and the thinking tokens.
#[tokio::test]
async fn gemini_thoughts_and_calls_stream_live_on_every_door() {
    let up = gemini_upstream(vec![Reply::sse(&gemini_stream())]).await;
    let gw = Gateway::start(gemini_config(&up)).await;
    let expected = Seen {
        signature: SIGNATURE.into(),
        args: vec![compact_args()],
        ..Seen::expected()
    };

    let (seen, last) = grpc_stream(&gw).await;
    assert_eq!(seen, expected);
    assert_eq!(last.finish_reason, "tool_calls");
    assert_eq!(
        last.reasoning_blocks,
        vec![
            Reasoning {
                text: THOUGHTS.concat(),
                ..Default::default()
            },
            Reasoning {
                signature: SIGNATURE.into(),
                ..Default::default()
            }
        ]
    );
    assert_eq!(last.tool_calls[0].arguments, compact_args());
    let usage = last.usage.unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.reasoning_tokens
        ),
        (25, 60, 40)
    );
    let first = &up.requests()[0];
    assert_eq!(
        first.path,
        "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    );
    // The effort is Gemini 3's thinking level, with the thoughts asked for.
    assert_eq!(
        first.body["generationConfig"]["thinkingConfig"],
        json!({"thinkingLevel": "high", "includeThoughts": true})
    );
    assert!(first.header("authorization").is_none());

    assert_eq!(chat_stream(&gw).await, expected);
    // Anthropic's stream cannot return to a closed block: the signature that came after the text is a thinking
    // block of its own, before the call.
    assert_eq!(
        messages_stream(&gw, 8000, &["thinking", "text", "thinking", "tool_use"]).await,
        expected
    );
    assert_eq!(
        up.requests()[2].body["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 4000, "includeThoughts": true})
    );
    let (seen, done) = responses_stream(&gw).await;
    assert_eq!(
        seen,
        Seen {
            args: vec![compact_args()],
            ..Seen::expected()
        }
    );
    let output = done["output"].as_array().unwrap();
    assert_eq!(output[0]["summary"][0]["text"], THOUGHTS.concat());
    assert_eq!(
        done["usage"]["output_tokens_details"]["reasoning_tokens"],
        40
    );
    assert_eq!(up.calls(), 4, "every request was one the API takes");
}

/// Turn 2 of a tool loop, through each door as the door gave turn 1 out: the signature goes back on the
/// function call's part, byte-exact, and the result names its function.
#[tokio::test]
async fn thought_signatures_round_trip_on_every_door() {
    let up = gemini_upstream(vec![Reply::sse(&gemini_stream())]).await;
    let gw = Gateway::start(gemini_config(&up)).await;
    let thought = THOUGHTS.concat();
    let args: Value = serde_json::from_str(&whole_args()).unwrap();
    let call_id = "call_0";

    let mut req = stream_request("big", "fix main.rs");
    req.messages.push(Message {
        role: "assistant".into(),
        reasoning: vec![
            Reasoning {
                text: thought.clone(),
                ..Default::default()
            },
            Reasoning {
                signature: SIGNATURE.into(),
                ..Default::default()
            },
        ],
        ..assistant_calls(
            "Editing.",
            vec![ToolCall {
                id: call_id.into(),
                name: "edit_file".into(),
                arguments: whole_args(),
            }],
        )
    });
    req.messages.push(tool_result(call_id, "done"));
    let mut s = gw
        .client()
        .await
        .stream_generate(authed(req, KEY))
        .await
        .unwrap()
        .into_inner();
    while s.message().await.unwrap().is_some() {}

    post_sse(
        &gw,
        "/v1/messages",
        json!({"model": "big", "stream": true, "max_tokens": 8000,
               "messages": [{"role": "user", "content": "fix main.rs"},
                   {"role": "assistant", "content": [
                       {"type": "thinking", "thinking": thought, "signature": ""},
                       {"type": "text", "text": "Editing."},
                       {"type": "thinking", "thinking": "", "signature": SIGNATURE},
                       {"type": "tool_use", "id": call_id, "name": "edit_file", "input": args}]},
                   {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": "done"}]}]}),
    )
    .await;

    post_sse(
        &gw,
        "/v1/chat/completions",
        json!({"model": "big", "stream": true,
               "messages": [{"role": "user", "content": "fix main.rs"},
                   {"role": "assistant", "content": "Editing.", "reasoning_content": thought,
                    "thinking_blocks": [{"type": "thinking", "thinking": "", "signature": SIGNATURE}],
                    "tool_calls": [{"id": call_id, "type": "function", "function": {"name": "edit_file", "arguments": whole_args()}}]},
                   {"role": "tool", "tool_call_id": call_id, "content": "done"}]}),
    )
    .await;

    // A client that keeps no reasoning: the call goes back with Google's stand-in signature.
    post_sse(
        &gw,
        "/v1/chat/completions",
        json!({"model": "big", "stream": true,
               "messages": [{"role": "user", "content": "fix main.rs"},
                   {"role": "assistant", "content": null,
                    "tool_calls": [{"id": call_id, "type": "function", "function": {"name": "edit_file", "arguments": whole_args()}}]},
                   {"role": "tool", "tool_call_id": call_id, "content": "done"}]}),
    )
    .await;

    let requests = up.requests();
    assert_eq!(requests.len(), 4);
    for (door, signature, r) in [
        ("gRPC", SIGNATURE, &requests[0]),
        ("Messages", SIGNATURE, &requests[1]),
        ("chat", SIGNATURE, &requests[2]),
        (
            "chat without reasoning",
            "skip_thought_signature_validator",
            &requests[3],
        ),
    ] {
        let contents = &r.body["contents"];
        let model = &contents[1];
        assert_eq!(model["role"], "model", "{door}");
        let call = model["parts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p.get("functionCall").is_some())
            .unwrap_or_else(|| panic!("{door}: no call in {model}"));
        assert_eq!(call["thoughtSignature"], signature, "{door}: {model}");
        assert_eq!(call["functionCall"]["args"], args, "{door}");
        assert_eq!(
            contents[2]["parts"][0]["functionResponse"],
            json!({"id": call_id, "name": "edit_file", "response": {"output": "done"}}),
            "{door}"
        );
        assert!(
            String::from_utf8_lossy(&r.raw_body).contains(signature),
            "{door}"
        );
    }
}

/// A whole answer: an image and a JSON schema go as Gemini's parts and config; thoughts, signature, calls,
/// cached and thinking tokens come back, and the cost prices the cached part apart.
#[tokio::test]
async fn unary_calls_carry_images_json_and_usage() {
    let answer = json!({
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "Counting.", "thought": true},
            {"text": "{\"n\": 3}", "thoughtSignature": "dGV4dC1zaWc="}]},
            "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 1000, "cachedContentTokenCount": 800, "candidatesTokenCount": 5,
                          "thoughtsTokenCount": 12, "totalTokenCount": 1017},
        "modelVersion": "gemini-2.5-pro", "responseId": "resp-u"});
    let up = gemini_upstream(vec![Reply::json(200, &answer.to_string())]).await;
    let gw = Gateway::start(gemini_config(&up)).await;
    let mut req = image_for_json("big");
    if let Some(config) = req.config.as_mut() {
        config.reasoning = Some(ReasoningConfig {
            budget_tokens: Some(1024),
            ..Default::default()
        });
    }
    let r = gw
        .client()
        .await
        .generate(authed(req, KEY))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.content.as_str(), r.finish_reason.as_str(), r.id.as_str()),
        (r#"{"n": 3}"#, "stop", "resp-u")
    );
    // The signature on the part right after the thought is that thought's.
    assert_eq!(
        r.reasoning,
        vec![Reasoning {
            text: "Counting.".into(),
            signature: "dGV4dC1zaWc=".into(),
            ..Default::default()
        }]
    );
    let u = r.usage.unwrap();
    assert_eq!(
        (
            u.prompt_tokens,
            u.cached_prompt_tokens,
            u.completion_tokens,
            u.reasoning_tokens
        ),
        (1000, 800, 17, 12)
    );
    assert!(!r.usage_estimated);
    let sent = &up.requests()[0];
    assert_eq!(sent.path, "/v1beta/models/gemini-2.5-pro:generateContent");
    assert_eq!(
        sent.body["contents"][0]["parts"][1],
        json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw=="}})
    );
    assert_eq!(
        sent.body["generationConfig"]["responseMimeType"],
        "application/json"
    );
    assert_eq!(
        sent.body["generationConfig"]["responseJsonSchema"]["properties"]["n"]["type"],
        "integer"
    );
    cost_booked(&gw, "tester", "big").await;
}

/// Google's errors: a quota refusal's RetryInfo is the client's wait; a field the API does not know is refused
/// by it, and the client hears why; a wrong key is the upstream's fault, not the caller's.
#[tokio::test]
async fn google_errors_map_to_statuses_and_waits() {
    let quota = json!({"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).",
        "status": "RESOURCE_EXHAUSTED", "details": [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}]}});
    let up = gemini_upstream(vec![Reply::json(429, &quota.to_string())]).await;
    let gw = Gateway::start(gemini_config(&up)).await;
    let mut client = gw.client().await;
    let status = client
        .generate(authed(generate("big", "hi"), KEY))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_eq!(retry_after_secs(&status), 37);

    let up = gemini_upstream(vec![Reply::json(200, "{}")]).await;
    let gw = Gateway::start(gemini_config(&up)).await;
    let mut client = gw.client().await;
    let mut options = std::collections::HashMap::new();
    options.insert(
        "gemini".to_owned(),
        aigw::upstream::pass_through::json_to_struct(
            json!({"notAField": 1}).as_object().unwrap().clone(),
        ),
    );
    let req = with_config(
        generate("big", "hi"),
        GenerationConfig {
            dialect_options: options,
            ..Default::default()
        },
    );
    let status = client.generate(authed(req, KEY)).await.unwrap_err();
    assert_status(&status, tonic::Code::InvalidArgument, "notAField");
}

/// A stream whose body ends before a finish reason is broken, not a short answer; one that fails mid-way with
/// Google's error chunk says so.
#[tokio::test]
async fn a_stream_without_a_finish_reason_is_an_error() {
    let cut = gemini_stream()[..5].to_vec();
    let overloaded = vec![
        gemini_stream()[0].clone(),
        json!({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}})
            .to_string(),
    ];
    for (script, needle) in [(cut, "finishReason"), (overloaded, "overloaded")] {
        let up = gemini_upstream(vec![Reply::sse(&script)]).await;
        let gw = Gateway::start(gemini_config(&up)).await;
        let mut s = gw
            .client()
            .await
            .stream_generate(authed(stream_request("big", "hi"), KEY))
            .await
            .unwrap()
            .into_inner();
        let (_, status) = read_to_error(&mut s).await;
        assert_status(&status, tonic::Code::Unavailable, needle);
    }
}

/// A client that goes away mid-stream closes the upstream's connection: Gemini stops generating.
#[tokio::test]
async fn cancellation_reaches_the_upstream() {
    let first: String = format!("data: {}\n\n", gemini_stream()[0]);
    let reply = Reply::sse_raw(vec![Part::Bytes(first.into_bytes())]).end(End::Hang);
    let up = gemini_upstream(vec![reply]).await;
    let gw = Gateway::start(gemini_config(&up)).await;
    let mut s = gw
        .client()
        .await
        .stream_generate(authed(stream_request("big", "hi"), KEY))
        .await
        .unwrap()
        .into_inner();
    let c = s.message().await.unwrap().unwrap();
    assert_eq!(c.reasoning.unwrap().text, THOUGHTS[0]);
    drop(s);
    up.wait_aborted(1).await;
}

/// Embeddings go as one `batchEmbedContents` call, the vectors back in order; Gemini reports no usage, so the
/// gateway counts it and says so.
#[tokio::test]
async fn embeddings_go_as_one_batch() {
    let answer = json!({"embeddings": [{"values": [0.5, -1.0]}, {"values": [0.25, 2.0]}]});
    let up = gemini_upstream(vec![Reply::json(200, &answer.to_string())]).await;
    let gw = Gateway::start(gemini_config(&up)).await;
    let r = gw
        .client()
        .await
        .embed(authed(
            EmbedRequest {
                model: "emb".into(),
                input: vec!["one".into(), "two".into()],
                dimensions: Some(2),
                user: String::new(),
            },
            KEY,
        ))
        .await
        .unwrap()
        .into_inner();
    let vectors: Vec<Vec<f32>> = r.embeddings.into_iter().map(|e| e.values).collect();
    assert_eq!(vectors, vec![vec![0.5, -1.0], vec![0.25, 2.0]]);
    assert!(r.usage_estimated);
    let sent = &up.requests()[0];
    assert_eq!(
        sent.path,
        "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    );
    assert_eq!(
        sent.body["requests"][1],
        json!({"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "two"}]},
               "outputDimensionality": 2})
    );
}

/// Tools through the chat door, unary: the declaration with its JSON Schema, the choice as Gemini's mode, and
/// the call back in OpenAI's shape with an id the gateway made, unique across answers.
#[tokio::test]
async fn tools_through_the_chat_door() {
    let answer = json!({"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Seoul"}}}]},
            "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 4}});
    let up = gemini_upstream(vec![Reply::json(200, &answer.to_string())]).await;
    let gw = Gateway::start(gemini_config(&up)).await;
    let (status, body) = post_json(
        &gw,
        "/v1/chat/completions",
        KEY,
        &json!({"model": "big", "tool_choice": "required", "store": true, "service_tier": "auto", "top_k": 4,
                "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
                "tools": [{"type": "function", "function": {"name": "get_weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
                "messages": [{"role": "user", "content": "weather in Seoul?"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(
        (
            call["function"]["name"].as_str(),
            call["function"]["arguments"].as_str()
        ),
        (Some("get_weather"), Some(r#"{"city":"Seoul"}"#))
    );
    // Gemini 2.5 names no call: the gateway makes an id up, a different one for each call it sees.
    let id = call["id"].as_str().unwrap();
    assert!(id.starts_with("call_"), "{id}");
    let (_, again) = post_json(
        &gw,
        "/v1/chat/completions",
        KEY,
        &json!({"model": "big", "messages": [{"role": "user", "content": "and Busan?"}]}),
    )
    .await;
    let again: Value = serde_json::from_str(&again).unwrap();
    assert_ne!(again["choices"][0]["message"]["tool_calls"][0]["id"], id);
    let sent = &up.requests()[0].body;
    assert_eq!(
        sent["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]["properties"]["city"],
        json!({"type": "string"})
    );
    assert_eq!(sent["toolConfig"]["functionCallingConfig"]["mode"], "ANY");
    // Of the fields for any provider, Gemini's own go (top_k as its topK); OpenAI's would be refused.
    assert_eq!(sent["safetySettings"][0]["threshold"], "BLOCK_NONE");
    assert_eq!(sent["generationConfig"]["topK"], 4);
    assert!(sent.get("store").is_none() && sent.get("service_tier").is_none());
}

/// A session's turns on Gemini: the system prompt as `systemInstruction`, the history as user and model turns.
#[tokio::test]
async fn sessions_speak_gemini() {
    let said = |text: &str| {
        let end = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
            "finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2}});
        Reply::sse(&[end.to_string()])
    };
    let up = gemini_upstream(vec![said("Hello."), said("Fine.")]).await;
    let gw = Gateway::start(gemini_config(&up)).await;
    let answers = session_turns(&gw, "big", &["hi", "how are you?"]).await;
    assert_eq!(answers, [Ok("Hello.".to_owned()), Ok("Fine.".to_owned())]);
    let second = &up.requests()[1].body;
    assert_eq!(
        second["systemInstruction"],
        json!({"parts": [{"text": "Be brief."}]})
    );
    assert_eq!(
        second["contents"],
        json!([{"role": "user", "parts": [{"text": "hi"}]},
               {"role": "model", "parts": [{"text": "Hello."}]},
               {"role": "user", "parts": [{"text": "how are you?"}]}])
    );
}

/// The Messages door's `count_tokens` in front of Gemini: Gemini's `countTokens` of the whole request as the
/// route would send it (system instruction and tools included), its count as the answer.
#[tokio::test]
async fn count_tokens_asks_gemini() {
    let up = gemini_upstream(vec![Reply::json(
        200,
        &json!({"totalTokens": 42, "cachedContentTokenCount": 0}).to_string(),
    )])
    .await;
    let gw = Gateway::start(gemini_config(&up)).await;
    let (status, body) = post_json(
        &gw,
        "/v1/messages/count_tokens",
        KEY,
        &json!({"model": "big", "system": "Be brief.",
                "tools": [{"name": "edit_file", "input_schema": {"type": "object"}}],
                "messages": [{"role": "user", "content": "fix main.rs"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["input_tokens"],
        42
    );
    let sent = &up.requests()[0];
    assert_eq!(sent.path, "/v1beta/models/gemini-2.5-pro:countTokens");
    let inner = &sent.body["generateContentRequest"];
    assert_eq!(inner["model"], "models/gemini-2.5-pro");
    assert_eq!(inner["systemInstruction"]["parts"][0]["text"], "Be brief.");
    assert_eq!(
        inner["tools"][0]["functionDeclarations"][0]["name"],
        "edit_file"
    );
}

/// gRPC-Web's `Generate` in front of Gemini: the same answer as over gRPC.
#[tokio::test]
async fn grpc_web_reaches_gemini() {
    let answer = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi from Gemini."}]},
        "finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4}});
    let up = gemini_upstream(vec![Reply::json(200, &answer.to_string())]).await;
    let gw = Gateway::start(gemini_config(&up)).await;
    let r = grpc_web_generate(&gw, KEY, "big", "hi").await.unwrap();
    assert_eq!(
        (r.content.as_str(), r.finish_reason.as_str()),
        ("Hi from Gemini.", "stop")
    );
    assert_eq!(r.usage.unwrap().total_tokens, 7);
}
