//! What Amazon Bedrock checks of a request, for the scripted upstream: the SigV4 signature, verified here from
//! the request as it arrived (its method, path, signed headers and body) with the test's secret, following the
//! specification independently of the gateway's signing library; the model and operation in the path; and a
//! Converse body of the API's fields only (the real API refuses an unknown field with a ValidationException).
//! Also the event-stream frames a scripted ConverseStream answers with.

#![allow(dead_code)] // the fields are read by serde's checks, not by code

use ring::hmac;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::upstream::{Part, Recorded, Reply};

pub const ACCESS_KEY_ID: &str = "AKIDTESTAIGW0000";
pub const SECRET_ACCESS_KEY: &str = "test/secret+key0123456789abcdefghijklmn";
pub const REGION: &str = "us-east-1";

/// Bedrock's error reply: `{"message": ...}` with the error type in `x-amzn-ErrorType`.
pub fn error(status: u16, kind: &str, message: &str) -> Reply {
    let body = serde_json::json!({ "message": message });
    Reply::json(status, &body.to_string()).header("x-amzn-errortype", kind)
}

/// The real service's refusal of a request it does not take; `None` for a good request.
pub fn check(req: &Recorded) -> Option<Reply> {
    if let Err(why) = verify(req, SECRET_ACCESS_KEY) {
        return Some(error(
            403,
            "InvalidSignatureException",
            &format!("The request signature we calculated does not match the signature you provided: {why}"),
        ));
    }
    let Some(rest) = req.path.strip_prefix("/model/") else {
        return Some(error(404, "UnknownOperationException", "no such path"));
    };
    let Some((_model, operation)) = rest.rsplit_once('/') else {
        return Some(error(404, "UnknownOperationException", "no operation"));
    };
    if operation != "converse" && operation != "converse-stream" {
        return Some(error(404, "UnknownOperationException", operation));
    }
    serde_json::from_slice::<Converse>(&req.raw_body)
        .err()
        .map(|e| {
            error(
                400,
                "ValidationException",
                &format!("Malformed input request: {e}"),
            )
        })
}

/// SigV4 (AWS4-HMAC-SHA256) of a request as it arrived.
pub fn verify(req: &Recorded, secret: &str) -> Result<(), String> {
    let auth = req.header("authorization").ok_or("no authorization")?;
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("not AWS4-HMAC-SHA256")?;
    let field = |name: &str| {
        rest.split(", ")
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .ok_or(format!("no {name}"))
    };
    let credential = field("Credential")?;
    let signed_headers = field("SignedHeaders")?;
    let signature = field("Signature")?;
    let scope: Vec<&str> = credential.splitn(2, '/').collect();
    if scope.first() != Some(&ACCESS_KEY_ID) {
        return Err("unknown access key".into());
    }
    let scope = scope.get(1).ok_or("no scope")?;
    let parts: Vec<&str> = scope.split('/').collect();
    if parts.len() != 4 || parts[1] != REGION || parts[2] != "bedrock" || parts[3] != "aws4_request"
    {
        return Err(format!("wrong scope {scope}"));
    }
    let date = req.header("x-amz-date").ok_or("no x-amz-date")?;
    if !date.starts_with(parts[0]) {
        return Err("the scope's date is not the request's".into());
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    for needed in ["host", "x-amz-date"] {
        if !names.contains(&needed) {
            return Err(format!("{needed} is not signed"));
        }
    }
    if req.header("x-amz-security-token").is_some() && !names.contains(&"x-amz-security-token") {
        return Err("the session token is not signed".into());
    }
    let mut canonical_headers = String::new();
    for name in &names {
        let value = req
            .header(name)
            .ok_or(format!("signed header {name} missing"))?;
        canonical_headers.push_str(&format!("{name}:{}\n", value.trim()));
    }
    let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
    let canonical_request = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        req.method,
        canonical_uri(path),
        query,
        hex(&Sha256::digest(&req.raw_body))
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in &parts {
        key = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), part.as_bytes())
            .as_ref()
            .to_vec();
    }
    let expected = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, &key),
        string_to_sign.as_bytes(),
    );
    if hex(expected.as_ref()) != signature {
        return Err("signature mismatch".into());
    }
    Ok(())
}

/// The canonical URI of every service but S3: each segment of the path as sent, URI-encoded once more.
fn canonical_uri(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            segment
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                        char::from(b).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One ConverseStream event as its frame: `:event-type`, `:content-type` and `:message-type` headers, the
/// event's JSON as the payload.
pub fn frame(event_type: &str, payload: &Value) -> Vec<u8> {
    aigw::upstream::event_stream::encode_event(event_type, payload.to_string().as_bytes())
}

/// An exception frame, as Bedrock ends a stream that failed.
pub fn exception(kind: &str, message: &str) -> Vec<u8> {
    let payload = serde_json::json!({ "message": message }).to_string();
    aigw::upstream::event_stream::encode(
        &[
            (":exception-type", kind),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        payload.as_bytes(),
    )
}

/// A ConverseStream reply: the frames, each split in two HTTP chunks (a frame may arrive in pieces).
pub fn stream(frames: &[Vec<u8>]) -> Reply {
    let parts = frames
        .iter()
        .flat_map(|f| {
            let (a, b) = f.split_at(f.len() / 3);
            [Part::Bytes(a.to_vec()), Part::Bytes(b.to_vec())]
        })
        .collect();
    let mut reply = Reply::sse_raw(parts);
    reply.headers = vec![(
        "content-type".into(),
        "application/vnd.amazon.eventstream".into(),
    )];
    reply
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Converse {
    messages: Vec<ConverseMessage>,
    system: Option<Vec<Map<String, Value>>>,
    inference_config: Option<InferenceConfig>,
    tool_config: Option<ToolConfig>,
    guardrail_config: Option<Value>,
    additional_model_request_fields: Option<Map<String, Value>>,
    prompt_variables: Option<Value>,
    additional_model_response_field_paths: Option<Vec<String>>,
    request_metadata: Option<Map<String, Value>>,
    performance_config: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConverseMessage {
    role: Role,
    content: Vec<ContentBlock>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Role {
    User,
    Assistant,
}

/// A content block: exactly one member (a union).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
enum ContentBlock {
    Text(String),
    Image(ImageBlock),
    Document(Value),
    Video(Value),
    ToolUse(ToolUseBlock),
    ToolResult(ToolResultBlock),
    GuardContent(Value),
    CachePoint(CachePoint),
    ReasoningContent(ReasoningBlock),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageBlock {
    format: String,
    source: ImageSource,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageSource {
    bytes: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ToolUseBlock {
    tool_use_id: String,
    name: String,
    input: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ToolResultBlock {
    tool_use_id: String,
    content: Vec<ContentBlock>,
    status: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CachePoint {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
enum ReasoningBlock {
    ReasoningText(ReasoningText),
    RedactedContent(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasoningText {
    text: String,
    signature: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct InferenceConfig {
    max_tokens: Option<u32>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    stop_sequences: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ToolConfig {
    tools: Vec<ToolEntry>,
    tool_choice: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
enum ToolEntry {
    ToolSpec(ToolSpec),
    CachePoint(CachePoint),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ToolSpec {
    name: String,
    description: Option<String>,
    input_schema: InputSchema,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSchema {
    json: Map<String, Value>,
}
