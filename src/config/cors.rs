//! `[cors]`: which browser origins may call the gateway (gRPC-Web and REST). Off when the section is absent.

use std::time::Duration;

use http::HeaderValue;
use serde::Deserialize;

use super::{duration, err, ConfigError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCors {
    allow_origins: Vec<String>,
    #[serde(default = "default_max_age", deserialize_with = "duration")]
    max_age: Duration,
}

fn default_max_age() -> Duration {
    Duration::from_secs(3600)
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Origins {
    /// `["*"]`: any origin. Safe here because calls carry their key in a header, never in a cookie.
    Any,
    List(Vec<HeaderValue>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CorsConfig {
    pub(crate) allow_origins: Origins,
    /// How long a browser may keep a preflight's answer.
    pub(crate) max_age: Duration,
}

impl RawCors {
    pub(super) fn check(self) -> Result<CorsConfig, ConfigError> {
        let allow_origins = match self.allow_origins.as_slice() {
            [] => return err("cors.allow_origins: at least one origin, or \"*\""),
            [any] if any == "*" => Origins::Any,
            list => list
                .iter()
                .map(|o| {
                    origin(o)
                        .map_err(|why| ConfigError(format!("cors.allow_origins: '{o}': {why}")))
                })
                .collect::<Result<_, _>>()
                .map(Origins::List)?,
        };
        Ok(CorsConfig {
            allow_origins,
            max_age: self.max_age,
        })
    }
}

/// An origin as browsers send it: `scheme://host[:port]`, nothing after.
fn origin(o: &str) -> Result<HeaderValue, &'static str> {
    if o == "*" {
        return Err("\"*\" must be the only entry");
    }
    let rest = o
        .strip_prefix("https://")
        .or_else(|| o.strip_prefix("http://"))
        .ok_or("must start with http:// or https://")?;
    if rest.is_empty() || rest.contains('/') {
        return Err("must be scheme://host[:port], with no path");
    }
    HeaderValue::from_str(o).map_err(|_| "not a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(origins: &[&str]) -> Result<CorsConfig, ConfigError> {
        RawCors {
            allow_origins: origins.iter().map(|s| s.to_string()).collect(),
            max_age: default_max_age(),
        }
        .check()
    }

    #[test]
    fn origins_are_checked() {
        assert_eq!(check(&["*"]).unwrap().allow_origins, Origins::Any);
        let list = check(&["https://app.example.com", "http://localhost:5173"]).unwrap();
        assert!(matches!(list.allow_origins, Origins::List(v) if v.len() == 2));
        for bad in [
            &[][..],
            &["*", "https://a.example"],
            &["app.example.com"],
            &["https://a.example/x"],
        ] {
            let e = check(bad).unwrap_err();
            assert!(e.0.starts_with("cors.allow_origins"), "{bad:?}: {e}");
        }
    }
}
