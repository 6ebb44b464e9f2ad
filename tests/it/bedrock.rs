//! Upstreams of kind "bedrock": the scripted upstream speaks Converse and ConverseStream (AWS's binary
//! event-stream frames) and refuses what Bedrock refuses (`common::bedrock`: a SigV4 signature that does not
//! verify, an unknown field). Every door sees Bedrock's reasoning, signatures, tool input and usage as it sees
//! Anthropic's.

use crate::common::{bedrock, upstream::*, *};
use crate::reasoning::{
    chat_stream, grpc_stream, messages_stream, post_sse, responses_stream, whole_args, Seen, ARGS,
    SIGNATURE, THOUGHTS,
};
use aigw::proto::Reasoning;
use serde_json::{json, Value};

const MODEL: &str = "anthropic.claude-sonnet-4-5-20250929-v1:0";

/// Model "big" on a Bedrock upstream at `up`, signed with the config's keys (`credentials`: the key settings),
/// one attempt per call.
fn bedrock_config_text(up: &Upstream, credentials: &str) -> String {
    format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [[keys]]
        name = "tester"
        env = "TEST_KEY"
        [[upstreams]]
        name = "aws"
        kind = "bedrock"
        base_url = "http://{}"
        region = "{}"
        {credentials}
        [[models]]
        name = "big"
        max_output_tokens = 64000
        default_output_tokens = 8000
        price = {{ input_per_million = 3.0, output_per_million = 15.0, cached_input_per_million = 0.3, cache_write_per_million = 3.75 }}
        routes = [{{ upstream = "aws", model = "{MODEL}" }}]
        [models.policy]
        retry = {{ attempts = 1 }}
        "#,
        up.addr,
        bedrock::REGION
    )
}

const KEYS: &str = r#"access_key_id_env = "TEST_AWS_KEY_ID"
        secret_access_key_env = "TEST_AWS_SECRET""#;

async fn bedrock_upstream(script: Vec<Reply>) -> Upstream {
    Upstream::start_checked(script, Some(bedrock::check)).await
}

/// Claude on Bedrock streaming as ConverseStream: signed reasoning in four pieces, a line of text, then a tool
/// call whose input comes in seven pieces; usage after the stop.
fn converse_stream() -> Vec<Vec<u8>> {
    use bedrock::frame;
    let mut frames = vec![frame(
        "messageStart",
        &json!({"role": "assistant", "p": "abcdef"}),
    )];
    for t in THOUGHTS {
        frames.push(frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": t}}}),
        ));
    }
    frames.extend([
        frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": SIGNATURE}}}),
        ),
        frame("contentBlockStop", &json!({"contentBlockIndex": 0})),
        frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 1, "delta": {"text": "Editing."}}),
        ),
        frame("contentBlockStop", &json!({"contentBlockIndex": 1})),
        frame(
            "contentBlockStart",
            &json!({"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tooluse_01", "name": "edit_file"}}}),
        ),
    ]);
    for a in ARGS {
        frames.push(frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": a}}}),
        ));
    }
    frames.extend([
        frame("contentBlockStop", &json!({"contentBlockIndex": 2})),
        frame("messageStop", &json!({"stopReason": "tool_use"})),
        frame(
            "metadata",
            &json!({"usage": {"inputTokens": 25, "outputTokens": 60, "totalTokens": 85,
                              "cacheReadInputTokens": 100, "cacheWriteInputTokens": 0},
                    "metrics": {"latencyMs": 400}}),
        ),
    ]);
    frames
}

