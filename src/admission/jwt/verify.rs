//! A JSON Web Token (RFC 7519, compact JWS of RFC 7515) checked against the keys its issuer publishes (a JWK
//! Set, RFC 7517). Only asymmetric signatures are accepted — RS256/384/512, PS256/384/512, ES256, ES384 and
//! EdDSA (Ed25519), verified by ring — and only with a key from the configured key set: `alg: none`, HMAC
//! (which a public key would let anyone forge) and keys carried in the token itself (`jwk`, `jku`, `x5u`) are
//! never trusted. Every refusal is a fixed sentence: nothing of the token is echoed back or logged.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey, VerificationAlgorithm};
use serde_json::{Map, Value};

/// Longer tokens are refused before any decoding (identity providers' run to 1–2 KiB).
pub(crate) const MAX_TOKEN: usize = 8 * 1024;
/// Keys read from one key set at most; the rest are ignored.
const MAX_KEYS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alg {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    EdDsa,
}

impl Alg {
    fn parse(name: &str) -> Option<Alg> {
        Some(match name {
            "RS256" => Alg::Rs256,
            "RS384" => Alg::Rs384,
            "RS512" => Alg::Rs512,
            "PS256" => Alg::Ps256,
            "PS384" => Alg::Ps384,
            "PS512" => Alg::Ps512,
            "ES256" => Alg::Es256,
            "ES384" => Alg::Es384,
            "EdDSA" => Alg::EdDsa,
            _ => return None,
        })
    }
}

/// A public key of the issuer's set.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PublicKey {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed point (0x04 ‖ x ‖ y) on P-256 or P-384.
    Ec {
        p384: bool,
        point: Vec<u8>,
    },
    Ed25519(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Jwk {
    kid: Option<String>,
    /// The one algorithm the set says the key is for, when it says.
    alg: Option<Alg>,
    key: PublicKey,
}

impl Jwk {
    fn read(v: &Value) -> Option<Jwk> {
        let field = |name| v.get(name).and_then(Value::as_str);
        let bytes = |name| URL_SAFE_NO_PAD.decode(field(name)?).ok();
        if field("use").is_some_and(|u| u != "sig") {
            return None;
        }
        let key = match (field("kty")?, field("crv")) {
            ("RSA", _) => PublicKey::Rsa {
                n: bytes("n")?,
                e: bytes("e")?,
            },
            ("EC", Some(crv @ ("P-256" | "P-384"))) => {
                let (x, y) = (bytes("x")?, bytes("y")?);
                let len = if crv == "P-256" { 32 } else { 48 };
                if x.len() != len || y.len() != len {
                    return None;
                }
                PublicKey::Ec {
                    p384: crv == "P-384",
                    point: [&[4u8][..], &x, &y].concat(),
                }
            }
            ("OKP", Some("Ed25519")) => PublicKey::Ed25519(bytes("x")?),
            _ => return None,
        };
        // A key marked for an algorithm this gateway does not take (RSA-OAEP, HS256) is not a signing key here.
        let alg = match field("alg") {
            None => None,
            Some(name) => Some(Alg::parse(name)?),
        };
        Some(Jwk {
            kid: field("kid").map(str::to_owned),
            alg,
            key,
        })
    }

    /// Whether this key can check a signature made with `alg`.
    fn fits(&self, alg: Alg) -> bool {
        let kind = matches!(
            (&self.key, alg),
            (
                PublicKey::Rsa { .. },
                Alg::Rs256 | Alg::Rs384 | Alg::Rs512 | Alg::Ps256 | Alg::Ps384 | Alg::Ps512
            ) | (PublicKey::Ec { p384: false, .. }, Alg::Es256)
                | (PublicKey::Ec { p384: true, .. }, Alg::Es384)
                | (PublicKey::Ed25519(_), Alg::EdDsa)
        );
        kind && self.alg.is_none_or(|a| a == alg)
    }

    fn verifies(&self, alg: Alg, message: &[u8], sig: &[u8]) -> bool {
        let rsa = |params: &'static signature::RsaParameters, n: &[u8], e: &[u8]| {
            RsaPublicKeyComponents { n, e }
                .verify(params, message, sig)
                .is_ok()
        };
        let other = |algorithm: &'static dyn VerificationAlgorithm, key: &[u8]| {
            UnparsedPublicKey::new(algorithm, key)
                .verify(message, sig)
                .is_ok()
        };
        match (&self.key, alg) {
            (PublicKey::Rsa { n, e }, Alg::Rs256) => {
                rsa(&signature::RSA_PKCS1_2048_8192_SHA256, n, e)
            }
            (PublicKey::Rsa { n, e }, Alg::Rs384) => {
                rsa(&signature::RSA_PKCS1_2048_8192_SHA384, n, e)
            }
            (PublicKey::Rsa { n, e }, Alg::Rs512) => {
                rsa(&signature::RSA_PKCS1_2048_8192_SHA512, n, e)
            }
            (PublicKey::Rsa { n, e }, Alg::Ps256) => {
                rsa(&signature::RSA_PSS_2048_8192_SHA256, n, e)
            }
            (PublicKey::Rsa { n, e }, Alg::Ps384) => {
                rsa(&signature::RSA_PSS_2048_8192_SHA384, n, e)
            }
            (PublicKey::Rsa { n, e }, Alg::Ps512) => {
                rsa(&signature::RSA_PSS_2048_8192_SHA512, n, e)
            }
            (PublicKey::Ec { p384: false, point }, Alg::Es256) => {
                other(&signature::ECDSA_P256_SHA256_FIXED, point)
            }
            (PublicKey::Ec { p384: true, point }, Alg::Es384) => {
                other(&signature::ECDSA_P384_SHA384_FIXED, point)
            }
            (PublicKey::Ed25519(x), Alg::EdDsa) => other(&signature::ED25519, x),
            _ => false,
        }
    }
}

