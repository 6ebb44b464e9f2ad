//! What Google's Gemini API checks of a request, for the scripted upstream: the key in `x-goog-api-key`, the
//! model and method in the path, and a body of `GenerateContentRequest`'s fields only (the real API refuses an
//! unknown field with 400 INVALID_ARGUMENT, and a part with no data or two). Field lists from the v1beta
//! reference.

#![allow(dead_code)] // the fields are read by serde's checks, not by code

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{
    upstream::{Recorded, Reply},
    UPSTREAM_KEY,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GenerateContentRequest {
    /// Named inside a `countTokens` request's `generateContentRequest`; in the path otherwise.
    model: Option<String>,
    contents: Vec<Content>,
    system_instruction: Option<Content>,
    #[serde(default)]
    tools: Vec<Tool>,
    tool_config: Option<ToolConfig>,
    safety_settings: Option<Vec<Map<String, Value>>>,
    generation_config: Option<GenerationConfig>,
    cached_content: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Content {
    role: Option<String>,
    parts: Vec<Part>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Part {
    text: Option<String>,
    inline_data: Option<Blob>,
    file_data: Option<FileData>,
    function_call: Option<FunctionCall>,
    function_response: Option<FunctionResponse>,
    executable_code: Option<Value>,
    code_execution_result: Option<Value>,
    thought: Option<bool>,
    thought_signature: Option<String>,
    video_metadata: Option<Value>,
}

impl Part {
    fn data(&self) -> usize {
        [
            self.text.is_some(),
            self.inline_data.is_some(),
            self.file_data.is_some(),
            self.function_call.is_some(),
            self.function_response.is_some(),
            self.executable_code.is_some(),
            self.code_execution_result.is_some(),
        ]
        .into_iter()
        .filter(|d| *d)
        .count()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Blob {
    mime_type: String,
    data: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileData {
    mime_type: Option<String>,
    file_uri: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FunctionCall {
    id: Option<String>,
    name: String,
    args: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FunctionResponse {
    id: Option<String>,
    name: String,
    response: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Tool {
    function_declarations: Option<Vec<FunctionDeclaration>>,
    google_search: Option<Value>,
    code_execution: Option<Value>,
    url_context: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FunctionDeclaration {
    name: String,
    description: Option<String>,
    parameters: Option<Value>,
    parameters_json_schema: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ToolConfig {
    function_calling_config: Option<FunctionCallingConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FunctionCallingConfig {
    mode: Option<String>,
    allowed_function_names: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GenerationConfig {
    stop_sequences: Option<Vec<String>>,
    response_mime_type: Option<String>,
    response_schema: Option<Value>,
    response_json_schema: Option<Value>,
    response_modalities: Option<Vec<String>>,
    candidate_count: Option<i32>,
    max_output_tokens: Option<i32>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<i32>,
    seed: Option<i32>,
    presence_penalty: Option<f64>,
    frequency_penalty: Option<f64>,
    response_logprobs: Option<bool>,
    logprobs: Option<i32>,
    thinking_config: Option<ThinkingConfig>,
    media_resolution: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ThinkingConfig {
    include_thoughts: Option<bool>,
    thinking_budget: Option<i32>,
    thinking_level: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchEmbed {
    requests: Vec<EmbedOne>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EmbedOne {
    model: String,
    content: Content,
    output_dimensionality: Option<i32>,
    task_type: Option<String>,
}

/// Gemini's `countTokens`: `contents`, or a whole `generateContentRequest` (with its `model`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CountTokens {
    contents: Option<Vec<Content>>,
    generate_content_request: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Predict {
    instances: Vec<Instance>,
    parameters: Option<PredictParameters>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Instance {
    content: String,
    task_type: Option<String>,
    title: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PredictParameters {
    output_dimensionality: Option<i32>,
    auto_truncate: Option<bool>,
}

/// Google's error reply.
pub fn error(code: u16, status: &str, message: &str) -> Reply {
    let body = serde_json::json!({"error": {"code": code, "message": message, "status": status}});
    Reply::json(code, &body.to_string())
}

/// The Gemini API's refusal of a request it does not take; `None` for a good request.
pub fn check(req: &Recorded) -> Option<Reply> {
    if req.header("x-goog-api-key") != Some(UPSTREAM_KEY) {
        return Some(error(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers.",
        ));
    }
    check_call(req, "/v1beta/models/")
}

/// The prefix of a Vertex AI model's path in the tests: project "proj-1", location "us-central1".
pub const VERTEX_MODELS: &str =
    "/v1/projects/proj-1/locations/us-central1/publishers/google/models/";

/// Vertex AI's refusal: the same API, an OAuth2 access token instead of a key, and Vertex's own embeddings.
pub fn check_vertex(req: &Recorded) -> Option<Reply> {
    let token = req.header("authorization").unwrap_or_default();
    if !token.starts_with("Bearer ya29.") || req.header("x-goog-api-key").is_some() {
        return Some(error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
        ));
    }
    check_call(req, VERTEX_MODELS)
}

fn check_call(req: &Recorded, models: &str) -> Option<Reply> {
    let path = req.path.split('?').next().unwrap_or_default();
    let Some((_model, method)) = path.strip_prefix(models).and_then(|p| p.split_once(':')) else {
        return Some(error(404, "NOT_FOUND", "no such path"));
    };
    let problem = match method {
        "generateContent" => generate(&req.raw_body).err(),
        "streamGenerateContent" if req.path.ends_with("?alt=sse") => generate(&req.raw_body).err(),
        "countTokens" if models == "/v1beta/models/" => {
            serde_json::from_slice::<CountTokens>(&req.raw_body)
                .map_err(|e| e.to_string())
                .and_then(|c| match c.generate_content_request {
                    Some(inner) => generate(&serde_json::to_vec(&inner).unwrap_or_default()),
                    None => Ok(()),
                })
                .err()
        }
        "countTokens" => generate(&req.raw_body).err(),
        "batchEmbedContents" if models == "/v1beta/models/" => {
            serde_json::from_slice::<BatchEmbed>(&req.raw_body)
                .err()
                .map(|e| e.to_string())
        }
        "predict" if models == VERTEX_MODELS => serde_json::from_slice::<Predict>(&req.raw_body)
            .err()
            .map(|e| e.to_string()),
        _ => Some(format!("method {method} not found")),
    };
    problem.map(|p| {
        error(
            400,
            "INVALID_ARGUMENT",
            &format!("Invalid JSON payload: {p}"),
        )
    })
}

fn generate(body: &[u8]) -> Result<(), String> {
    let req: GenerateContentRequest = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if req.contents.is_empty() {
        return Err("contents is not specified".into());
    }
    for content in req.contents.iter().chain(&req.system_instruction) {
        if let Some(role) = &content.role {
            if role != "user" && role != "model" {
                return Err(format!("role {role} is not user or model"));
            }
        }
        if let Some(p) = content.parts.iter().find(|p| p.data() != 1) {
            return Err(format!("a part has {} kinds of data", p.data()));
        }
    }
    Ok(())
}
