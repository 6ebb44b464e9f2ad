//! The client's API headers that travel on to an upstream of the same dialect.

/// Headers of the client's that belong to an API, forwarded to upstreams of that dialect: Anthropic's
/// `anthropic-version` and `anthropic-beta` (betas are how new features reach agents first), OpenAI's
/// `OpenAI-Beta`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiHeaders {
    pub(crate) anthropic_version: Option<reqwest::header::HeaderValue>,
    pub(crate) anthropic_beta: Option<reqwest::header::HeaderValue>,
    pub(crate) openai_beta: Option<reqwest::header::HeaderValue>,
}

impl ApiHeaders {
    /// The API headers among a call's metadata.
    pub(crate) fn read(metadata: &http::HeaderMap) -> ApiHeaders {
        let get = |name: &str| {
            metadata
                .get(name)
                .and_then(|v| reqwest::header::HeaderValue::from_bytes(v.as_bytes()).ok())
        };
        ApiHeaders {
            anthropic_version: get("anthropic-version"),
            anthropic_beta: get("anthropic-beta"),
            openai_beta: get("openai-beta"),
        }
    }
}
