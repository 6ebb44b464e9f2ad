//! What a call asks, of the kinds that take the one opening (`open`): a chat completion, whole or streamed, or
//! embeddings. The opening's steps are the same for both; what differs by kind is asked of an `Ask` here.

use std::sync::Arc;

use super::{checks, request::Request};
use crate::{
    admission::{auth::Identity, estimate},
    core::{
        cache::{self, CacheControl, Plan},
        gateway::Gateway,
    },
    error::GatewayError,
    proto::{EmbedRequest, Usage},
    routing::{deadline::Deadline, dispatch::Call, router::Model},
    upstream::{
        openai::embeddings::{self, EmbedAsk},
        pass_through::PassThrough,
    },
};

/// What a call asks, of the kinds that open through [`super::open`]: a chat completion (answered whole or
/// streamed) or embeddings. Each step of the opening asks it what differs by kind: its checks, its token
/// estimate, its cache key, what the dispatcher sends.
#[derive(Clone, Copy)]
pub(crate) enum Ask<'a> {
    Chat(&'a Request),
    Embed(&'a EmbedRequest),
}

impl<'a> Ask<'a> {
    /// The model as the client named it.
    pub(crate) fn model(self) -> &'a str {
        match self {
            Self::Chat(r) => &r.model,
            Self::Embed(r) => &r.model,
        }
    }

    /// The model that answers, once every check on the request passed.
    pub(crate) fn check(self, gw: &Gateway, who: &Identity) -> Result<Arc<Model>, GatewayError> {
        match self {
            Self::Chat(r) => checks::chat(gw, who, r),
            Self::Embed(r) => checks::embedding(gw, who, &r.model, &r.input, r.dimensions),
        }
    }

    /// The tokens to reserve against the key's tpm: the prompt and its output budget, or the input alone
    /// (nothing is generated).
    pub(crate) fn reserve(self, model: &Model) -> u64 {
        match self {
            Self::Chat(r) => estimate::reserve(model, &r.messages, r.config.as_ref()),
            Self::Embed(r) => embeddings::estimate(&r.input),
        }
    }

    /// One attempt's prompt, estimated: what an attempt that reached the upstream and got no answer is booked.
    pub(crate) fn prompt_usage(self) -> Usage {
        match self {
            Self::Chat(r) => estimate::estimate_usage(&r.messages, 0),
            Self::Embed(r) => {
                let n = i32::try_from(embeddings::estimate(&r.input)).unwrap_or(i32::MAX);
                Usage {
                    prompt_tokens: n,
                    total_tokens: n,
                    ..Default::default()
                }
            }
        }
    }

    /// Where the answer is looked for, and kept, in the cache.
    pub(crate) fn plan(self, model: &Model, control: CacheControl, caller: &str) -> Plan {
        let policy = model.cache.as_ref();
        match self {
            Self::Chat(r) => cache::plan(
                policy,
                control,
                caller,
                &model.name,
                (&r.messages, r.config.as_ref(), &r.pass),
            ),
            Self::Embed(r) => {
                cache::embed_plan(policy, control, caller, &model.name, &r.input, r.dimensions)
            }
        }
    }

    /// The dispatcher's call for it (the rest of its fields set by the caller).
    pub(crate) fn call(self, deadline: Deadline, request_id: &'a str) -> Call<'a> {
        let mut call = Call {
            messages: &[],
            config: None,
            pass: &NOTHING,
            embed: None,
            deadline,
            request_id,
            accepted: None,
            api_headers: None,
            requested: self.model(),
        };
        match self {
            Self::Chat(r) => {
                call.messages = &r.messages;
                call.config = r.config.as_ref();
                call.pass = &r.pass;
            }
            Self::Embed(r) => {
                call.embed = Some(EmbedAsk {
                    input: &r.input,
                    // Checked positive.
                    dimensions: r.dimensions.map(i32::unsigned_abs),
                    user: &r.user,
                });
            }
        }
        call
    }
}

/// No pass-through fields (an embeddings call's).
static NOTHING: std::sync::LazyLock<PassThrough> = std::sync::LazyLock::new(PassThrough::default);
