//! Signing keys made at test time (RSA from a fixture: ring makes no RSA keys), their JWKs, and tokens signed
//! with them: shared by the gateway's unit tests (`admission::jwt`) and the integration tests.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use ring::{
    rand::SystemRandom,
    signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair},
};
use serde_json::{json, Value};

/// A signing key and its JWK.
pub enum Signer {
    Ec(EcdsaKeyPair, bool),
    Ed(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

impl Signer {
    pub fn es256() -> Signer {
        Signer::ec(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, false)
    }

    pub fn ec(alg: &'static signature::EcdsaSigningAlgorithm, p384: bool) -> Signer {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        Signer::Ec(
            EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap(),
            p384,
        )
    }

    pub fn ed25519() -> Signer {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Signer::Ed(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap())
    }

    pub fn rsa() -> Signer {
        let pem = include_str!("../fixtures/google-service-account.pem");
        let der: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(der)
            .unwrap();
        Signer::Rsa(RsaKeyPair::from_pkcs8(&der).unwrap())
    }

    /// Its public key as a JWK named `kid`.
    pub fn jwk(&self, kid: &str) -> Value {
        match self {
            Signer::Ec(k, p384) => {
                let point = k.public_key().as_ref();
                let half = (point.len() - 1) / 2;
                json!({"kty": "EC", "crv": if *p384 { "P-384" } else { "P-256" }, "kid": kid,
                       "x": B64.encode(&point[1..=half]), "y": B64.encode(&point[1 + half..])})
            }
            Signer::Ed(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": B64.encode(k.public_key().as_ref())})
            }
            Signer::Rsa(k) => {
                let c = signature::RsaPublicKeyComponents::<Vec<u8>>::from(k.public());
                json!({"kty": "RSA", "kid": kid, "n": B64.encode(&c.n), "e": B64.encode(&c.e)})
            }
        }
    }

    fn sign(&self, alg: &str, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Signer::Ec(k, _) => k.sign(&rng, message).unwrap().as_ref().to_vec(),
            Signer::Ed(k) => k.sign(message).as_ref().to_vec(),
            Signer::Rsa(k) => {
                let padding: &dyn signature::RsaEncoding = match alg {
                    "RS256" => &signature::RSA_PKCS1_SHA256,
                    "RS384" => &signature::RSA_PKCS1_SHA384,
                    "RS512" => &signature::RSA_PKCS1_SHA512,
                    "PS256" => &signature::RSA_PSS_SHA256,
                    "PS384" => &signature::RSA_PSS_SHA384,
                    _ => &signature::RSA_PSS_SHA512,
                };
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(padding, &rng, message, &mut sig).unwrap();
                sig
            }
        }
    }

    /// A compact JWS of `claims` under `header`.
    pub fn token(&self, header: Value, claims: Value) -> String {
        let signed = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let alg = header["alg"].as_str().unwrap_or("");
        format!("{signed}.{}", B64.encode(self.sign(alg, signed.as_bytes())))
    }
}
