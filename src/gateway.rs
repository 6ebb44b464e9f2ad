//! The gateway core that the handlers call: resolve and check a request, then call its upstream within its
//! deadline and the server's lifecycle. Built once at start; shared by every request.

use std::{future::Future, sync::Arc};

use tokio_util::sync::CancellationToken;

use crate::{
    auth::{Identity, KeyStore},
    config::{Config, InteractiveConfig},
    convert,
    deadline::Deadline,
    error::GatewayError,
    proto::{GenerationConfig, Message},
    router::{Model, Route, Router},
    upstream::{ChunkStream, Completion},
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

    /// A unary completion on the model's route.
    pub async fn complete(
        &self,
        route: &Route,
        messages: &[Message],
        config: Option<&GenerationConfig>,
        deadline: Deadline,
    ) -> Result<Completion, GatewayError> {
        let req = convert::chat_request(
            &route.model,
            messages,
            config,
            route.upstream.max_tokens_field(),
            false,
        );
        self.bounded(deadline, route.upstream.complete(&req)).await
    }

    /// Opens a stream on the model's route: returns once the upstream accepted the request.
    pub async fn open_stream<'a>(
        &self,
        route: &'a Route,
        messages: impl IntoIterator<Item = &'a Message>,
        config: Option<&'a GenerationConfig>,
        deadline: Deadline,
    ) -> Result<ChunkStream, GatewayError> {
        let req = convert::chat_request(
            &route.model,
            messages,
            config,
            route.upstream.max_tokens_field(),
            true,
        );
        self.bounded(deadline, route.upstream.stream(&req)).await
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
