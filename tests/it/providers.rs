//! OpenAI-style providers with their own request shapes: how the key goes (`auth`), extra headers (some from
//! the environment), query parameters. The scripted upstream records the exact request line and headers.

use crate::common::{upstream::*, *};

async fn one_call(extra_upstream: &str) -> Recorded {
    let up = Upstream::start(vec![Reply::json(200, &completion("ok", "stop", 3, 1))]).await;
    let text = config_text(&up.base_url(), extra_upstream);
    let gw = Gateway::start(config(&text)).await;
    gw.client()
        .await
        .generate(authed(generate("big", "hi"), KEY))
        .await
        .unwrap();
    up.requests().remove(0)
}

#[tokio::test]
async fn azure_openai_takes_an_api_key_header_and_an_api_version() {
    let sent = one_call("auth = \"api-key\"\nquery = { \"api-version\" = \"2024-10-21\" }").await;
    assert_eq!(sent.path, "/v1/chat/completions?api-version=2024-10-21");
    assert_eq!(sent.header("api-key"), Some(UPSTREAM_KEY));
    assert_eq!(sent.header("authorization"), None);
}

#[tokio::test]
async fn openrouter_style_headers_go_with_every_request_some_from_the_environment() {
    let sent = one_call(
        "headers = { \"HTTP-Referer\" = \"https://example.com/app\", \"X-Title\" = { env = \"TEST_KEY\" } }",
    )
    .await;
    assert_eq!(sent.header("http-referer"), Some("https://example.com/app"));
    assert_eq!(sent.header("x-title"), Some(KEY));
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
    assert_eq!(sent.path, "/v1/chat/completions");
}

#[tokio::test]
async fn a_local_server_gets_no_credentials() {
    // vLLM or Ollama on the same host: no key at all.
    let sent = one_call("auth = \"none\"").await;
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(sent.header("api-key"), None);
}

#[test]
fn a_header_from_a_missing_variable_is_a_config_error() {
    let text = config_text(
        "http://127.0.0.1:1/v1",
        "headers = { \"X-Secret\" = { env = \"NOT_SET_ANYWHERE\" } }",
    );
    let err = aigw::config::Config::parse(&text, env).unwrap_err();
    assert!(
        err.to_string()
            .contains("upstreams[0].headers.X-Secret: environment variable NOT_SET_ANYWHERE"),
        "{err}"
    );
}