/// ConverseStream through each door: reasoning piece by piece with its signature, the text, the call's input
/// in the pieces Bedrock sent; each request signed and of Converse's fields only.
#[tokio::test]
async fn bedrock_reasoning_and_tool_input_stream_live_on_every_door() {
    let up = bedrock_upstream(vec![bedrock::stream(&converse_stream())]).await;
    let gw = Gateway::start(config(&bedrock_config_text(&up, KEYS))).await;
    let signed = Seen {
        signature: SIGNATURE.into(),
        ..Seen::expected()
    };

    let (seen, last) = grpc_stream(&gw).await;
    assert_eq!(seen, signed);
    assert_eq!(last.finish_reason, "tool_calls");
    assert_eq!(
        last.reasoning_blocks,
        vec![Reasoning {
            text: THOUGHTS.concat(),
            signature: SIGNATURE.into(),
            ..Default::default()
        }]
    );
    assert_eq!(last.tool_calls[0].arguments, whole_args());
    let usage = last.usage.unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.cached_prompt_tokens,
            usage.completion_tokens
        ),
        (125, 100, 60)
    );
    let first = &up.requests()[0];
    assert_eq!(
        first.path,
        "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse-stream"
    );
    assert_eq!(
        first.header("accept"),
        Some("application/vnd.amazon.eventstream")
    );
    // The effort is Claude's thinking budget, in the model's own fields, under the output limit the gateway
    // filled in (the model's default_output_tokens: Claude thinks only within one).
    assert_eq!(first.body["inferenceConfig"]["maxTokens"], 8000);
    assert_eq!(
        first.body["additionalModelRequestFields"]["thinking"],
        json!({"type": "enabled", "budget_tokens": 7999})
    );

    assert_eq!(chat_stream(&gw).await, signed);
    assert_eq!(
        messages_stream(&gw, 8000, &["thinking", "text", "tool_use"]).await,
        signed
    );
    assert_eq!(
        up.requests()[2].body["additionalModelRequestFields"]["thinking"],
        json!({"type": "enabled", "budget_tokens": 4000})
    );
    let (seen, done) = responses_stream(&gw).await;
    assert_eq!(seen, Seen::expected());
    assert_eq!(done["output"][0]["encrypted_content"], SIGNATURE);
    assert_eq!(
        up.calls(),
        4,
        "every request was signed and one Bedrock takes"
    );
}

