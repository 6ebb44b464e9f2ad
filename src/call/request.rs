//! A chat call's request as every door hands it in: the contract's typed parts (model, messages, config) and
//! what travels to the upstream unchanged, as JSON ([`PassThrough`]). The REST doors build it from their
//! JSON bodies; the gRPC door from its messages, whose Struct fields are turned into JSON here, once.

use crate::{
    proto::{GenerateRequest, GenerationConfig, Message, StreamGenerateRequest},
    upstream::pass_through::PassThrough,
};

/// One chat call's request.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Request {
    pub(crate) model: String,
    pub(crate) messages: Vec<Message>,
    /// The typed settings; its Struct fields are always empty (they are in `pass`).
    pub(crate) config: Option<GenerationConfig>,
    pub(crate) pass: PassThrough,
}

impl Request {
    /// From the contract's parts: the config's Struct fields move into `pass`.
    pub(crate) fn new(
        model: String,
        messages: Vec<Message>,
        mut config: Option<GenerationConfig>,
    ) -> Self {
        let pass = config
            .as_mut()
            .map(PassThrough::take_from)
            .unwrap_or_default();
        Self {
            model,
            messages,
            config,
            pass,
        }
    }
}

impl From<GenerateRequest> for Request {
    fn from(r: GenerateRequest) -> Self {
        Self::new(r.model, r.messages, r.config)
    }
}

impl From<StreamGenerateRequest> for Request {
    fn from(r: StreamGenerateRequest) -> Self {
        Self::new(r.model, r.messages, r.config)
    }
}
