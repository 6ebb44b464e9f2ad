use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use ring::signature;
use serde_json::{json, Value};

use super::*;

#[path = "../../../tests/it/common/signer.rs"]
pub(crate) mod signer;
use signer::Signer;

fn set(jwks: &[Value]) -> KeySet {
    KeySet::parse(json!({ "keys": jwks }).to_string().as_bytes()).unwrap()
}

fn claims() -> Value {
    json!({"iss": "https://id.test", "aud": "aigw", "sub": "alice", "exp": 4_000_000_000u64})
}

#[test]
fn every_algorithm_taken_verifies_with_its_key_and_a_changed_claim_does_not() {
    let rsa = Signer::rsa();
    let cases = [
        (Signer::es256(), "ES256"),
        (
            Signer::ec(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, true),
            "ES384",
        ),
        (Signer::ed25519(), "EdDSA"),
    ];
    let mut signers: Vec<(&Signer, &str)> = cases.iter().map(|(s, a)| (s, *a)).collect();
    for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] {
        signers.push((&rsa, alg));
    }
    for (signer, alg) in signers {
        let keys = set(&[signer.jwk("k1")]);
        let token = signer.token(json!({"alg": alg, "kid": "k1", "typ": "JWT"}), claims());
        Token::read(&token)
            .unwrap()
            .verify(&keys)
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        // The same signature over other claims.
        let (head, rest) = token.split_once('.').unwrap();
        let sig = rest.rsplit_once('.').unwrap().1;
        let mut other = claims();
        other["sub"] = json!("mallory");
        let forged = format!("{head}.{}.{sig}", B64.encode(other.to_string()));
        assert_eq!(
            Token::read(&forged).unwrap().verify(&keys),
            Err("the token's signature does not verify"),
            "{alg}"
        );
    }
}

#[test]
fn a_token_signed_by_another_key_or_naming_none_the_set_has_is_refused() {
    let (published, other) = (Signer::es256(), Signer::es256());
    let keys = set(&[published.jwk("k1")]);
    let header = json!({"alg": "ES256", "kid": "k1"});
    let wrong = other.token(header, claims());
    assert_eq!(
        Token::read(&wrong).unwrap().verify(&keys),
        Err("the token's signature does not verify")
    );
    let unknown = published.token(json!({"alg": "ES256", "kid": "k2"}), claims());
    let err = Token::read(&unknown).unwrap().verify(&keys).unwrap_err();
    assert!(err.contains("unknown 'kid'"), "{err}");
    assert!(!keys.knows(Some("k2")) && keys.knows(Some("k1")) && keys.knows(None));
    // No kid: every key that fits is tried.
    let both = set(&[other.jwk("a"), published.jwk("b")]);
    let no_kid = published.token(json!({"alg": "ES256"}), claims());
    Token::read(&no_kid).unwrap().verify(&both).unwrap();
}

#[test]
fn an_algorithm_that_does_not_fit_the_key_is_refused() {
    let (rsa, ec) = (Signer::rsa(), Signer::es256());
    // The set says the RSA key is for RS256: a PS256 signature by it is not taken.
    let mut jwk = rsa.jwk("r");
    jwk["alg"] = json!("RS256");
    let keys = set(&[jwk, ec.jwk("e")]);
    let pss = rsa.token(json!({"alg": "PS256", "kid": "r"}), claims());
    assert_eq!(
        Token::read(&pss).unwrap().verify(&keys),
        Err("the token's algorithm does not match its key")
    );
    // An EC key named for an RSA signature.
    let mixed = rsa.token(json!({"alg": "RS256", "kid": "e"}), claims());
    assert_eq!(
        Token::read(&mixed).unwrap().verify(&keys),
        Err("the token's algorithm does not match its key")
    );
}

