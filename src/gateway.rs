//! The gateway core that the handlers call: resolve and check a request, then call its upstream within its
//! deadline and the server's lifecycle. Built once at start; shared by every request.

use std::{future::Future, sync::Arc};

use tokio::{sync::Semaphore, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    auth::{Identity, KeyStore},
    config::{Config, InteractiveConfig},
    convert,
    deadline::Deadline,
    error::GatewayError,
    limits::{estimate_tokens, Admission},
    metrics::Metrics,
    proto::{GenerationConfig, Message},
    router::{Model, Router},
    usage::UsageBook,
};

/// Shutdown state: `draining` fires when the server stops accepting; `stop` fires when the grace period is
/// over and whatever is still running must end.
#[derive(Clone, Default)]
pub struct Lifecycle {
    pub draining: CancellationToken,
    pub stop: CancellationToken,
}

pub struct Gateway {
    pub router: Router,
    pub keys: KeyStore,
    pub interactive: InteractiveConfig,
    pub lifecycle: Lifecycle,
    /// The process-wide cap on calls in flight (load shedding).
    pub in_flight: Arc<Semaphore>,
    pub metrics: Arc<Metrics>,
    pub usage: UsageBook,
}

/// Tokens to reserve for a request against its key's tpm.
pub fn reserve(model: &Model, messages: &[Message], config: Option<&GenerationConfig>) -> u64 {
    let output = config
        .and_then(|c| c.max_tokens)
        .map_or(model.default_output_tokens, |n| n.max(1) as u32);
    estimate_tokens(messages.iter().map(|m| m.content.as_str()), output)
}

impl Gateway {
    pub fn new(cfg: &Config) -> Result<Arc<Gateway>, GatewayError> {
        let router = Router::new(cfg)?;
        let keys = KeyStore::new(&cfg.keys, &router);
        Ok(Arc::new(Gateway {
            router,
            keys,
            interactive: cfg.interactive,
            lifecycle: Lifecycle::default(),
            in_flight: Arc::new(Semaphore::new(cfg.max_in_flight as usize)),
            metrics: Arc::new(Metrics::new()),
            usage: UsageBook::new(cfg),
        }))
    }

    /// Resolves the model for this key and checks the request against it.
    pub fn check(
        &self,
        who: &Identity,
        model: &str,
        messages: &[Message],
        config: Option<&GenerationConfig>,
    ) -> Result<&Arc<Model>, GatewayError> {
        let model = self.router.resolve(model, who)?;
        convert::check_messages(messages)?;
        convert::check_config(config, model.max_output_tokens)?;
        Ok(model)
    }

    /// Admits a call for this key: in-flight caps, then requests and tokens per minute, reserving the prompt
    /// estimate plus max_tokens (or the model's default output budget).
    pub fn admit(
        &self,
        who: &Identity,
        model: &Model,
        messages: &[Message],
        config: Option<&GenerationConfig>,
    ) -> Result<Admission, GatewayError> {
        let tokens = reserve(model, messages, config);
        let admitted = who.limiter.admit(Instant::now(), tokens, &self.in_flight);
        admitted.inspect_err(|e| self.rejected(who, e))
    }

    /// Counts a refusal by a limit.
    pub fn rejected(&self, who: &Identity, err: &GatewayError) {
        if let GatewayError::ResourceExhausted { limit, .. } = err {
            self.metrics
                .rejections
                .with_label_values(&[who.name.as_str(), limit])
                .inc();
        }
    }

    /// Runs `fut` until it finishes, the deadline passes or the grace period ends. Dropping `fut` drops the
    /// upstream request with it.
    pub async fn bounded<T>(
        &self,
        deadline: Deadline,
        fut: impl Future<Output = Result<T, GatewayError>>,
    ) -> Result<T, GatewayError> {
        tokio::select! {
            biased;
            _ = self.lifecycle.stop.cancelled() => Err(GatewayError::ShuttingDown),
            _ = tokio::time::sleep_until(deadline.at) => Err(deadline.exceeded()),
            result = fut => result,
        }
    }
}