/// An issuer's signing keys, as its JWKS document lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeySet {
    keys: Vec<Jwk>,
}

impl KeySet {
    /// The signing keys of a JWKS document (`{"keys": [...]}`); keys of kinds or uses this gateway does not
    /// verify with are left out.
    pub(crate) fn parse(body: &[u8]) -> Result<KeySet, &'static str> {
        let doc: Value = serde_json::from_slice(body).map_err(|_| "not JSON")?;
        let list = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("no 'keys' list")?;
        let keys: Vec<Jwk> = list.iter().filter_map(Jwk::read).take(MAX_KEYS).collect();
        if keys.is_empty() {
            return Err(
                "no signing key this gateway can verify with (RSA, EC P-256/P-384, Ed25519)",
            );
        }
        Ok(KeySet { keys })
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has a key named `kid` (any key, for a token that names none).
    pub(crate) fn knows(&self, kid: Option<&str>) -> bool {
        kid.is_none_or(|kid| self.keys.iter().any(|k| k.kid.as_deref() == Some(kid)))
    }
}

/// A token split and decoded, its signature not yet checked.
#[derive(Debug)]
pub(crate) struct Token<'a> {
    alg: Alg,
    pub(crate) kid: Option<String>,
    pub(crate) claims: Map<String, Value>,
    /// `header.payload`, what the signature covers.
    signed: &'a str,
    signature: Vec<u8>,
}

/// Whether a bearer credential has a JWT's shape (three base64url parts), so it is worth reading as one.
pub(crate) fn looks_like_jwt(credential: &str) -> bool {
    credential.starts_with("eyJ") && credential.split('.').count() == 3
}

