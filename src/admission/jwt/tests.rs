use serde_json::json;

use super::{verify::verify_tests::signer::Signer, *};
use crate::config::KeyLimits;

fn issuer(max_tenants: usize) -> Issuer {
    Issuer::new(JwtIssuer {
        name: "corp".into(),
        issuer: "https://id.test".into(),
        jwks_url: "https://id.test/jwks".into(),
        audiences: vec!["aigw".into()],
        tenant_claim: "email".into(),
        group: Some("staff".into()),
        group_claim: Some("team".into()),
        models: None,
        limits: KeyLimits {
            rpm: Some(5),
            ..KeyLimits::default()
        },
        model_limits: Default::default(),
        leeway: Duration::from_secs(60),
        refresh: Duration::from_secs(300),
        min_refresh: Duration::from_secs(10),
        max_tenants,
    })
}

fn issuers(one: Issuer, keys: KeySet) -> Issuers {
    *one.keys.write().unwrap() = Arc::new(keys);
    Issuers {
        list: vec![Arc::new(one)],
        verified: Mutex::default(),
    }
}

#[test]
fn a_caller_keeps_one_limiter_and_an_idle_one_makes_room_when_the_issuer_is_full() {
    let issuer = issuer(2);
    let alice = issuer.limiter("corp:alice");
    assert!(Arc::ptr_eq(&alice, &issuer.limiter("corp:alice")));
    assert_eq!(alice.limits().rpm, Some(5));
    let bob = issuer.limiter("corp:bob");
    // Full, and both in use: a third caller's state is not kept.
    let carol = issuer.limiter("corp:carol");
    assert!(!Arc::ptr_eq(&carol, &issuer.limiter("corp:carol")));
    // Bob's call ends: his place goes to the next new caller, and Alice's window stays.
    drop(bob);
    let dan = issuer.limiter("corp:dan");
    assert!(Arc::ptr_eq(&dan, &issuer.limiter("corp:dan")));
    assert!(Arc::ptr_eq(&alice, &issuer.limiter("corp:alice")));
    assert_eq!(issuer.tenants.lock().unwrap().len(), 2);
}

#[test]
fn the_claims_name_the_caller_and_the_group() {
    let key = Signer::es256();
    let all = issuers(
        issuer(10),
        KeySet::parse(json!({"keys": [key.jwk("k")]}).to_string().as_bytes()).unwrap(),
    );
    let token = |extra: serde_json::Value| {
        let mut c = json!({"iss": "https://id.test", "aud": "aigw", "exp": 4_000_000_000u64,
                           "sub": "u-1", "email": "alice@example.com"});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        key.token(json!({"alg": "ES256", "kid": "k"}), c)
    };
    let caller = all.verify(&token(json!({}))).unwrap();
    assert_eq!(caller.name, "corp:alice@example.com");
    assert_eq!(caller.group.as_deref(), Some("staff")); // the issuer's, without the claim
    assert_eq!(
        caller.until,
        UNIX_EPOCH + Duration::from_secs(4_000_000_060)
    );
    let caller = all.verify(&token(json!({"team": "ml"}))).unwrap();
    assert_eq!(caller.group.as_deref(), Some("ml"));
    let refused = all.verify(&token(json!({"team": ["ml"]}))).err().unwrap();
    assert_eq!(
        refused,
        GatewayError::Unauthenticated("the token's group claim is not a name")
    );
}

#[test]
fn remembered_tokens_are_bounded_and_forgotten_when_the_keys_change() {
    let all = issuers(issuer(10), KeySet::default());
    let who = Arc::new(crate::admission::auth::tests::anyone());
    let later = SystemTime::now() + Duration::from_secs(600);
    for i in 0..MAX_VERIFIED + 10 {
        all.remember(digest(&i.to_string()), who.clone(), later);
    }
    assert!(all.verified.lock().unwrap().len() <= MAX_VERIFIED);
    let last = digest(&(MAX_VERIFIED + 9).to_string());
    assert!(all.remembered(&last).is_some());
    // One that has expired is not handed out.
    all.remember(
        digest("old"),
        who,
        SystemTime::now() - Duration::from_secs(1),
    );
    assert!(all.remembered(&digest("old")).is_none());
    all.forget_verified();
    assert!(all.remembered(&last).is_none());
}
