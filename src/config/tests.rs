//! Config parsing and validation: every error names its field.
use super::*;
use sha2::{Digest, Sha256};

pub(super) const BASE: &str = r#"
    [server]
    listen = "127.0.0.1:0"
    [[keys]]
    name = "dev"
    sha256 = "HASH"
    [[upstreams]]
    name = "mock"
    kind = "mock"
    [[models]]
    name = "m"
    aliases = ["m-alias"]
    max_output_tokens = 100
    routes = [{ upstream = "mock", model = "m-up" }]
"#;

pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
    let text = text.replace("HASH", &hash_key("secret"));
    Config::parse(&text, |var| (var == "SET").then(|| "value".to_owned()))
}

#[test]
fn the_base_config_is_valid() {
    let cfg = parse(BASE).unwrap();
    assert_eq!(cfg.models[0].routes[0].model, "m-up");
    assert_eq!(
        cfg.keys[0].sha256,
        <[u8; 32]>::from(Sha256::digest(b"secret"))
    );
    assert_eq!(cfg.shutdown_grace, Duration::from_secs(30));
}

#[test]
fn errors_name_the_field() {
    let cases = [
        (
            BASE.replace("kind = \"mock\"", "kind = \"mock\"\nsurprise = 1"),
            "surprise",
        ),
        (
            BASE.replace("upstream = \"mock\"", "upstream = \"nope\""),
            "models[0].routes[0].upstream",
        ),
        (
            BASE.replace("max_output_tokens = 100", "max_output_tokens = 0"),
            "models[0].max_output_tokens",
        ),
        (
            BASE.replace("aliases = [\"m-alias\"]", "aliases = [\"m\"]"),
            "models[0].aliases[0]",
        ),
        (
            BASE.replace("sha256 = \"HASH\"", "sha256 = \"abc\""),
            "keys[0].sha256",
        ),
        (
            BASE.replace("sha256 = \"HASH\"", "env = \"UNSET\""),
            "keys[0].env",
        ),
        (
            BASE.replace("kind = \"mock\"", "kind = \"openai\""),
            "upstreams[0].base_url",
        ),
        (
            BASE.replace(
                "kind = \"mock\"",
                "kind = \"openai\"\nbase_url = \"ftp://x\"",
            ),
            "upstreams[0].base_url",
        ),
        (
            BASE.replace(
                "kind = \"mock\"",
                "kind = \"mock\"\napi_key_env = \"UNSET\"",
            ),
            "upstreams[0].api_key_env",
        ),
        (
            BASE.replace(
                "listen = \"127.0.0.1:0\"",
                "listen = \"127.0.0.1:0\"\nshutdown_grace = \"soon\"",
            ),
            "soon",
        ),
        (
            format!("{BASE}\n[[keys]]\nname = \"x\"\nenv = \"SET\"\nmodels = [\"zz\"]"),
            "keys[1].models[0]",
        ),
    ];
    for (text, field) in cases {
        let e = parse(&text).expect_err(field).to_string();
        assert!(e.contains(field), "error {e:?} should name {field}");
    }
}

