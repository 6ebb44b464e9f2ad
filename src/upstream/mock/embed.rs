//! The mock's embeddings: deterministic unit vectors derived from the text, so the same text always gets the
//! same vector and texts that share words point the same way (each word adds its own pseudo-random direction),
//! enough for a retrieval demo or test to rank documents sensibly without a model.

use crate::upstream::openai::embeddings::{EmbedAsk, Embeddings};

/// OpenAI's text-embedding-3-small size, used when the request names no `dimensions`.
pub(crate) const DEFAULT_DIMENSIONS: u32 = 1536;

pub(crate) fn embed(model: &str, ask: EmbedAsk<'_>) -> Embeddings {
    let dims = ask.dimensions.unwrap_or(DEFAULT_DIMENSIONS) as usize;
    let vectors = ask.input.iter().map(|text| vector(text, dims)).collect();
    let tokens: usize = ask
        .input
        .iter()
        .map(|t| t.split_whitespace().count().max(1))
        .sum();
    let tokens = i32::try_from(tokens).unwrap_or(i32::MAX);
    Embeddings {
        vectors,
        model: model.to_owned(),
        usage: Some(crate::proto::Usage {
            prompt_tokens: tokens,
            total_tokens: tokens,
            ..Default::default()
        }),
    }
}

/// The sum of the text's words' directions (lowercased, punctuation dropped), scaled to length 1. A text with
/// no word gets its own direction from its bytes.
#[allow(
    clippy::cast_possible_truncation,
    reason = "f64 to f32: `as` rounds to the nearest"
)]
pub(crate) fn vector(text: &str, dims: usize) -> Vec<f32> {
    let mut sum = vec![0f64; dims];
    let mut add = |seed: u64| {
        let mut state = seed;
        for x in &mut sum {
            *x += unit_interval(splitmix(&mut state));
        }
    };
    let mut words = 0;
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        add(fnv1a(word.to_lowercase().as_bytes()));
        words += 1;
    }
    if words == 0 {
        add(fnv1a(text.as_bytes()) ^ 0x9e37_79b9_7f4a_7c15);
    }
    let norm = sum.iter().map(|x| x * x).sum::<f64>().sqrt();
    sum.iter()
        .map(|x| if norm > 0.0 { (x / norm) as f32 } else { 0.0 })
        .collect()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A value in -1..1 from 53 random bits.
fn unit_interval(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn same_text_same_unit_vector_and_shared_words_point_together() {
        let a = vector("The gateway streams tokens.", 256);
        assert_eq!(a, vector("the GATEWAY streams tokens", 256));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        let near = vector("the gateway streams answers", 256);
        let far = vector("bananas ripen in July", 256);
        assert!(cosine(&a, &near) > 0.5, "{}", cosine(&a, &near));
        assert!(cosine(&a, &far).abs() < 0.3, "{}", cosine(&a, &far));
        // No words at all still gives a unit vector, its own.
        let dots = vector("...", 8);
        assert!((dots.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
        assert_ne!(dots, vector("!!!", 8));
    }

    #[test]
    fn one_vector_per_input_of_the_asked_size_with_word_counts() {
        let input = ["one two three".to_owned(), "four".to_owned()];
        let e = embed(
            "emb",
            EmbedAsk {
                input: &input,
                dimensions: Some(64),
                user: "",
            },
        );
        assert_eq!(e.vectors.len(), 2);
        assert!(e.vectors.iter().all(|v| v.len() == 64));
        let u = e.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (4, 0, 4)
        );
        let default = embed(
            "emb",
            EmbedAsk {
                input: &input[..1],
                dimensions: None,
                user: "",
            },
        );
        assert_eq!(default.vectors[0].len(), DEFAULT_DIMENSIONS as usize);
    }
}
