//! Answer text as upstreams actually send it: JSON strings that may carry lone UTF-16 surrogates.
//!
//! Upstreams written in JavaScript slice strings by UTF-16 unit, so an emoji can leave as `"\ud83d"` at the end
//! of one SSE event and `"\ude00"` at the start of the next. Strict JSON parsers refuse a lone surrogate; a
//! gateway that does fails the call (and used to blame the route). Instead a text field is read as WTF-8 bytes
//! ([`RawText`]: serde_json hands lone surrogates to byte visitors in that form) and decoded by a
//! [`Utf16Joiner`], which keeps a trailing high surrogate for the next piece of text, pairs it with a leading
//! low one, and turns a surrogate that never gets its partner into U+FFFD.

use serde::{de, Deserialize, Deserializer};

/// The bytes of one JSON string, WTF-8 encoded: valid UTF-8 except that lone surrogates may appear as the
/// 3-byte sequences `ED A0..BF 80..BF`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct RawText(pub Vec<u8>);

impl<'de> Deserialize<'de> for RawText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = RawText;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            // A string already decoded (from a `serde_json::Value`, say); owned strings come here too.
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawText, E> {
                Ok(RawText(v.as_bytes().to_vec()))
            }
            // serde_json's reader, raw or unescaped; owned byte buffers come here too.
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<RawText, E> {
                Ok(RawText(v.to_vec()))
            }
        }
        d.deserialize_bytes(Visitor)
    }
}

impl RawText {
    /// The text on its own (a whole answer): every lone surrogate becomes U+FFFD.
    pub(crate) fn into_lossy(self) -> String {
        let mut joiner = Utf16Joiner::default();
        let mut text = joiner.text(self.0);
        if let Some(c) = joiner.finish() {
            text.push(c);
        }
        text
    }
}

const REPLACEMENT: char = '\u{FFFD}';

/// Decodes consecutive pieces of one text, joining surrogate pairs split between pieces.
#[derive(Debug, Default)]
pub(crate) struct Utf16Joiner {
    /// A high surrogate that ended the last piece, waiting for its low half.
    high: Option<u16>,
}

impl Utf16Joiner {
    /// The next piece as text. A trailing high surrogate is held back for the next piece, so the result may be
    /// empty.
    pub(crate) fn text(&mut self, bytes: Vec<u8>) -> String {
        // The usual case: plain UTF-8 and nothing held back, no copy.
        let bytes = match (self.high, String::from_utf8(bytes)) {
            (None, Ok(text)) => return text,
            (_, Ok(text)) => text.into_bytes(),
            (_, Err(e)) => e.into_bytes(),
        };
        let mut out = String::with_capacity(bytes.len() + 3);
        let mut rest = bytes.as_slice();
        while !rest.is_empty() {
            let (valid, after) = match std::str::from_utf8(rest) {
                Ok(all) => (all, &[][..]),
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // `valid` is valid UTF-8 by construction; an empty fallback never happens.
                    (std::str::from_utf8(valid).unwrap_or_default(), after)
                }
            };
            if !valid.is_empty() {
                self.flush(&mut out);
                out.push_str(valid);
            }
            rest = match surrogate(after) {
                Some(unit) => {
                    self.unit(unit, &mut out);
                    &after[3..]
                }
                None if after.is_empty() => after,
                None => {
                    // Not WTF-8 either (serde_json never makes this): one replacement per bad sequence.
                    self.flush(&mut out);
                    out.push(REPLACEMENT);
                    let bad = std::str::from_utf8(after)
                        .err()
                        .and_then(|e| e.error_len())
                        .unwrap_or(after.len());
                    &after[bad.max(1)..]
                }
            };
        }
        out
    }

    /// The text has ended: a high surrogate still held back becomes U+FFFD.
    pub(crate) fn finish(&mut self) -> Option<char> {
        self.high.take().map(|_| REPLACEMENT)
    }

    fn flush(&mut self, out: &mut String) {
        if self.high.take().is_some() {
            out.push(REPLACEMENT);
        }
    }

    fn unit(&mut self, unit: u16, out: &mut String) {
        if (0xD800..0xDC00).contains(&unit) {
            self.flush(out);
            self.high = Some(unit);
            return;
        }
        match self.high.take() {
            Some(high) => {
                let c = 0x10000 + ((u32::from(high) - 0xD800) << 10) + (u32::from(unit) - 0xDC00);
                out.push(char::from_u32(c).unwrap_or(REPLACEMENT));
            }
            None => out.push(REPLACEMENT),
        }
    }
}

