//! OAuth2 access tokens for Google Cloud upstreams (Vertex AI): from a service account's JSON key — a JWT
//! signed with its RSA key (RS256) exchanged at its `token_uri` (RFC 7523) — or from the metadata server of the
//! machine the gateway runs on. A token is kept and used until five minutes before it expires; then the next
//! call fetches a new one, one fetch at a time, and a failed refresh keeps using the old token while it is
//! still valid. Tokens and keys never reach a log line.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use reqwest::header::HeaderValue;
use ring::{rand::SystemRandom, signature};
use serde::Deserialize;
use tokio::time::Instant;

use crate::{config::GoogleCredentials, error::GatewayError};

/// What the tokens may do: Vertex AI is under Cloud Platform's scope.
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// A token is refreshed when less than this much of its life is left.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// The longest a token fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of a token endpoint's answer that is read.
const ANSWER_LIMIT: usize = 64 * 1024;

pub(crate) struct GoogleAuth {
    upstream: String,
    source: Source,
    client: reqwest::Client,
    /// The token in use, behind an async lock that makes concurrent callers wait for one fetch.
    token: tokio::sync::Mutex<Option<Token>>,
}

enum Source {
    ServiceAccount(Box<ServiceAccount>),
    /// The metadata server's token URL.
    Metadata(reqwest::Url),
}

struct ServiceAccount {
    email: String,
    key_id: String,
    key: signature::RsaKeyPair,
    token_uri: reqwest::Url,
}

struct Token {
    /// `Bearer <token>`, marked sensitive.
    header: HeaderValue,
    refresh_at: Instant,
    expires_at: Instant,
}

/// A service account's JSON key file, the fields used.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type", default)]
    kind: String,
    client_email: String,
    #[serde(default)]
    private_key_id: String,
    private_key: String,
    #[serde(default = "default_token_uri")]
    token_uri: String,
}

fn default_token_uri() -> String {
    "https://oauth2.googleapis.com/token".to_owned()
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: u64,
}

#[derive(Deserialize)]
struct TokenError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

impl GoogleAuth {
    /// Reads the credentials (a key file is read and its key parsed now, so that a bad one stops the start).
    pub(crate) fn new(
        upstream: &str,
        credentials: &GoogleCredentials,
        client: reqwest::Client,
    ) -> Result<Self, String> {
        let source = match credentials {
            GoogleCredentials::ServiceAccount(path) => {
                let text = std::fs::read(path)
                    .map_err(|e| format!("credentials_file {}: {e}", path.display()))?;
                Source::ServiceAccount(Box::new(
                    service_account(&text)
                        .map_err(|e| format!("credentials_file {}: {e}", path.display()))?,
                ))
            }
            GoogleCredentials::Metadata(base) => Source::Metadata(
                reqwest::Url::parse(&format!(
                    "{base}/computeMetadata/v1/instance/service-accounts/default/token"
                ))
                .map_err(|e| format!("metadata server {base}: {e}"))?,
            ),
        };
        Ok(Self {
            upstream: upstream.to_owned(),
            source,
            client,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// The `authorization` header for the next request: the kept token, or a new one.
    pub(crate) async fn header(&self) -> Result<HeaderValue, GatewayError> {
        let mut slot = self.token.lock().await;
        let now = Instant::now();
        if let Some(token) = slot.as_ref().filter(|t| now < t.refresh_at) {
            return Ok(token.header.clone());
        }
        match self.fetch().await {
            Ok(token) => {
                let header = token.header.clone();
                *slot = Some(token);
                Ok(header)
            }
            Err(e) => match slot.as_ref().filter(|t| now < t.expires_at) {
                Some(old) => {
                    tracing::warn!(upstream = %self.upstream, error = %e,
                        "a Google access token could not be refreshed; the current one is used until it expires");
                    Ok(old.header.clone())
                }
                None => Err(GatewayError::UpstreamUnavailable {
                    upstream: self.upstream.clone(),
                    detail: format!("no Google access token: {e}"),
                    retry_after: None,
                }),
            },
        }
    }

    async fn fetch(&self) -> Result<Token, String> {
        let request = match &self.source {
            Source::ServiceAccount(sa) => {
                let assertion = sa.assertion(SystemTime::now())?;
                let form = format!(
                    "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
                );
                self.client
                    .post(sa.token_uri.clone())
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(form)
            }
            Source::Metadata(url) => self
                .client
                .get(url.clone())
                .header("metadata-flavor", "Google"),
        };
        let asked = Instant::now();
        let mut resp = tokio::time::timeout(FETCH_TIMEOUT, request.send())
            .await
            .map_err(|_| "the token endpoint did not answer in time".to_owned())?
            .map_err(|e| format!("the token endpoint: {}", super::read::describe(&e)))?;
        let status = resp.status();
        let body = super::read::read_prefix(&mut resp, ANSWER_LIMIT).await;
        if !status.is_success() {
            let why = serde_json::from_slice::<TokenError>(&body)
                .map(|e| format!("{}: {}", e.error, e.error_description))
                .unwrap_or_default();
            return Err(format!("the token endpoint answered {status} {why}"));
        }
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| format!("the token endpoint's answer: {e}"))?;
        let mut header = HeaderValue::try_from(format!("Bearer {}", answer.access_token))
            .map_err(|_| "the access token is not a header value".to_owned())?;
        header.set_sensitive(true);
        // Life counts from when the token was asked for: the answer's travel time is not the token's.
        let life = Duration::from_secs(answer.expires_in);
        Ok(Token {
            header,
            refresh_at: asked + life.saturating_sub(REFRESH_MARGIN),
            expires_at: asked + life,
        })
    }
}

fn service_account(text: &[u8]) -> Result<ServiceAccount, String> {
    use rustls_pki_types::{pem::PemObject, PrivatePkcs8KeyDer};
    let file: KeyFile =
        serde_json::from_slice(text).map_err(|e| format!("not a service account key: {e}"))?;
    if !file.kind.is_empty() && file.kind != "service_account" {
        return Err(format!(
            "type is \"{}\", not \"service_account\"",
            file.kind
        ));
    }
    let der = PrivatePkcs8KeyDer::from_pem_slice(file.private_key.as_bytes())
        .map_err(|e| format!("private_key: not a PKCS#8 PEM key ({e})"))?;
    let key = signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
        .map_err(|e| format!("private_key: not an RSA key ring takes ({e})"))?;
    let token_uri = reqwest::Url::parse(&file.token_uri).map_err(|e| format!("token_uri: {e}"))?;
    Ok(ServiceAccount {
        email: file.client_email,
        key_id: file.private_key_id,
        key,
        token_uri,
    })
}

impl ServiceAccount {
    /// The signed JWT that asks for a token: issued by the account, for its token endpoint, an hour long.
    fn assertion(&self, now: SystemTime) -> Result<String, String> {
        let iat = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| "the clock is before 1970".to_owned())?
            .as_secs();
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": self.key_id});
        let claims = serde_json::json!({
            "iss": self.email,
            "scope": SCOPE,
            "aud": self.token_uri.as_str(),
            "iat": iat,
            "exp": iat + 3600,
        });
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signed.as_bytes(),
                &mut sig,
            )
            .map_err(|_| "signing the assertion failed".to_owned())?;
        Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}
