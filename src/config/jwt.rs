//! `[[auth.jwt]]`: identity providers whose tokens (OIDC/JWT) are accepted as `authorization: Bearer <JWT>`
//! beside the API keys. Each names its issuer, where its signing keys are published (JWKS), the audiences a
//! token must be for, and the claim that names the caller; its callers get their own limits, allow-list and
//! group like keys do.

use std::time::Duration;

use serde::Deserialize;

use super::{duration, err, ConfigError, GroupConfig, KeyLimits, ModelConfig, ModelLimits};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    #[serde(default)]
    jwt: Vec<RawJwt>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    name: Option<String>,
    issuer: String,
    jwks_url: String,
    audiences: Vec<String>,
    #[serde(default = "default_tenant_claim")]
    tenant_claim: String,
    group: Option<String>,
    group_claim: Option<String>,
    models: Option<Vec<String>>,
    #[serde(default)]
    limits: KeyLimits,
    #[serde(default)]
    model_limits: ModelLimits,
    #[serde(default = "default_leeway", deserialize_with = "duration")]
    leeway: Duration,
    #[serde(default = "default_refresh", deserialize_with = "duration")]
    refresh: Duration,
    #[serde(default = "default_min_refresh", deserialize_with = "duration")]
    min_refresh: Duration,
    #[serde(default = "default_max_tenants")]
    max_tenants: usize,
}

fn default_tenant_claim() -> String {
    "sub".into()
}
fn default_leeway() -> Duration {
    Duration::from_secs(60)
}
fn default_refresh() -> Duration {
    Duration::from_secs(300)
}
fn default_min_refresh() -> Duration {
    Duration::from_secs(10)
}
fn default_max_tenants() -> usize {
    10_000
}

/// One trusted issuer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JwtIssuer {
    /// What its callers' names start with (`<name>:<tenant>`): the issuer's host unless set.
    pub(crate) name: String,
    /// The `iss` its tokens carry, compared exactly.
    pub(crate) issuer: String,
    pub(crate) jwks_url: String,
    /// A token's `aud` must name one of these.
    pub(crate) audiences: Vec<String>,
    /// The claim whose value names the caller (`sub` by default).
    pub(crate) tenant_claim: String,
    /// The group every caller of this issuer is in, unless `group_claim` names another.
    pub(crate) group: Option<String>,
    /// A claim whose value names the caller's group (team); a value that names no group is refused.
    pub(crate) group_claim: Option<String>,
    /// `None`: every model.
    pub(crate) models: Option<Vec<String>>,
    /// Each caller's own limits, over `[limits.default]`.
    pub(crate) limits: KeyLimits,
    /// Each caller's limits on one model's calls.
    pub(crate) model_limits: ModelLimits,
    /// Clock skew allowed on `exp` and `nbf`.
    pub(crate) leeway: Duration,
    /// How often the signing keys are read again.
    pub(crate) refresh: Duration,
    /// The least time between two reads: a token with an unknown `kid` asks for one, at most this often.
    pub(crate) min_refresh: Duration,
    /// Callers whose limit state is kept at once; an idle one makes room for a new one.
    pub(crate) max_tenants: usize,
}

