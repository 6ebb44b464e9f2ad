//! Reloading the config file at run time (`SIGHUP`, or `POST /v1/reload` on the admin listener): read and
//! validate it, swap the catalog (models, routes, upstreams, prices, keys and their limits: `catalog.rs`) and
//! read the TLS certificate and key again. An invalid file changes nothing: the error is logged and returned.
//! Settings read only at start are compared, and each one that changed is named as needing a restart.

use std::{path::PathBuf, sync::Arc};

use serde::Serialize;

use crate::{config::Config, core::gateway::Gateway, transport::tls::Certificate};

/// Looks up environment variables (the process's, or a test's).
pub type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

pub(crate) struct Reloader {
    path: PathBuf,
    env: Env,
    gateway: Arc<Gateway>,
    certificate: Option<Arc<Certificate>>,
    /// The config the process started with, for what only a restart changes.
    started: Config,
}

#[derive(Debug, Serialize)]
pub(crate) struct Reloaded {
    pub(crate) summary: String,
    /// Settings that differ from the running ones but take a restart.
    pub(crate) restart_needed: Vec<&'static str>,
}

impl Reloader {
    pub(crate) fn new(
        (path, env): (PathBuf, Env),
        gateway: Arc<Gateway>,
        certificate: Option<Arc<Certificate>>,
        started: Config,
    ) -> Reloader {
        Reloader {
            path,
            env,
            gateway,
            certificate,
            started,
        }
    }

    pub(crate) fn reload(&self) -> Result<Reloaded, String> {
        let result = self.try_reload();
        match &result {
            Ok(r) if r.restart_needed.is_empty() => {
                tracing::info!(file = %self.path.display(), summary = %r.summary, "config reloaded")
            }
            Ok(r) => tracing::warn!(
                file = %self.path.display(),
                summary = %r.summary,
                restart_needed = ?r.restart_needed,
                "config reloaded; some changes take a restart"
            ),
            Err(e) => {
                tracing::error!(file = %self.path.display(), error = %e, "config not reloaded: the running one stays")
            }
        }
        result
    }

    fn try_reload(&self) -> Result<Reloaded, String> {
        let cfg = Config::load_with(&self.path, &*self.env)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        let restart_needed = restart_only(&self.started, &cfg);
        // The certificate first: a bad one refuses the whole reload before anything is swapped.
        if let Some(cert) = &self.certificate {
            if !restart_needed.contains(&"server.tls") {
                cert.reload().map_err(|e| e.to_string())?;
            }
        }
        let summary = self.gateway.reload(&cfg).map_err(|e| e.to_string())?;
        Ok(Reloaded {
            summary,
            restart_needed,
        })
    }
}

/// The settings read at start only that differ between `a` and `b`. (Listen addresses are left out: the
/// command line may override them.)
fn restart_only(a: &Config, b: &Config) -> Vec<&'static str> {
    let same =
        |x: &dyn std::fmt::Debug, y: &dyn std::fmt::Debug| format!("{x:?}") == format!("{y:?}");
    let mut changed = Vec::new();
    for (name, differs) in [
        ("server.tls", !same(&a.tls, &b.tls)),
        (
            "server.shutdown_grace",
            a.shutdown_grace != b.shutdown_grace,
        ),
        ("log", !same(&a.log_format, &b.log_format)),
        ("admin.key_env", a.admin_key != b.admin_key),
        ("admin.state_file", a.state_file != b.state_file),
        (
            "connections",
            !same(&a.connections, &b.connections)
                || !same(&a.admin_connections, &b.admin_connections),
        ),
        ("scaling", !same(&a.scaling, &b.scaling)),
        ("tracing", !same(&a.tracing, &b.tracing)),
        ("interactive", !same(&a.interactive, &b.interactive)),
        ("server.max_in_flight", a.max_in_flight != b.max_in_flight),
        ("cache", !same(&a.cache, &b.cache)),
        ("shared", !same(&a.shared, &b.shared)),
        ("cors", !same(&a.cors, &b.cors)),
        ("usage_records", !same(&a.usage_records, &b.usage_records)),
        ("auth.jwt", a.jwt != b.jwt),
    ] {
        if differs {
            changed.push(name);
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn a_change_to_the_trusted_issuers_takes_a_restart() {
        let text = |aud: &str| {
            format!(
                r#"
                [server]
                listen = "127.0.0.1:0"
                [[auth.jwt]]
                issuer = "https://id.example.com/"
                jwks_url = "https://id.example.com/keys"
                audiences = ["{aud}"]
                "#
            )
        };
        let parse = |aud| Config::parse(&text(aud), |_| None).unwrap();
        assert_eq!(
            super::restart_only(&parse("a"), &parse("a")),
            Vec::<&str>::new()
        );
        assert_eq!(
            super::restart_only(&parse("a"), &parse("b")),
            vec!["auth.jwt"]
        );
    }
}
