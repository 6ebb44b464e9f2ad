//! The gateway's own token counts, where the provider's are not known yet or never come: what a call reserves
//! against its key's tpm before it goes upstream, and the usage booked when an upstream reports none. About 4
//! bytes a token and 4 a message; the provider's count replaces the estimate whenever it arrives.

use crate::{
    proto::{GenerationConfig, Message, Usage},
    routing::router::Model,
    upstream::openai::extras,
};

/// Tokens to reserve for a request: about 4 bytes per token of message text plus 4 per message, and the
/// output budget. Reconciliation replaces the estimate with the provider's count.
pub(crate) fn estimate_tokens(message_bytes: impl IntoIterator<Item = usize>, output: u32) -> u64 {
    let prompt: u64 = message_bytes
        .into_iter()
        .map(|n| (n as u64).div_ceil(4) + 4)
        .sum();
    prompt + u64::from(output)
}

/// Usage counted by the gateway when the upstream reports none: about 4 bytes a token, 4 per message.
pub(crate) fn estimate_usage(prompt: &[Message], completion_bytes: usize) -> Usage {
    let clamp = |n: u64| i32::try_from(n).unwrap_or(i32::MAX);
    let p = estimate_tokens(prompt.iter().map(extras::size), 0);
    let c = (completion_bytes as u64).div_ceil(4);
    Usage {
        prompt_tokens: clamp(p),
        completion_tokens: clamp(c),
        total_tokens: clamp(p + c),
        ..Default::default()
    }
}

/// What `n` attempts that got no answer spent: the prompt each (`one`, estimated: the provider read it, and may
/// bill it).
pub(crate) fn lost_usage(one: Usage, n: u32) -> Usage {
    let times = |v: i32| v.saturating_mul(i32::try_from(n).unwrap_or(i32::MAX));
    Usage {
        prompt_tokens: times(one.prompt_tokens),
        total_tokens: times(one.total_tokens),
        ..Default::default()
    }
}

/// Tokens to reserve for a request against its key's tpm.
pub(crate) fn reserve(
    model: &Model,
    messages: &[Message],
    config: Option<&GenerationConfig>,
) -> u64 {
    let output = config
        .and_then(|c| c.max_tokens)
        .map_or(model.default_output_tokens, |n| n.max(1).unsigned_abs());
    estimate_tokens(messages.iter().map(extras::size), output)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> Message {
        Message::text(role, content)
    }

    #[test]
    fn estimates_count_about_four_bytes_a_token() {
        let u = estimate_usage(&[msg("user", "12345678")], 9);
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (2 + 4, 3, 9)
        );
    }
}
