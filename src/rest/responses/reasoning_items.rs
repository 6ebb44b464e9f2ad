//! Reasoning items as the Responses door writes them and reads them back: the gateway's own item ids, and a
//! block's signature (or redacted data) carried in `encrypted_content`, which the client returns untouched.

use crate::proto::Reasoning;

/// How the ids of the reasoning items the gateway makes begin: a provider's own (`rs_...`) are kept and sent
/// back to it, the gateway's are not.
pub(super) const GATEWAY_REASONING_ID: &str = "rs_aigw";

/// What marks a redacted block's data in `encrypted_content` (a signature is sent as it is).
const REDACTED: &str = "aigw-redacted:";

/// A reasoning block's opaque part as the Responses door writes it in `encrypted_content`.
pub(super) fn encrypted_content(r: &Reasoning) -> Option<String> {
    if !r.redacted.is_empty() {
        Some(format!("{REDACTED}{}", r.redacted))
    } else {
        (!r.signature.is_empty()).then(|| r.signature.clone())
    }
}

/// A reasoning item read back: its text, its `encrypted_content` as the signature (or redacted data), and its
/// id when it is a provider's (`rs_...` from a Responses API upstream; the gateway's own ids are not kept).
pub(super) fn from_encrypted(
    text: String,
    encrypted: Option<String>,
    id: Option<String>,
) -> Reasoning {
    let encrypted = encrypted.unwrap_or_default();
    let id = id
        .filter(|id| !id.starts_with(GATEWAY_REASONING_ID))
        .unwrap_or_default();
    match encrypted.strip_prefix(REDACTED) {
        Some(data) => Reasoning {
            redacted: data.to_owned(),
            ..Default::default()
        },
        None => Reasoning {
            text,
            signature: encrypted,
            redacted: String::new(),
            id,
        },
    }
}