/// Turn 2 of a tool loop through the Messages door: the thinking block goes back first in the assistant turn,
/// byte-exact, as Converse's reasoning content.
#[tokio::test]
async fn reasoning_signatures_round_trip() {
    let up = bedrock_upstream(vec![bedrock::stream(&converse_stream())]).await;
    let gw = Gateway::start(config(&bedrock_config_text(&up, KEYS))).await;
    let thought = THOUGHTS.concat();
    let args: Value = serde_json::from_str(&whole_args()).unwrap();
    post_sse(
        &gw,
        "/v1/messages",
        json!({"model": "big", "stream": true, "max_tokens": 8000,
               "thinking": {"type": "enabled", "budget_tokens": 4000},
               "messages": [{"role": "user", "content": "fix main.rs"},
                   {"role": "assistant", "content": [
                       {"type": "thinking", "thinking": thought, "signature": SIGNATURE},
                       {"type": "tool_use", "id": "tooluse_01", "name": "edit_file", "input": args}]},
                   {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tooluse_01", "content": "done"}]}]}),
    )
    .await;
    let sent = &up.requests()[0];
    let turn = &sent.body["messages"][1];
    assert_eq!(
        turn["content"][0],
        json!({"reasoningContent": {"reasoningText": {"text": thought, "signature": SIGNATURE}}})
    );
    assert_eq!(turn["content"][1]["toolUse"]["input"], args);
    assert_eq!(
        sent.body["messages"][2]["content"][0],
        json!({"toolResult": {"toolUseId": "tooluse_01", "content": [{"text": "done"}]}})
    );
    assert!(String::from_utf8_lossy(&sent.raw_body).contains(SIGNATURE));
}

/// A whole answer with temporary credentials (the session token signed too): an inline image and a JSON schema
/// go as Converse's blocks and the reserved tool, the JSON comes back as the answer's text, cache reads and
/// writes as their own tokens.
#[tokio::test]
async fn unary_calls_carry_images_json_and_cache_usage() {
    let answer = json!({"output": {"message": {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "tooluse_j", "name": "aigw_json_answer", "input": {"n": 3}}}]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 200, "outputTokens": 12, "totalTokens": 1212, "cacheReadInputTokens": 800,
                  "cacheWriteInputTokens": 200},
        "metrics": {"latencyMs": 300}});
    let up = bedrock_upstream(vec![Reply::json(200, &answer.to_string())]).await;
    let keys = format!("{KEYS}\n        session_token_env = \"TEST_AWS_SESSION_TOKEN\"");
    let gw = Gateway::start(config(&bedrock_config_text(&up, &keys))).await;
    let req = image_for_json("big");
    let r = gw
        .client()
        .await
        .generate(authed(req, KEY))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.content.as_str(), r.finish_reason.as_str()),
        (r#"{"n":3}"#, "stop")
    );
    assert!(r.tool_calls.is_empty());
    let u = r.usage.unwrap();
    assert_eq!(
        (
            u.prompt_tokens,
            u.cached_prompt_tokens,
            u.cache_write_tokens,
            u.completion_tokens
        ),
        (1200, 800, 200, 12)
    );
    let sent = &up.requests()[0];
    assert_eq!(sent.header("x-amz-security-token"), Some(AWS_SESSION_TOKEN));
    assert_eq!(
        sent.path,
        "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse"
    );
    assert_eq!(
        sent.body["messages"][0]["content"][1],
        json!({"image": {"format": "png", "source": {"bytes": "iVBORw=="}}})
    );
    assert_eq!(
        sent.body["toolConfig"]["toolChoice"],
        json!({"tool": {"name": "aigw_json_answer"}})
    );
    cost_booked(&gw, "tester", "big").await;
}

/// Bedrock's refusals: throttling is RESOURCE_EXHAUSTED; a signature Bedrock cannot verify
/// (the wrong secret) is the gateway's configuration, not the caller's; an exception frame mid-stream and a stream
/// that ends before `messageStop` are errors, never a short answer.
#[tokio::test]
async fn bedrock_errors_map_to_statuses() {
    let up = bedrock_upstream(vec![bedrock::error(
        429,
        "ThrottlingException",
        "Too many requests, please wait before trying again.",
    )])
    .await;
    let gw = Gateway::start(config(&bedrock_config_text(&up, KEYS))).await;
    let status = gw
        .client()
        .await
        .generate(authed(generate("big", "hi"), KEY))
        .await
        .unwrap_err();
    assert_status(&status, tonic::Code::ResourceExhausted, "rate limiting");

    let up = bedrock_upstream(vec![Reply::json(200, "{}")]).await;
    let wrong = config(&bedrock_config_text(&up, KEYS).replace("TEST_AWS_SECRET", "TEST_KEY"));
    let gw = Gateway::start(wrong).await;
    let status = gw
        .client()
        .await
        .generate(authed(generate("big", "hi"), KEY))
        .await
        .unwrap_err();
    // Bedrock's 403: the gateway's configuration, not the caller's request (its body is not passed on).
    assert_status(&status, tonic::Code::Internal, "credentials");

    let frames = converse_stream();
    let cut: Vec<Vec<u8>> = frames[..8].to_vec();
    let failed = vec![
        frames[0].clone(),
        frames[1].clone(),
        bedrock::exception("modelStreamErrorException", "The model stream failed."),
    ];
    for (script, needle) in [(cut, "messageStop"), (failed, "modelStreamErrorException")] {
        let up = bedrock_upstream(vec![bedrock::stream(&script)]).await;
        let gw = Gateway::start(config(&bedrock_config_text(&up, KEYS))).await;
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

/// A client that goes away mid-stream closes the upstream's connection: Bedrock stops generating.
#[tokio::test]
async fn cancellation_reaches_the_upstream() {
    let frames = converse_stream();
    let reply = Reply {
        end: End::Hang,
        ..bedrock::stream(&frames[..2])
    };
    let up = bedrock_upstream(vec![reply]).await;
    let gw = Gateway::start(config(&bedrock_config_text(&up, KEYS))).await;
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

/// Tools through the chat door, unary: Converse's toolSpec, the choice, the call back in OpenAI's shape.
#[tokio::test]
async fn tools_through_the_chat_door() {
    let answer = json!({"output": {"message": {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "tooluse_w", "name": "get_weather", "input": {"city": "Seoul"}}}]}},
        "stopReason": "tool_use", "usage": {"inputTokens": 9, "outputTokens": 4, "totalTokens": 13}});
    let up = bedrock_upstream(vec![Reply::json(200, &answer.to_string())]).await;
    let gw = Gateway::start(config(&bedrock_config_text(&up, KEYS))).await;
    let (status, body) = post_json(
        &gw,
        "/v1/chat/completions",
        KEY,
        &json!({"model": "big", "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                "store": true, "top_k": 5,
                "tools": [{"type": "function", "function": {"name": "get_weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
                "messages": [{"role": "user", "content": "weather in Seoul?"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["id"], "tooluse_w");
    assert_eq!(call["function"]["arguments"], r#"{"city":"Seoul"}"#);
    let sent = &up.requests()[0].body;
    assert_eq!(
        sent["toolConfig"]["toolChoice"],
        json!({"tool": {"name": "get_weather"}})
    );
    // top_k is Claude's own field; OpenAI's store would be refused by Bedrock and is left out.
    assert_eq!(sent["additionalModelRequestFields"]["top_k"], 5);
    assert!(sent.get("store").is_none());
}

/// A session's turns on Bedrock: the system prompt as a `system` block, the history as user and assistant turns.
#[tokio::test]
async fn sessions_speak_bedrock() {
    use bedrock::frame;
    let said = |text: &str| {
        bedrock::stream(&[
            frame("messageStart", &json!({"role": "assistant"})),
            frame(
                "contentBlockDelta",
                &json!({"contentBlockIndex": 0, "delta": {"text": text}}),
            ),
            frame("contentBlockStop", &json!({"contentBlockIndex": 0})),
            frame("messageStop", &json!({"stopReason": "end_turn"})),
            frame(
                "metadata",
                &json!({"usage": {"inputTokens": 5, "outputTokens": 2, "totalTokens": 7}}),
            ),
        ])
    };
    let up = bedrock_upstream(vec![said("Hello."), said("Fine.")]).await;
    let gw = Gateway::start(config(&bedrock_config_text(&up, KEYS))).await;
    let answers = session_turns(&gw, "big", &["hi", "how are you?"]).await;
    assert_eq!(answers, [Ok("Hello.".to_owned()), Ok("Fine.".to_owned())]);
    let second = &up.requests()[1].body;
    assert_eq!(second["system"], json!([{"text": "Be brief."}]));
    assert_eq!(
        second["messages"],
        json!([{"role": "user", "content": [{"text": "hi"}]},
               {"role": "assistant", "content": [{"text": "Hello."}]},
               {"role": "user", "content": [{"text": "how are you?"}]}])
    );
}

/// gRPC-Web's `Generate` in front of Bedrock: the same answer as over gRPC, the request signed.
#[tokio::test]
async fn grpc_web_reaches_bedrock() {
    let answer = json!({"output": {"message": {"role": "assistant", "content": [{"text": "Hi from Bedrock."}]}},
        "stopReason": "end_turn", "usage": {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7}});
    let up = bedrock_upstream(vec![Reply::json(200, &answer.to_string())]).await;
    let gw = Gateway::start(config(&bedrock_config_text(&up, KEYS))).await;
    let r = grpc_web_generate(&gw, KEY, "big", "hi").await.unwrap();
    assert_eq!(
        (r.content.as_str(), r.finish_reason.as_str()),
        ("Hi from Bedrock.", "stop")
    );
    assert_eq!(r.usage.unwrap().total_tokens, 7);
    assert_eq!(up.calls(), 1);
}