impl RawAuth {
    pub(super) fn check(
        self,
        default_limits: KeyLimits,
        models: &[ModelConfig],
        groups: &[GroupConfig],
    ) -> Result<Vec<JwtIssuer>, ConfigError> {
        let mut out: Vec<JwtIssuer> = Vec::with_capacity(self.jwt.len());
        for (i, j) in self.jwt.into_iter().enumerate() {
            let at = format!("auth.jwt[{i}]");
            if j.issuer.is_empty() {
                return err(format!("{at}.issuer: must not be empty"));
            }
            let url = reqwest::Url::parse(&j.jwks_url)
                .map_err(|e| ConfigError(format!("{at}.jwks_url: {e}")))?;
            let host = url.host_str().unwrap_or_default();
            let loopback = host == "localhost"
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
                return err(format!(
                    "{at}.jwks_url: must be https (http only on loopback): the keys decide who may call"
                ));
            }
            if j.audiences.is_empty() || j.audiences.iter().any(String::is_empty) {
                return err(format!(
                    "{at}.audiences: name at least one audience (what the tokens' 'aud' must say)"
                ));
            }
            if j.tenant_claim.is_empty() || j.group_claim.as_ref().is_some_and(String::is_empty) {
                return err(format!(
                    "{at}: tenant_claim and group_claim must not be empty"
                ));
            }
            if let Some(g) = &j.group {
                if !groups.iter().any(|group| &group.name == g) {
                    return err(format!("{at}.group: no group named '{g}'"));
                }
            }
            for (k, name) in j.models.iter().flatten().enumerate() {
                if !models
                    .iter()
                    .any(|m| &m.name == name || m.aliases.contains(name))
                {
                    return err(format!("{at}.models[{k}]: no model named '{name}'"));
                }
            }
            let limits = j.limits.or(default_limits);
            if limits.rpm == Some(0)
                || limits.tpm == Some(0)
                || limits.concurrency == Some(0)
                || limits.bad_budget()
            {
                return err(format!(
                    "{at}.limits: a limit of 0 would refuse every call; remove the issuer instead"
                ));
            }
            if j.refresh < j.min_refresh || j.min_refresh < Duration::from_secs(1) {
                return err(format!(
                    "{at}: min_refresh must be at least 1s and refresh at least min_refresh"
                ));
            }
            if j.max_tenants == 0 {
                return err(format!("{at}.max_tenants: must be at least 1"));
            }
            let name = j
                .name
                .unwrap_or_else(|| url.host_str().unwrap_or("jwt").to_owned());
            if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == ':') {
                return err(format!("{at}.name: a word without ':' or spaces"));
            }
            if out.iter().any(|o| o.issuer == j.issuer || o.name == name) {
                return err(format!(
                    "{at}: another issuer has the issuer '{}' or the name '{name}' (set name to tell them apart)",
                    j.issuer
                ));
            }
            out.push(JwtIssuer {
                name,
                issuer: j.issuer,
                jwks_url: j.jwks_url,
                audiences: j.audiences,
                tenant_claim: j.tenant_claim,
                group: j.group,
                group_claim: j.group_claim,
                models: j.models,
                limits,
                model_limits: super::policy::check_model_limits(&at, j.model_limits, models)?,
                leeway: j.leeway,
                refresh: j.refresh,
                min_refresh: j.min_refresh,
                max_tenants: j.max_tenants,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    fn parse(jwt: &str) -> Result<Config, String> {
        let text = format!(
            r#"
            [server]
            listen = "127.0.0.1:0"
            [[groups]]
            name = "team"
            [[upstreams]]
            name = "mock"
            kind = "mock"
            [[models]]
            name = "m"
            max_output_tokens = 100
            routes = [{{ upstream = "mock", model = "m" }}]
            {jwt}
            "#
        );
        Config::parse(&text, |_| None).map_err(|e| e.0)
    }

    const GOOD: &str = r#"
        [[auth.jwt]]
        issuer = "https://id.example.com/"
        jwks_url = "https://id.example.com/keys"
        audiences = ["aigw"]
    "#;

    #[test]
    fn an_issuer_needs_its_keys_over_https_an_audience_and_groups_and_models_that_exist() {
        let cfg = parse(GOOD).unwrap();
        let issuer = &cfg.jwt[0];
        assert_eq!(
            (issuer.name.as_str(), issuer.tenant_claim.as_str()),
            ("id.example.com", "sub")
        );
        assert_eq!(issuer.min_refresh.as_secs(), 10);
        let local = GOOD.replace("https://id.example.com/keys", "http://127.0.0.1:8080/keys");
        assert!(parse(&local).is_ok());
        for (change, says) in [
            (
                ("https://id.example.com/keys", "http://id.example.com/keys"),
                "auth.jwt[0].jwks_url: must be https",
            ),
            (
                ("audiences = [\"aigw\"]", "audiences = []"),
                "auth.jwt[0].audiences",
            ),
            (
                ("audiences", "group = \"nope\"\naudiences"),
                "auth.jwt[0].group: no group named 'nope'",
            ),
            (
                ("audiences", "models = [\"x\"]\naudiences"),
                "auth.jwt[0].models[0]: no model named 'x'",
            ),
            (
                ("audiences", "limits = { rpm = 0 }\naudiences"),
                "auth.jwt[0].limits",
            ),
            (
                ("audiences", "min_refresh = \"10m\"\naudiences"),
                "refresh at least min_refresh",
            ),
            (
                ("audiences", "name = \"a:b\"\naudiences"),
                "auth.jwt[0].name",
            ),
            (
                ("audiences", "algorithm = \"HS256\"\naudiences"),
                "unknown field `algorithm`",
            ),
        ] {
            let err = parse(&GOOD.replacen(change.0, change.1, 1)).unwrap_err();
            assert!(err.contains(says), "{err} should say {says}");
        }
        let twice = parse(&format!("{GOOD}{GOOD}")).unwrap_err();
        assert!(twice.contains("auth.jwt[1]: another issuer"), "{twice}");
    }
}