#[test]
fn traffic_settings_are_checked_and_merged() {
    let model_policy = |p: &str| format!("{BASE}\n[models.policy]\n{p}");
    let cases = [
        (
            format!("{BASE}\n[model_defaults]\nretry = {{ attempts = 0 }}"),
            "model_defaults.retry.attempts",
        ),
        (
            model_policy("breaker = { failure_ratio = 1.5 }"),
            "models[0].policy.breaker.failure_ratio",
        ),
        (
            model_policy("retry = { backoff = \"9s\", max_backoff = \"1s\" }"),
            "models[0].policy.retry.backoff",
        ),
        (
            model_policy("stream = { idle = \"0s\" }"),
            "models[0].policy.stream",
        ),
        (model_policy("balance = \"random\""), "balance"),
        (
            BASE.replace(
                "sha256 = \"HASH\"",
                "sha256 = \"HASH\"\nlimits = { rpm = 0 }",
            ),
            "keys[0].limits",
        ),
        (
            BASE.replace("model = \"m-up\" }", "model = \"m-up\", weight = 0 }"),
            "models[0].routes[0].weight",
        ),
        (
            format!("[limits]\nmax_in_flight = 0\n{BASE}"),
            "limits.max_in_flight",
        ),
    ];
    for (text, field) in cases {
        let e = parse(&text).expect_err(field).to_string();
        assert!(e.contains(field), "error {e:?} should name {field}");
    }
    // A model's policy overrides [model_defaults] field by field; keys fall back to [limits.default].
    let text = format!(
        "[limits.default]\nrpm = 5\n[model_defaults]\nretry = {{ attempts = 7, backoff = \"1s\" }}\n{}",
        model_policy("retry = { attempts = 2 }")
    );
    let cfg = parse(&text).unwrap();
    let retry = cfg.models[0].policy.retry;
    assert_eq!((retry.attempts, retry.backoff), (2, Duration::from_secs(1)));
    let built_in_concurrency = Some(64);
    assert_eq!(
        cfg.keys[0].limits,
        KeyLimits {
            rpm: Some(5),
            tpm: None,
            concurrency: built_in_concurrency,
            daily_budget_usd: None,
            monthly_budget_usd: None,
        }
    );
    assert_eq!(
        cfg.models[0].default_output_tokens, 100,
        "the budget is capped by max_output_tokens"
    );
}

#[test]
fn secrets_come_from_the_environment_and_stay_out_of_debug() {
    let text = BASE.replace("sha256 = \"HASH\"", "env = \"SET\"").replace(
        "kind = \"mock\"",
        "kind = \"openai\"\nbase_url = \"https://example.test/v1/\"\napi_key_env = \"SET\"",
    );
    let cfg = parse(&text).unwrap();
    assert_eq!(
        cfg.keys[0].sha256,
        <[u8; 32]>::from(Sha256::digest(b"value"))
    );
    assert_eq!(cfg.upstreams[0].api_key.as_deref(), Some("value"));
    assert_eq!(cfg.upstreams[0].base_url, "https://example.test/v1");
    let shown = format!("{cfg:?}");
    assert!(!shown.contains("value"), "{shown}");
}

#[test]
fn the_shipped_config_is_valid() {
    let text = include_str!("../../config.toml");
    let cfg = Config::parse(text, |_| None).unwrap();
    assert!(cfg.models.iter().any(|m| m.name == "gpt-4.1"));
    assert!(cfg.tls.is_none());
    // Every chat and embedding model it lists has a price (the dashboard shows cost), and the admin API works
    // out of the box with the documented development key.
    for m in &cfg.models {
        assert!(m.price.input > 0.0, "{} has no price", m.name);
    }
    use sha2::Digest;
    let dev: [u8; 32] = sha2::Sha256::digest(b"aigw-dev-admin-key").into();
    assert_eq!(cfg.admin_key, Some(dev));
}