/// The surrogate code unit WTF-8 encodes at the start of `bytes`, if it does.
fn surrogate(bytes: &[u8]) -> Option<u16> {
    match bytes {
        [0xED, b1 @ 0xA0..=0xBF, b2 @ 0x80..=0xBF, ..] => {
            Some(0xD000 | (u16::from(b1 & 0x3F) << 6) | u16::from(b2 & 0x3F))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Holder {
        text: Option<RawText>,
    }

    fn raw(json_string: &str) -> Vec<u8> {
        let holder: Holder =
            serde_json::from_str(&format!(r#"{{"text": {json_string}}}"#)).unwrap();
        holder.text.unwrap().0
    }

    fn pieces(parts: &[&str]) -> String {
        let mut joiner = Utf16Joiner::default();
        let mut out: String = parts.iter().map(|p| joiner.text(raw(p))).collect();
        out.extend(joiner.finish());
        out
    }

    #[test]
    fn surrogates_split_across_pieces_are_joined() {
        let table: &[(&[&str], &str)] = &[
            (&[r#""plain""#], "plain"),
            (&[r#""a\ud83d""#, r#""\ude00b""#], "a😀b"),
            (&[r#""\ud83d""#, r#""\ude00""#], "😀"),
            (&[r#""\ud83d\ude00""#], "😀"),
            (&[r#""😀 é""#], "😀 é"),
            // A high surrogate that never gets its partner: at the end, or before other text.
            (&[r#""x\ud83d""#], "x\u{FFFD}"),
            (&[r#""\ud83d""#, r#""y""#], "\u{FFFD}y"),
            (&[r#""\ud83d\ud83d\ude00""#], "\u{FFFD}😀"),
            // A low surrogate with nothing before it.
            (&[r#""\ude00z""#], "\u{FFFD}z"),
            (&[r#""\u0041\ud83d""#, r#""""#, r#""\ude00""#], "A😀"),
            // The ranges' ends: the first and last high and low surrogates.
            (&[r#""\ud800""#, r#""\udc00""#], "\u{10000}"),
            (&[r#""\udbff""#, r#""\udfff""#], "\u{10FFFF}"),
            (&[r#""\udc00\udfff""#], "\u{FFFD}\u{FFFD}"),
            (&[r#""\ud7ff\ue000""#], "\u{D7FF}\u{E000}"),
        ];
        for (parts, want) in table {
            assert_eq!(pieces(parts), *want, "{parts:?}");
        }
    }

    #[test]
    fn a_held_back_high_surrogate_leaves_the_piece_empty() {
        let mut joiner = Utf16Joiner::default();
        assert_eq!(joiner.text(raw(r#""\ud83d""#)), "");
        assert_eq!(joiner.text(raw(r#""\ude00!""#)), "😀!");
        assert_eq!(joiner.finish(), None);
        assert_eq!(RawText(raw(r#""ok\udbff""#)).into_lossy(), "ok\u{FFFD}");
    }

    /// Text read from a parsed JSON value (borrowed or owned) is the same text; anything but a string is
    /// refused by name.
    #[test]
    fn text_from_a_json_value_and_a_wrong_type() {
        let value = serde_json::json!("héllo 😀");
        assert_eq!(
            RawText::deserialize(&value).unwrap().into_lossy(),
            "héllo 😀"
        );
        let owned: RawText = serde_json::from_value(value).unwrap();
        assert_eq!(owned.into_lossy(), "héllo 😀");
        let err = serde_json::from_value::<RawText>(serde_json::json!(5)).unwrap_err();
        assert!(err.to_string().contains("expected a string"), "{err}");
    }

    #[test]
    fn bytes_that_are_not_wtf8_become_replacements() {
        let mut joiner = Utf16Joiner::default();
        assert_eq!(joiner.text(vec![b'a', 0xFF, b'b']), "a\u{FFFD}b");
    }
}
