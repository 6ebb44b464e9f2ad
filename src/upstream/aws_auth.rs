//! AWS credentials and SigV4 request signing for Amazon Bedrock. Credentials are the config's (named
//! environment variables), or the standard chain's (`aws-config`: the `AWS_*` environment variables, the
//! shared profile files, web identity, SSO, a credential process, container and instance credentials), built on
//! first use with an HTTP client on rustls and ring. Credentials are kept until five minutes before they
//! expire (static ones for good), then fetched again, one fetch at a time; a failed refresh keeps the old ones
//! while they are valid. The signing is `aws-sigv4`'s; secrets never reach a log line.

use std::time::{Duration, SystemTime};

use aws_config::{default_provider::credentials::DefaultCredentialsChain, Region};
use aws_credential_types::{provider::ProvideCredentials, Credentials};
use aws_sigv4::{
    http_request::{sign, SignableBody, SignableRequest, SigningSettings},
    sign::v4,
};
use reqwest::header::{HeaderName, HeaderValue};

use crate::{config::AwsConfig, error::GatewayError};

/// The service name Bedrock's runtime API is signed for.
const SERVICE: &str = "bedrock";
/// Credentials are fetched again when less than this much of their life is left.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// The longest the chain may take to find credentials (a hung STS or instance endpoint holds no call longer).
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct AwsAuth {
    upstream: String,
    region: String,
    /// The config's own credentials; `None`: the standard chain's.
    fixed: Option<Credentials>,
    chain: tokio::sync::OnceCell<DefaultCredentialsChain>,
    /// The chain's credentials in use, behind an async lock that makes concurrent callers wait for one fetch.
    kept: tokio::sync::Mutex<Option<Credentials>>,
}

impl AwsAuth {
    pub(crate) fn new(upstream: &str, cfg: &AwsConfig) -> Self {
        Self {
            upstream: upstream.to_owned(),
            region: cfg.region.clone(),
            fixed: cfg.keys.as_ref().map(|k| {
                Credentials::new(
                    &k.access_key_id,
                    &k.secret_access_key,
                    k.session_token.clone(),
                    None,
                    "aigw-config",
                )
            }),
            chain: tokio::sync::OnceCell::new(),
            kept: tokio::sync::Mutex::new(None),
        }
    }

    fn unavailable(&self, detail: String) -> GatewayError {
        GatewayError::UpstreamUnavailable {
            upstream: self.upstream.clone(),
            detail,
            retry_after: None,
        }
    }

    async fn credentials(&self) -> Result<Credentials, GatewayError> {
        if let Some(fixed) = &self.fixed {
            return Ok(fixed.clone());
        }
        let mut kept = self.kept.lock().await;
        let now = SystemTime::now();
        let fresh = |c: &Credentials| {
            c.expiry().is_none_or(|at| {
                at.duration_since(now)
                    .is_ok_and(|left| left > REFRESH_MARGIN)
            })
        };
        if let Some(c) = kept.as_ref().filter(|c| fresh(c)) {
            return Ok(c.clone());
        }
        let chain = self
            .chain
            .get_or_init(|| async {
                let http = aws_smithy_http_client::Builder::new()
                    .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                        aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https();
                let config = aws_config::provider_config::ProviderConfig::without_region()
                    .with_region(Some(Region::new(self.region.clone())))
                    .with_http_client(http);
                DefaultCredentialsChain::builder()
                    .region(Region::new(self.region.clone()))
                    .configure(config)
                    .build()
                    .await
            })
            .await;
        let fetched = tokio::time::timeout(FETCH_TIMEOUT, chain.provide_credentials())
            .await
            .unwrap_or_else(|_| {
                Err(
                    aws_credential_types::provider::error::CredentialsError::provider_timed_out(
                        FETCH_TIMEOUT,
                    ),
                )
            });
        match fetched {
            Ok(c) => {
                *kept = Some(c.clone());
                Ok(c)
            }
            Err(e) => {
                let valid = |c: &&Credentials| c.expiry().is_none_or(|at| at > now);
                match kept.as_ref().filter(valid) {
                    Some(old) => {
                        tracing::warn!(upstream = %self.upstream, error = %e,
                            "AWS credentials could not be refreshed; the current ones are used until they expire");
                        Ok(old.clone())
                    }
                    None => Err(self.unavailable(format!("no AWS credentials: {e}"))),
                }
            }
        }
    }

    /// The headers that sign a request (`authorization`, `x-amz-date`, and `x-amz-security-token` with
    /// temporary credentials): SigV4 over its method, URL, `content-type` and body.
    pub(crate) async fn sign(
        &self,
        url: &reqwest::Url,
        content_type: &str,
        body: &[u8],
    ) -> Result<Vec<(HeaderName, HeaderValue)>, GatewayError> {
        let identity = self.credentials().await?.into();
        let failed = |e: &dyn std::fmt::Display| {
            GatewayError::Internal(format!("upstream '{}': signing: {e}", self.upstream))
        };
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SERVICE)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| failed(&e))?
            .into();
        let signable = SignableRequest::new(
            "POST",
            url.as_str(),
            std::iter::once(("content-type", content_type)),
            SignableBody::Bytes(body),
        )
        .map_err(|e| failed(&e))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| failed(&e))?
            .into_parts();
        instructions
            .headers()
            .map(|(name, value)| {
                let name = HeaderName::try_from(name).map_err(|e| failed(&e))?;
                let mut value = HeaderValue::try_from(value).map_err(|e| failed(&e))?;
                value.set_sensitive(true);
                Ok((name, value))
            })
            .collect()
    }
}