#[test]
fn tokens_that_could_never_verify_are_refused_before_any_key_is_looked_at() {
    let ec = Signer::es256();
    let body = B64.encode(claims().to_string());
    let head = |h: Value| B64.encode(h.to_string());
    let cases = [
        (
            format!("{}.{body}.", head(json!({"alg": "none"}))),
            "alg 'none'",
        ),
        (
            format!("{}.{body}.", head(json!({"alg": "NONE"}))),
            "alg 'none'",
        ),
        (
            format!("{}.{body}.c2ln", head(json!({"alg": "HS256", "kid": "k1"}))),
            "HMAC",
        ),
        (
            format!("{}.{body}.c2ln", head(json!({"alg": "ES512"}))),
            "not one the gateway takes",
        ),
        (
            format!("{}.{body}.c2ln", head(json!({"typ": "JWT"}))),
            "names no algorithm",
        ),
        (
            format!(
                "{}.{body}.c2ln",
                head(json!({"alg": "ES256", "crit": ["exp"]}))
            ),
            "critical",
        ),
        (
            format!("{}.{body}.c2ln", head(json!({"alg": "ES256", "kid": 7}))),
            "'kid' is not a string",
        ),
        (
            format!("{}.{body}", head(json!({"alg": "ES256"}))),
            "not a signed JWT",
        ),
        (
            format!("{}.{body}.a.b", head(json!({"alg": "ES256"}))),
            "not a signed JWT",
        ),
        (format!("{}.{body}.c2ln", "e30!"), "not base64url"),
        (
            format!(
                "{}.{}.c2ln",
                head(json!({"alg": "ES256"})),
                B64.encode("[1]")
            ),
            "not a JSON object",
        ),
        (
            ec.token(json!({"alg": "ES256", "pad": "x".repeat(9000)}), claims()),
            "too long",
        ),
    ];
    for (token, says) in cases {
        let err = Token::read(&token).unwrap_err();
        assert!(err.contains(says), "{err} should say {says}");
    }
}

#[test]
fn a_key_set_keeps_the_signing_keys_it_can_use() {
    let ec = Signer::es256();
    let mut short = ec.jwk("short");
    short["x"] = json!(B64.encode([1u8; 31]));
    let mut encryption = ec.jwk("enc");
    encryption["use"] = json!("enc");
    let mut oaep = Signer::rsa().jwk("oaep");
    oaep["alg"] = json!("RSA-OAEP");
    let doc = json!({"keys": [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        {"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"},
        short, encryption, oaep, ec.jwk("good"),
    ]});
    let keys = KeySet::parse(doc.to_string().as_bytes()).unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys.knows(Some("good")) && !keys.knows(Some("hmac")));
    for body in [&b"[]"[..], b"{}", b"{\"keys\": []}", b"nope"] {
        assert!(KeySet::parse(body).is_err());
    }
}

#[test]
fn the_claims_are_checked_with_the_leeway() {
    let aud = vec!["aigw".to_owned(), "other".to_owned()];
    let check =
        |c: Value, now| check_claims(c.as_object().unwrap(), "https://id.test", &aud, now, 60);
    let base = |f: &dyn Fn(&mut Value)| {
        let mut c = json!({"iss": "https://id.test", "aud": "aigw", "exp": 1000});
        f(&mut c);
        c
    };
    assert_eq!(check(base(&|_| {}), 1000), Ok(1000)); // within the leeway
    assert_eq!(check(base(&|_| {}), 1060), Err("the token has expired"));
    assert_eq!(
        check(
            base(&|c| {
                c["nbf"] = json!(1100);
            }),
            1000
        ),
        Err("the token is not valid yet ('nbf')")
    );
    assert_eq!(
        check(
            base(&|c| {
                c["nbf"] = json!(1050);
            }),
            1000
        ),
        Ok(1000)
    );
    assert_eq!(
        check(
            base(&|c| {
                c["aud"] = json!(["x", "other"]);
            }),
            900
        ),
        Ok(1000)
    );
    let not_ours = Err("the token is not meant for this gateway (audience)");
    assert_eq!(
        check(
            base(&|c| {
                c["aud"] = json!("x");
            }),
            900
        ),
        not_ours
    );
    assert_eq!(
        check(
            base(&|c| {
                c["aud"] = json!([]);
            }),
            900
        ),
        not_ours
    );
    assert_eq!(
        check(
            base(&|c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
            900
        ),
        not_ours
    );
    assert_eq!(
        check(
            base(&|c| {
                c["iss"] = json!("https://evil.test");
            }),
            900
        ),
        Err("the token's issuer is not trusted")
    );
    assert_eq!(
        check(
            base(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            900
        ),
        Err("the token has no expiry ('exp')")
    );
    assert_eq!(
        check(
            base(&|c| {
                c["exp"] = json!("soon");
            }),
            900
        ),
        Err("the token's 'exp' is not a time")
    );
    assert_eq!(
        check(
            base(&|c| {
                c["exp"] = json!(-5);
            }),
            900
        ),
        Err("the token's 'exp' is not a time")
    );
}

#[test]
fn a_claim_names_a_caller_when_it_is_a_short_printable_string_or_a_whole_number() {
    let c = json!({"a": "alice@example.com", "n": 42, "f": 1.5, "e": "", "ctl": "a\nb",
                   "long": "x".repeat(257), "o": {}});
    let c = c.as_object().unwrap();
    assert_eq!(claim_name(c, "a").as_deref(), Some("alice@example.com"));
    assert_eq!(claim_name(c, "n").as_deref(), Some("42"));
    for name in ["f", "e", "ctl", "long", "o", "missing"] {
        assert_eq!(claim_name(c, name), None, "{name}");
    }
}
