//! `aigw chat` against the in-process gateway on the mock model: lines in, streamed answers out.

use aigw::tools::chat::{run, ChatOptions};

use crate::common::*;

async fn chat(gw: &Gateway, input: &str) -> String {
    let opts = ChatOptions {
        target: format!("http://{}", gw.addr),
        key: Some(KEY.into()),
        model: "big".into(),
        system: None,
        ca: None,
    };
    let mut out = Vec::new();
    run(opts, input.as_bytes(), &mut out).await.unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn turns_stream_in_order_and_a_new_model_keeps_the_conversation() {
    let gw = Gateway::start(config(&mock_config_text("", 10_000))).await;
    // Piped all at once: each line waits for the answer before it.
    let out = chat(&gw, "hello there\nsecond\n/model big\nthird\n/quit\n").await;
    assert!(out.starts_with("session with big;"), "{out}");
    let first = out.find(r#"Reply 1 to "hello there""#).expect(&out);
    let second = out
        .find(r#"Reply 2 to "second"; earlier you said "hello there""#)
        .expect(&out);
    // The new session starts from the four messages so far: the server sees the third turn as the third.
    let switched = out
        .find("(new session with big, 4 earlier messages)")
        .expect(&out);
    let third = out
        .find(r#"Reply 3 to "third"; earlier you said "second""#)
        .expect(&out);
    assert!(
        first < second && second < switched && switched < third,
        "{out}"
    );
    assert_eq!(out.matches("[stop, ").count(), 3, "{out}");
}

#[tokio::test]
async fn a_system_prompt_and_the_end_of_input_end_the_session_cleanly() {
    let gw = Gateway::start(config(&mock_config_text("", 10_000))).await;
    let out = chat(&gw, "/system Be brief.\n/nope\n\nask\n").await;
    assert!(
        out.contains("(new session with big, 0 earlier messages)"),
        "{out}"
    );
    assert!(out.contains("(unknown command /nope)"), "{out}");
    assert!(out.contains(r#"Reply 1 to "ask""#), "{out}");
    // The input ended after the question: its answer was still seen through.
    assert!(out.trim_end().ends_with('>'), "{out}");
}

#[tokio::test]
async fn a_wrong_key_is_a_clear_error() {
    let gw = Gateway::start(config(&mock_config_text("", 10_000))).await;
    let opts = ChatOptions {
        target: format!("http://{}", gw.addr),
        key: Some("sk-wrong".into()),
        model: "big".into(),
        system: None,
        ca: None,
    };
    let err = run(opts, "hi\n".as_bytes(), Vec::new()).await.unwrap_err();
    assert!(err.starts_with("UNAUTHENTICATED"), "{err}");
}

#[tokio::test]
async fn cancel_ends_the_answer_in_flight() {
    // One token a second: the answer is still streaming when /cancel arrives (it is sent at once, not queued).
    let gw = Gateway::start(config(&mock_config_text("", 1))).await;
    let out = chat(&gw, "a long answer please\n/cancel\n/quit\n").await;
    assert!(out.contains("[CANCELLED: "), "{out}");
    assert!(!out.contains("[stop"), "{out}");
}

/// A model that is not there changes nothing: the same session goes on with the conversation so far.
#[tokio::test]
async fn a_wrong_model_keeps_the_session_and_the_conversation() {
    let gw = Gateway::start(config(&mock_config_text("", 10_000))).await;
    let out = chat(&gw, "hello there\n/model nope\nsecond\n/quit\n").await;
    assert!(
        out.contains("(no new session: INVALID_ARGUMENT: unknown model 'nope'"),
        "{out}"
    );
    assert!(out.contains("still with big)"), "{out}");
    assert!(
        out.contains(r#"Reply 2 to "second"; earlier you said "hello there""#),
        "{out}"
    );
}

/// A session the gateway ends (here a key over its rate: the second turn is refused with a status) is replaced
/// by a new one that carries the conversation; the refused turn leaves no trace in it.
#[tokio::test]
async fn a_session_the_gateway_ends_is_replaced_with_the_conversation() {
    let text = mock_config_text("", 10_000).replace(
        "env = \"TEST_KEY\"",
        "env = \"TEST_KEY\"\n        limits = { rpm = 1 }",
    );
    assert!(text.contains("rpm = 1"));
    let gw = Gateway::start(config(&text)).await;
    let out = chat(&gw, "hello there\nsecond\n/quit\n").await;
    assert!(out.contains(r#"Reply 1 to "hello there""#), "{out}");
    assert!(
        out.contains("(the session ended: RESOURCE_EXHAUSTED"),
        "{out}"
    );
    assert!(out.contains("carries 2 earlier messages)"), "{out}");
}