#[test]
fn the_development_admin_key_is_refused_off_loopback() {
    let text = include_str!("../../config.toml")
        .replace(r#"listen = "127.0.0.1:9090""#, r#"listen = "0.0.0.0:9090""#);
    let err = Config::parse(&text, |_| None).unwrap_err().to_string();
    assert!(
        err.contains("development admin key") && err.contains("loopback"),
        "{err}"
    );
    // Another key is fine there; two ways of naming one are not.
    let own = text.replace(
        "ea52c0fdc3e33b8823b7ea8cbe12ab0864c7043f2456fcb3973a58a595836748",
        &"ab".repeat(32),
    );
    assert!(Config::parse(&own, |_| None).is_ok());
    let both = own.replace("\nkey_sha256 =", "\nkey_env = \"X\"\nkey_sha256 =");
    assert!(Config::parse(&both, |_| Some("0123456789abcdef".into()))
        .unwrap_err()
        .to_string()
        .contains("not both"));
}

#[test]
fn the_container_config_is_valid() {
    let text = include_str!("../../deploy/container.toml");
    let cfg = Config::parse(text, |_| Some("a-secret-from-the-environment".to_owned())).unwrap();
    assert_eq!(cfg.listen.port(), 443);
    assert!(cfg.tls.is_some());
    assert_eq!(cfg.log_format, LogFormat::Json);
    assert_eq!(cfg.admin_listen.port(), 9090);
    assert!(cfg.admin_key.is_some());
}

#[test]
fn the_response_cache_is_off_unless_a_model_turns_it_on() {
    let cfg = parse(BASE).unwrap();
    assert_eq!(cfg.models[0].cache, None);
    assert_eq!(cfg.cache.max_bytes, 64 * 1024 * 1024);
    assert_eq!(cfg.cache.max_entries, 10_000);

    let on = BASE.replace(
        "routes = [",
        "cache = { ttl = \"5m\", hits = \"cost\" }\n    routes = [",
    );
    let on = format!("{on}\n[cache]\nmax_bytes = 1048576\nmax_entries = 50\n");
    let cfg = parse(&on).unwrap();
    assert_eq!(
        cfg.models[0].cache,
        Some(ModelCache {
            ttl: Duration::from_secs(300),
            any_temperature: false,
            charge_hits: true,
            per_key: true,
        })
    );
    let shared = parse(&on.replace("hits = \"cost\"", "scope = \"all\"")).unwrap();
    assert!(!shared.models[0].cache.as_ref().unwrap().per_key);
    assert!(parse(&on.replace("hits = \"cost\"", "scope = \"team\"")).is_err());
    assert_eq!(
        (cfg.cache.max_bytes, cfg.cache.max_entries),
        (1_048_576, 50)
    );

    let defaults = BASE.replace("routes = [", "cache = {}\n    routes = [");
    let cache = parse(&defaults).unwrap().models[0].cache.clone().unwrap();
    assert_eq!(cache.ttl, Duration::from_secs(600));
    assert!(!cache.charge_hits && !cache.any_temperature);

    for (bad, field) in [
        ("cache = { ttl = \"0s\" }", "models[0].cache.ttl"),
        ("cache = { hits = \"sometimes\" }", "sometimes"),
        ("cache = { size = 5 }", "size"),
    ] {
        let text = BASE.replace("routes = [", &format!("{bad}\n    routes = ["));
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains(field), "{bad}: {e}");
    }
    let e = parse(&format!("{BASE}\n[cache]\nmax_entries = 0\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("cache.max_entries"), "{e}");
}

#[test]
fn shared_state_takes_one_redis_url_and_never_prints_it() {
    assert!(parse(BASE).unwrap().shared.is_none());
    let text = format!(
        "{BASE}\n[shared]\nredis_url = \"redis://:pw@10.0.0.5:6379/2\"\non_failure = \"closed\"\n"
    );
    let shared = parse(&text).unwrap().shared.unwrap();
    assert!(shared.redis == RedisTarget::Node("redis://:pw@10.0.0.5:6379/2".into()));
    assert_eq!(shared.on_failure, OnFailure::Closed);
    assert_eq!(shared.timeout, Duration::from_millis(100));
    assert_eq!(shared.prefix, "aigw");
    assert!(
        !format!("{shared:?}").contains("pw"),
        "the URL may carry a password"
    );

    let from_env = format!("{BASE}\n[shared]\nredis_url_env = \"SET\"\n");
    let e = parse(&from_env).unwrap_err().to_string();
    assert!(e.contains("redis://"), "{e}"); // the variable holds "value", not a URL
    for (bad, field) in [
        ("redis_url_env = \"UNSET\"", "UNSET"),
        (
            "redis_url = \"redis://a\"\nredis_url_env = \"SET\"",
            "exactly one",
        ),
        ("", "exactly one"),
        ("redis_url = \"http://a\"", "shared.redis_url"),
        (
            "redis_url = \"redis://a\"\ntimeout = \"0s\"",
            "shared.timeout",
        ),
        ("redis_url = \"redis://a\"\non_failure = \"maybe\"", "maybe"),
        ("cluster_nodes = [\"redis://a\"]\nredis_url = \"redis://a\"", "exactly one"),
        ("cluster_nodes = []", "must start with redis://"),
        ("sentinels = [\"redis://s\"]", "exactly one"),
        ("sentinels = [\"redis://s\"]\nsentinel_master = \"m\"\nsentinel_password_env = \"UNSET\"", "UNSET"),
    ] {
        let e = parse(&format!("{BASE}\n[shared]\n{bad}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(field), "{bad}: {e}");
    }
}

#[test]
fn secrets_come_from_the_environment_or_a_file_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    std::fs::write(&path, "sk-from-a-file\n").unwrap();
    // Names only this test uses: the environment is shared by the test threads.
    std::env::set_var("AIGW_CFG_TEST_SECRET_FILE", &path);
    assert_eq!(
        super::env_or_file("AIGW_CFG_TEST_SECRET").as_deref(),
        Some("sk-from-a-file")
    );
    std::env::set_var("AIGW_CFG_TEST_OTHER", "from-env");
    std::env::set_var("AIGW_CFG_TEST_OTHER_FILE", &path);
    assert_eq!(
        super::env_or_file("AIGW_CFG_TEST_OTHER").as_deref(),
        Some("from-env"),
        "the variable itself wins"
    );
    assert_eq!(super::env_or_file("AIGW_CFG_TEST_UNSET"), None);
}

#[test]
fn cached_and_written_prompt_tokens_have_their_own_prices() {
    let priced = |price: &str| {
        let text = BASE.replace("routes = [", &format!("price = {price}\n    routes = ["));
        parse(&text).map(|cfg| cfg.models[0].price)
    };
    // 1,000 prompt tokens of which 600 read from the cache and 100 written to it, and 200 output tokens.
    let usage = crate::proto::Usage {
        prompt_tokens: 1000,
        completion_tokens: 200,
        total_tokens: 1200,
        cached_prompt_tokens: 600,
        cache_write_tokens: 100,
        reasoning_tokens: 0,
    };
    let price = priced(
        "{ input_per_million = 3.0, output_per_million = 15.0, cached_input_per_million = 0.3, cache_write_per_million = 3.75 }",
    )
    .unwrap();
    let want = (300.0 * 3.0 + 600.0 * 0.3 + 100.0 * 3.75 + 200.0 * 15.0) / 1e6;
    assert!(
        (price.cost(&usage) - want).abs() < 1e-12,
        "{}",
        price.cost(&usage)
    );
    // Unset, they are the input price: a cached token costs what any prompt token does.
    let price = priced("{ input_per_million = 3.0, output_per_million = 15.0 }").unwrap();
    let want = (1000.0 * 3.0 + 200.0 * 15.0) / 1e6;
    assert!((price.cost(&usage) - want).abs() < 1e-12);
    let e = priced("{ input_per_million = 3.0, cached_input_per_million = -1.0 }")
        .unwrap_err()
        .to_string();
    assert!(e.contains("models[0].price"), "{e}");
}

/// The defaults docs/configuration.md states are the ones the config takes when a field is left out: each row
/// named here has its default cell read from the page and compared with the parsed base config.
#[test]
fn the_documented_defaults_are_the_configs() {
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .unwrap();
    let documented = |key: &str| -> String {
        let row = page
            .lines()
            .find(|l| l.starts_with(&format!("| `{key}` |")))
            .unwrap_or_else(|| panic!("no row for `{key}` in docs/configuration.md"));
        let cell = row.split('|').nth(2).unwrap();
        cell.trim().trim_matches('`').trim_matches('"').to_owned()
    };
    let cfg = parse(BASE).unwrap();
    let policy = &cfg.models[0].policy;
    let upstream = &cfg.upstreams[0];
    let durations = [
        ("server.shutdown_grace", cfg.shutdown_grace),
        (
            "server.first_request_timeout",
            defaults::first_request_timeout(),
        ),
        ("server.idle_timeout", defaults::idle_timeout()),
        ("[[upstreams]] request_timeout", upstream.request_timeout),
        ("[[upstreams]] keepalive", upstream.keepalive),
        ("[[upstreams]] max_retry_after", upstream.max_retry_after),
        ("… stream.keepalive", policy.stream.keepalive),
    ];
    for (key, actual) in durations {
        let doc = humantime::parse_duration(&documented(key)).unwrap();
        assert_eq!(
            doc, actual,
            "`{key}`: the page says {doc:?}, the config {actual:?}"
        );
    }
    let numbers = [
        ("[limits] max_in_flight", u64::from(cfg.max_in_flight)),
        ("[limits] memory_budget_mib", cfg.memory_budget >> 20),
        ("… retry.attempts", u64::from(policy.retry.attempts)),
    ];
    for (key, actual) in numbers {
        let doc: u64 = documented(key).parse().unwrap();
        assert_eq!(doc, actual, "`{key}`");
    }
}

/// Google's upstreams: Gemini's base defaults to Google's; Vertex AI's is its location's endpoint under the
/// project, its tokens from a key file, `GOOGLE_APPLICATION_CREDENTIALS` or the metadata server, never a key.
#[test]
fn google_upstreams_take_their_bases_and_credentials() {
    let upstream = |fields: &str| BASE.replace("kind = \"mock\"", fields);
    let cfg = parse(&upstream("kind = \"gemini\"\napi_key_env = \"SET\"")).unwrap();
    assert_eq!(
        cfg.upstreams[0].base_url,
        "https://generativelanguage.googleapis.com/v1beta"
    );
    assert_eq!(cfg.upstreams[0].google, None);
    let vertex = |fields: &str, env: &[(&str, &str)]| {
        let text =
            upstream(&format!("kind = \"vertex\"\n{fields}")).replace("HASH", &hash_key("s"));
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::parse(&text, move |var| {
            env.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone())
        })
    };
    let cfg = vertex(
        "project = \"p-1\"\nlocation = \"europe-west4\"\ncredentials_file = \"/k.json\"",
        &[],
    )
    .unwrap();
    let u = &cfg.upstreams[0];
    assert_eq!(
        u.base_url,
        "https://europe-west4-aiplatform.googleapis.com/v1/projects/p-1/locations/europe-west4/publishers/google"
    );
    assert_eq!(
        u.google,
        Some(GoogleCredentials::ServiceAccount("/k.json".into()))
    );
    let cfg = vertex(
        "project = \"p\"\nlocation = \"global\"",
        &[("GOOGLE_APPLICATION_CREDENTIALS", "/a.json")],
    )
    .unwrap();
    assert!(cfg.upstreams[0]
        .base_url
        .starts_with("https://aiplatform.googleapis.com/v1/projects/p/locations/global/"));
    assert_eq!(
        cfg.upstreams[0].google,
        Some(GoogleCredentials::ServiceAccount("/a.json".into()))
    );
    let cfg = vertex(
        "project = \"p\"\nlocation = \"l\"",
        &[("GCE_METADATA_HOST", "10.0.0.1:8080")],
    )
    .unwrap();
    assert_eq!(
        cfg.upstreams[0].google,
        Some(GoogleCredentials::Metadata("http://10.0.0.1:8080".into()))
    );
    let cfg = vertex("project = \"p\"\nlocation = \"l\"", &[]).unwrap();
    assert_eq!(
        cfg.upstreams[0].google,
        Some(GoogleCredentials::Metadata(
            "http://metadata.google.internal".into()
        ))
    );
    for (fields, field) in [
        ("location = \"l\"", "upstreams[0].project"),
        (
            "project = \"p/../x\"\nlocation = \"l\"",
            "upstreams[0].project",
        ),
        (
            "project = \"p\"\nlocation = \"l\"\napi_key_env = \"SET\"",
            "upstreams[0].api_key_env",
        ),
    ] {
        let e = vertex(fields, &[("SET", "v")])
            .expect_err(field)
            .to_string();
        assert!(e.contains(field), "{e}");
    }
    let e = parse(&upstream(
        "kind = \"gemini\"\ncredentials_file = \"/k.json\"",
    ))
    .expect_err("a key file is Vertex's")
    .to_string();
    assert!(e.contains("upstreams[0].credentials_file"), "{e}");
}

/// Bedrock's upstreams: a region (its endpoint by default), the access key the config names (both halves, the
/// token only with them) or the standard chain, never an API key.
#[test]
fn bedrock_upstreams_take_a_region_and_aws_credentials() {
    let upstream = |fields: &str| BASE.replace("kind = \"mock\"", fields);
    let parse_with = |text: &str| {
        let text = text.replace("HASH", &hash_key("s"));
        Config::parse(&text, |var| {
            (var == "SET" || var == "SET2").then(|| "value".to_owned())
        })
    };
    let cfg = parse_with(&upstream("kind = \"bedrock\"\nregion = \"eu-west-1\"")).unwrap();
    let u = &cfg.upstreams[0];
    assert_eq!(
        u.base_url,
        "https://bedrock-runtime.eu-west-1.amazonaws.com"
    );
    assert_eq!(
        u.aws,
        Some(AwsConfig {
            region: "eu-west-1".into(),
            keys: None
        })
    );
    let cfg = parse_with(&upstream(
        "kind = \"bedrock\"\nregion = \"r\"\naccess_key_id_env = \"SET\"\nsecret_access_key_env = \"SET2\"",
    ))
    .unwrap();
    let keys = cfg.upstreams[0]
        .aws
        .as_ref()
        .unwrap()
        .keys
        .as_ref()
        .unwrap();
    assert_eq!(
        (keys.access_key_id.as_str(), keys.session_token.as_deref()),
        ("value", None)
    );
    assert!(!format!("{:?}", cfg.upstreams[0].aws).contains("value"));
    for (fields, field) in [
        ("kind = \"bedrock\"", "upstreams[0].region"),
        ("kind = \"bedrock\"\nregion = \"us east\"", "upstreams[0].region"),
        ("kind = \"bedrock\"\nregion = \"r\"\naccess_key_id_env = \"SET\"", "upstreams[0].access_key_id_env"),
        ("kind = \"bedrock\"\nregion = \"r\"\nsession_token_env = \"SET\"", "upstreams[0].access_key_id_env"),
        ("kind = \"bedrock\"\nregion = \"r\"\naccess_key_id_env = \"UNSET\"\nsecret_access_key_env = \"SET\"", "upstreams[0].access_key_id_env"),
        ("kind = \"bedrock\"\nregion = \"r\"\napi_key_env = \"SET\"", "upstreams[0].api_key_env"),
        ("kind = \"openai\"\nbase_url = \"http://x\"\nregion = \"r\"", "upstreams[0].region"),
    ] {
        let e = parse_with(&upstream(fields)).expect_err(field).to_string();
        assert!(e.contains(field), "{fields}: {e}");
    }
    // Its embedding models are Titan's and Cohere's, through InvokeModel.
    let embedding = format!(
        "{}\n[[models]]\nname = \"e\"\nkind = \"embedding\"\nroutes = [{{ upstream = \"mock\", model = \"x\" }}]",
        upstream("kind = \"bedrock\"\nregion = \"r\"")
    );
    assert!(parse_with(&embedding).is_ok());
}
