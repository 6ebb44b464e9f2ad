//! The OpenAI chat-completions dialect: its wire types (`wire`), the translation of gRPC requests to it and of
//! its answers back (`convert`), and the fields beyond text — tools, images, logprobs, provider options
//! (`extras`). Its embeddings API is `embeddings`.

pub mod convert;
pub(crate) mod embeddings;
pub mod extras;
pub(crate) mod wire;
