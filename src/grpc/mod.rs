//! The three RPC handlers: decode, check, call the core, encode. Thin on purpose.

pub(crate) mod codec;
pub(crate) mod embed;
pub(crate) mod generate;
mod interactive;
mod pipeline;
mod relay;
pub(crate) mod stream;

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::{
    admission::auth::Identity,
    admission::limits::Admission,
    core::cache::{self, CacheControl, Plan},
    core::gateway::Gateway,
    core::rpclog::RpcLog,
    error::GatewayError,
    observe::telemetry,
    proto::{
        ai_service_server::{AiService, AiServiceServer},
        EmbedRequest, EmbedResponse, GenerateRequest, GenerateResponse, GenerationConfig,
        InteractiveRequest, InteractiveResponse, Message, StreamChunk, StreamGenerateRequest,
    },
    routing::deadline::{self, Deadline},
    routing::router::Model,
    transport::trailers::TrailerSlot,
};

pub(crate) struct AiGateway {
    gateway: Arc<Gateway>,
}

/// The AIService with authentication in front: a cheap synchronous check, so a tonic interceptor. It puts
/// the caller's [`Identity`] into the request extensions for the handler.
pub(crate) fn service(
    gateway: Arc<Gateway>,
) -> tonic::service::interceptor::InterceptedService<
    AiServiceServer<AiGateway>,
    impl tonic::service::Interceptor + Clone,
> {
    let auth = gateway.clone();
    let interceptor = move |mut req: Request<()>| {
        let who = authenticate(&auth, req.metadata())?;
        req.extensions_mut().insert(who);
        Ok(req)
    };
    AiServiceServer::with_interceptor(AiGateway { gateway }, interceptor)
}

/// The caller's identity from its bearer key. A refusal is counted and logged here, before any handler, with
/// empty rpc, model and key labels (the key is unknown).
pub(crate) fn authenticate(
    gw: &Gateway,
    metadata: &tonic::metadata::MetadataMap,
) -> Result<Arc<Identity>, GatewayError> {
    gw.catalog().keys.authenticate(metadata).inspect_err(|e| {
        let code = crate::core::rpclog::code_name(e.code());
        gw.metrics
            .requests
            .with_label_values(&["", "", "", code])
            .inc();
        tracing::info!(target: "aigw::rpc", code, error = e.label(), "rejected before the handler");
    })
}

/// The identity the interceptor attached.
fn identity<T>(req: &Request<T>) -> Result<Arc<Identity>, Status> {
    req.extensions()
        .get::<Arc<Identity>>()
        .cloned()
        .ok_or_else(|| Status::internal("request not authenticated"))
}

/// What every RPC reads from its metadata before taking the body.
struct Start {
    who: Arc<Identity>,
    /// The client's `x-request-id`, or one made up here; sent upstream, echoed back, logged.
    request_id: String,
    client_timeout: Option<Duration>,
    trailers: Option<Arc<TrailerSlot>>,
    cache_control: CacheControl,
    /// The caller's W3C trace context, when it sent one and tracing is on.
    parent: Option<opentelemetry::Context>,
    /// The caller's API headers (`anthropic-beta`, ...), for upstreams of their dialect.
    api_headers: crate::upstream::api_headers::ApiHeaders,
}

impl Start {
    fn read<T>(req: &Request<T>) -> Result<Start, Status> {
        let given = req.metadata().get("x-request-id");
        let request_id = request_id(given.and_then(|v| v.to_str().ok()));
        let client_timeout = deadline::client_timeout(req.metadata());
        let who = identity(req).map_err(|s| tag(s, &request_id))?;
        let trailers = req.extensions().get::<Arc<TrailerSlot>>().cloned();
        Ok(Start {
            who,
            request_id,
            client_timeout,
            trailers,
            cache_control: CacheControl::read(req.metadata()),
            parent: telemetry::caller_context(req.metadata()),
            api_headers: crate::upstream::api_headers::ApiHeaders::read(req.metadata()),
        })
    }

    /// The span every log line of this RPC is written in, its spawned tasks included: a child of the caller's
    /// trace when it sent one.
    fn span(&self, rpc: &'static str) -> tracing::Span {
        telemetry::rpc_span(rpc, &self.request_id, &self.who.name, self.parent.as_ref())
    }

    /// The RPC's record: log line, metrics, usage book, trailers.
    fn record(&self, rpc: &'static str, gw: &Arc<Gateway>) -> RpcLog {
        RpcLog::new(
            rpc,
            gw.clone(),
            self.who.clone(),
            &self.request_id,
            self.trailers.clone(),
        )
    }

    /// The call's deadline: the client's, bounded by the slowest route's request_timeout.
    fn deadline(&self, model: &Model) -> Deadline {
        Deadline::new(Instant::now(), self.client_timeout, model.request_timeout())
    }

    /// An error as the client gets it: its status, tagged with the request id.
    fn fail(&self, err: GatewayError) -> Status {
        tag(Status::from(err), &self.request_id)
    }