impl<'a> Token<'a> {
    /// Splits and decodes `token`; refuses what could never verify (too long, malformed, `alg: none`, HMAC,
    /// an algorithm not taken, critical extensions).
    pub(crate) fn read(token: &'a str) -> Result<Token<'a>, &'static str> {
        if token.len() > MAX_TOKEN {
            return Err("the token is too long (over 8 KiB)");
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("the token is not a signed JWT (header.payload.signature)");
        };
        let json = |part: &str| -> Result<Map<String, Value>, &'static str> {
            let bytes = URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| "the token is not base64url")?;
            match serde_json::from_slice(&bytes) {
                Ok(Value::Object(map)) => Ok(map),
                _ => Err("the token's header or claims are not a JSON object"),
            }
        };
        let head = json(header)?;
        let alg = match head.get("alg").and_then(Value::as_str) {
            Some(a) if a.eq_ignore_ascii_case("none") => {
                return Err("unsigned tokens (alg 'none') are refused")
            }
            Some(a) if a.starts_with("HS") => {
                return Err("HMAC-signed tokens (HS256...) are refused: only the issuer's published keys are trusted")
            }
            Some(a) => Alg::parse(a).ok_or("the token's signing algorithm is not one the gateway takes")?,
            None => return Err("the token's header names no algorithm"),
        };
        if head.contains_key("crit") {
            return Err("the token asks for critical extensions the gateway does not understand");
        }
        let kid = match head.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.clone()),
            Some(_) => return Err("the token's 'kid' is not a string"),
        };
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| "the token is not base64url")?;
        Ok(Token {
            alg,
            kid,
            claims: json(payload)?,
            signed: &token[..header.len() + 1 + payload.len()],
            signature,
        })
    }

    /// The unverified `iss`, to pick the issuer whose keys to check with.
    pub(crate) fn issuer(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }

    /// Checks the signature with the set's key named by `kid` (each key that fits the algorithm, when the token
    /// names none).
    pub(crate) fn verify(&self, keys: &KeySet) -> Result<(), &'static str> {
        let mut candidates = keys
            .keys
            .iter()
            .filter(|k| self.kid.is_none() || k.kid == self.kid)
            .peekable();
        if candidates.peek().is_none() {
            return Err(
                "the token was signed with a key its issuer does not publish (unknown 'kid')",
            );
        }
        let mut fitting = candidates.filter(|k| k.fits(self.alg)).peekable();
        if fitting.peek().is_none() {
            return Err("the token's algorithm does not match its key");
        }
        if fitting.any(|k| k.verifies(self.alg, self.signed.as_bytes(), &self.signature)) {
            Ok(())
        } else {
            Err("the token's signature does not verify")
        }
    }
}

/// The checks on a verified token's claims: issuer, expiry, not-before (with `leeway` seconds of clock skew
/// each way), and audience.
pub(crate) fn check_claims(
    claims: &Map<String, Value>,
    issuer: &str,
    audiences: &[String],
    now: u64,
    leeway: u64,
) -> Result<u64, &'static str> {
    if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err("the token's issuer is not trusted");
    }
    let time = |name| claims.get(name).map(seconds);
    let exp = match time("exp") {
        None => return Err("the token has no expiry ('exp')"),
        Some(None) => return Err("the token's 'exp' is not a time"),
        Some(Some(exp)) => exp,
    };
    if now >= exp.saturating_add(leeway) {
        return Err("the token has expired");
    }
    match time("nbf") {
        Some(None) => return Err("the token's 'nbf' is not a time"),
        Some(Some(nbf)) if nbf > now.saturating_add(leeway) => {
            return Err("the token is not valid yet ('nbf')")
        }
        _ => {}
    }
    let for_us = |aud: &Value| {
        aud.as_str()
            .is_some_and(|a| audiences.iter().any(|x| x == a))
    };
    let aud_ok = match claims.get("aud") {
        Some(Value::Array(list)) => list.iter().any(for_us),
        Some(one) => for_us(one),
        None => false,
    };
    if !aud_ok {
        return Err("the token is not meant for this gateway (audience)");
    }
    Ok(exp)
}

/// A NumericDate (seconds since the epoch, RFC 7519 §2), whole or not; None for anything else.
fn seconds(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        let t = v.as_f64().filter(|t| (0.0..1e15).contains(t))?;
        // In range, so the whole seconds fit.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Some(t.trunc() as u64)
    })
}

/// A claim's value as a name: a string of printable characters (up to 256 bytes), or a whole number.
pub(crate) fn claim_name(claims: &Map<String, Value>, claim: &str) -> Option<String> {
    match claims.get(claim)? {
        Value::String(s) if !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control) => {
            Some(s.clone())
        }
        Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
#[path = "verify_tests.rs"]
pub(crate) mod verify_tests;
