//! The admin API from the command line: `aigw keys create|list|show|revoke|rotate`, `aigw limits set` and
//! `aigw usage`, against a running gateway's admin listener (`--admin URL`; the admin key from
//! `AIGW_ADMIN_KEY`). Each prints the API's JSON answer; an error answer is printed to standard error and
//! the command fails.

use reqwest::Method;
use serde_json::{json, Map, Value};

/// One request to the admin API.
pub struct Request {
    pub method: Method,
    pub path: String,
    pub body: Option<Value>,
}

/// What `aigw keys create` takes.
#[derive(clap::Args)]
pub struct NewKey {
    pub name: String,
    /// Models the key may use (comma-separated; all when absent).
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    #[command(flatten)]
    pub limits: Limits,
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// Unix seconds after which the key is refused.
    #[arg(long)]
    pub expires_at: Option<u64>,
}

/// Rates and budgets as the API takes them.
#[derive(clap::Args, Default)]
pub struct Limits {
    #[arg(long)]
    pub rpm: Option<u32>,
    #[arg(long)]
    pub tpm: Option<u64>,
    #[arg(long)]
    pub daily_budget_usd: Option<f64>,
    #[arg(long)]
    pub monthly_budget_usd: Option<f64>,
}

fn limits(l: &Limits, concurrency: Option<u32>) -> Value {
    let mut m = Map::new();
    for (k, v) in [
        ("rpm", l.rpm.map(Value::from)),
        ("tpm", l.tpm.map(Value::from)),
        ("concurrency", concurrency.map(Value::from)),
        ("daily_budget_usd", l.daily_budget_usd.map(Value::from)),
        ("monthly_budget_usd", l.monthly_budget_usd.map(Value::from)),
    ] {
        if let Some(v) = v {
            m.insert(k.to_owned(), v);
        }
    }
    Value::Object(m)
}

impl Request {
    pub fn list_keys() -> Request {
        Request {
            method: Method::GET,
            path: "/v1/keys".into(),
            body: None,
        }
    }

    pub fn show_key(name: &str) -> Request {
        Request {
            method: Method::GET,
            path: format!("/v1/keys/{name}"),
            body: None,
        }
    }

    pub fn create_key(k: NewKey) -> Request {
        let mut body = json!({ "name": k.name, "limits": limits(&k.limits, k.concurrency) });
        if !k.models.is_empty() {
            body["models"] = json!(k.models);
        }
        if let Some(at) = k.expires_at {
            body["expires_at"] = json!(at);
        }
        Request {
            method: Method::POST,
            path: "/v1/keys".into(),
            body: Some(body),
        }
    }

    pub fn revoke_key(name: &str) -> Request {
        Request {
            method: Method::DELETE,
            path: format!("/v1/keys/{name}"),
            body: None,
        }
    }

    pub fn rotate_key(name: &str, grace: std::time::Duration) -> Request {
        Request {
            method: Method::POST,
            path: format!("/v1/keys/{name}/rotate"),
            body: Some(json!({ "grace_seconds": grace.as_secs() })),
        }
    }

    /// A limit not given is removed, as the API does.
    pub fn set_limits(name: &str, new: &Limits) -> Request {
        Request {
            method: Method::PUT,
            path: format!("/v1/keys/{name}/limits"),
            body: Some(limits(new, None)),
        }
    }

    pub fn usage() -> Request {
        Request {
            method: Method::GET,
            path: "/v1/usage".into(),
            body: None,
        }
    }
}

/// Sends `req` to the admin listener at `admin` (e.g. `http://127.0.0.1:9090`); the answer's JSON, or the
/// error to print.
pub async fn send(admin: &str, key: Option<&str>, req: Request) -> Result<Value, String> {
    crate::upstream::http::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("{}{}", admin.trim_end_matches('/'), req.path);
    let mut call = client.request(req.method, &url);
    if let Some(key) = key {
        call = call.bearer_auth(key);
    }
    if let Some(body) = req.body {
        call = call
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let resp = call.send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| format!("{url}: {e}"))?;
    let value =
        serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.trim().to_owned()));
    if status.is_success() {
        Ok(value)
    } else {
        let message = value
            .get("error")
            .and_then(Value::as_str)
            .map_or_else(|| value.to_string(), str::to_owned);
        Err(format!("{status}: {message}"))
    }
}