    /// A call's failure as the client gets it, after `attempts` upstream attempts: an upstream failure the
    /// gateway already retried says `x-should-retry: false`, which the OpenAI and Anthropic SDKs honour, so their
    /// own retries do not multiply the gateway's (docs/traffic.md, "The combined retry budget").
    fn fail_after(&self, err: GatewayError, attempts: u32) -> Status {
        let retried = attempts > 0 && err.is_retryable();
        let mut status = self.fail(err);
        if retried {
            status.metadata_mut().insert(
                "x-should-retry",
                tonic::metadata::MetadataValue::from_static("false"),
            );
        }
        status
    }

    fn respond<T>(&self, msg: T) -> Response<T> {
        let mut resp = Response::new(msg);
        set_request_id(resp.metadata_mut(), &self.request_id);
        resp
    }

    /// The response cache's part in this admitted request to `model`: a hit, already billed (the kept usage
    /// when the model charges hits, else nothing: the reserved tokens go back); or the plan for a call that
    /// goes upstream, its miss or bypass recorded in the log.
    async fn look_up(
        &self,
        gw: &Gateway,
        model: &Model,
        (messages, config): (&[Message], Option<&GenerationConfig>),
        admission: &mut Admission,
        log: &mut RpcLog,
    ) -> Result<Arc<cache::Entry>, Plan> {
        let plan = cache::plan(
            model.cache.as_ref(),
            self.cache_control,
            &self.who.owner,
            &model.name,
            messages,
            config,
        );
        look_up_plan(gw, model, plan, admission, log).await
    }
}

/// The cache's answer to `plan`, billed as the model says (see [`Start::look_up`]); else the plan back, its
/// miss or bypass recorded in the log.
async fn look_up_plan(
    gw: &Gateway,
    model: &Model,
    plan: Plan,
    admission: &mut Admission,
    log: &mut RpcLog,
) -> Result<Arc<cache::Entry>, Plan> {
    let Some(hit) = gw.cached(model, plan).await else {
        if let Some(label) = plan.miss_label() {
            log.cache(label);
        }
        return Err(plan);
    };
    log.cache("hit");
    if model.cache.as_ref().is_some_and(|c| c.charge_hits) {
        admission.reconcile(hit.usage.total_tokens.max(0) as u64);
        log.add_usage(Some(&hit.usage), hit.usage_estimated);
    } else {
        admission.release();
    }
    Ok(hit)
}

/// Ends a unary call: its log records the outcome, and the client gets the answer (with its cache label) or
/// the status.
fn conclude<T>(
    start: &Start,
    log: RpcLog,
    result: Result<(T, Option<&'static str>), GatewayError>,
) -> Result<Response<T>, Status> {
    match result {
        Ok((resp, cached)) => {
            log.finish(Ok(()));
            Ok(cache_header(start.respond(resp), cached))
        }
        Err(e) => {
            let attempts = log.attempts();
            log.finish(Err(&e));
            Err(start.fail_after(e, attempts))
        }
    }
}

/// Says in the response metadata whether the cache answered: `aigw-cache: hit | miss | bypass`.
fn cache_header<T>(mut resp: Response<T>, label: Option<&'static str>) -> Response<T> {
    if let Some(label) = label {
        resp.metadata_mut().insert(
            "aigw-cache",
            tonic::metadata::MetadataValue::from_static(label),
        );
    }
    resp
}

/// The client's `x-request-id` when it is fit to pass on, else a new one.
pub(crate) fn request_id(given: Option<&str>) -> String {
    given
        .filter(|id| valid_request_id(id))
        .map_or_else(|| format!("{:032x}", fastrand::u128(..)), str::to_owned)
}

/// Printable ASCII, at most 128 bytes: anything else is replaced rather than passed upstream or into logs.
fn valid_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

fn tag(mut status: Status, request_id: &str) -> Status {
    set_request_id(status.metadata_mut(), request_id);
    status
}

/// Echoes the request id (always printable ASCII: checked or generated in `Start::read`).
fn set_request_id(metadata: &mut tonic::metadata::MetadataMap, request_id: &str) {
    if let Ok(v) = request_id.parse() {
        metadata.insert("x-request-id", v);
    }
}

#[tonic::async_trait]
impl AiService for AiGateway {
    async fn generate(
        &self,
        request: Request<GenerateRequest>,
    ) -> Result<Response<GenerateResponse>, Status> {
        generate::handle(self.gateway.clone(), "Generate", request).await
    }

    type StreamGenerateStream = ReceiverStream<Result<StreamChunk, Status>>;

    async fn stream_generate(
        &self,
        request: Request<StreamGenerateRequest>,
    ) -> Result<Response<Self::StreamGenerateStream>, Status> {
        stream::handle(self.gateway.clone(), "StreamGenerate", request).await
    }

    type InteractiveStreamStream = ReceiverStream<Result<InteractiveResponse, Status>>;

    async fn interactive_stream(
        &self,
        request: Request<tonic::Streaming<InteractiveRequest>>,
    ) -> Result<Response<Self::InteractiveStreamStream>, Status> {
        interactive::handle(self.gateway.clone(), request).await
    }

    async fn embed(
        &self,
        request: Request<EmbedRequest>,
    ) -> Result<Response<EmbedResponse>, Status> {
        embed::handle(self.gateway.clone(), "Embed", request).await
    }
}
