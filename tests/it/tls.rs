//! TLS and mutual TLS with certificates generated at test time.

use crate::common::*;
use aigw::proto::ai_service_client::AiServiceClient;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    SanType,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    client_cert: String,
    client_key: String,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(
        vec!["localhost".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) =
        leaf(vec!["client".into()], ExtendedKeyUsagePurpose::ClientAuth);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("server.crt"), server_cert).unwrap();
    std::fs::write(dir.path().join("server.key"), server_key).unwrap();
    std::fs::write(dir.path().join("ca.crt"), ca.pem()).unwrap();
    Pki {
        dir,
        ca_pem: ca.pem(),
        client_cert,
        client_key,
    }
}

fn tls_config(pki: &Pki, mutual: bool) -> aigw::config::Config {
    let d = pki.dir.path().display();
    let client_ca = if mutual {
        format!("client_ca = \"{d}/ca.crt\"")
    } else {
        String::new()
    };
    let tls =
        format!("[server.tls]\ncert = \"{d}/server.crt\"\nkey = \"{d}/server.key\"\n{client_ca}");
    config(&mock_config_text(&tls, 100_000))
}

async fn connect(
    gw: &Gateway,
    tls: ClientTlsConfig,
) -> Result<AiServiceClient<Channel>, tonic::transport::Error> {
    let channel = Channel::from_shared(format!("https://{}", gw.addr))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(AiServiceClient::new(channel))
}

#[tokio::test]
async fn tls_serves_grpc_over_h2() {
    let pki = pki();
    let gw = Gateway::start(tls_config(&pki, false)).await;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .domain_name("localhost");
    let mut client = connect(&gw, tls).await.unwrap();
    let resp = client
        .generate(authed(generate("big", "hi"), KEY))
        .await
        .unwrap()
        .into_inner();
    assert!(
        resp.content.starts_with("Reply 1 to \"hi\""),
        "{}",
        resp.content
    );

    // Plaintext HTTP/2 against the TLS port does not get through.
    let plain = Channel::from_shared(format!("http://{}", gw.addr))
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = plain {
        // The code is the client library's (the gateway never got a request); that it fails is the point.
        assert!(AiServiceClient::new(channel)
            .generate(authed(generate("big", "hi"), KEY))
            .await
            .is_err());
    }
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate() {
    let pki = pki();
    let gw = Gateway::start(tls_config(&pki, true)).await;
    let base = || {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&pki.ca_pem))
            .domain_name("localhost")
    };

    // Without a certificate the handshake (or the first call) fails.
    let refused = match connect(&gw, base()).await {
        Err(_) => true,
        Ok(mut client) => client
            .generate(authed(generate("big", "hi"), KEY))
            .await
            .is_err(),
    };
    assert!(refused, "a client without a certificate got through");

    let with_cert = base().identity(Identity::from_pem(&pki.client_cert, &pki.client_key));
    let mut client = connect(&gw, with_cert).await.unwrap();
    assert!(client
        .generate(authed(generate("big", "hi"), KEY))
        .await
        .is_ok());
}

#[tokio::test]
async fn a_bad_certificate_path_fails_at_start_naming_the_field() {
    let pki = pki();
    let mut cfg = tls_config(&pki, false);
    cfg.tls.as_mut().unwrap().key = pki.dir.path().join("missing.key");
    let err = aigw::server::Server::bind(&cfg)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("server.tls.key") && err.contains("missing.key"),
        "{err}"
    );
}

#[tokio::test]
async fn healthcheck_trusts_exactly_the_configured_certificate() {
    let served = pki();
    let mut cfg = tls_config(&served, false);
    let gw = Gateway::start(cfg.clone()).await;
    cfg.listen = gw.addr;
    assert_eq!(
        aigw::tools::healthcheck::check(&cfg).await,
        Ok("SERVING".to_owned())
    );

    // Another certificate than the one the server presents: refused.
    let other = pki();
    cfg.tls.as_mut().unwrap().cert = other.dir.path().join("server.crt");
    let err = aigw::tools::healthcheck::check(&cfg).await.unwrap_err();
    assert!(err.contains("connecting"), "{err}");
}

#[tokio::test]
async fn healthcheck_over_plaintext() {
    let mut cfg = config(&crate::common::config_text("http://127.0.0.1:9/v1", ""));
    let gw = Gateway::start(cfg.clone()).await;
    cfg.listen = gw.addr;
    assert_eq!(
        aigw::tools::healthcheck::check(&cfg).await,
        Ok("SERVING".to_owned())
    );
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused() {
    let pki = pki();
    let stranger = self::pki(); // a second CA, and a client certificate it signed
    let gw = Gateway::start(tls_config(&pki, true)).await;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .domain_name("localhost")
        .identity(Identity::from_pem(
            &stranger.client_cert,
            &stranger.client_key,
        ));
    let refused = match connect(&gw, tls).await {
        Err(_) => true,
        Ok(mut client) => client
            .generate(authed(generate("big", "hi"), KEY))
            .await
            .is_err(),
    };
    assert!(refused, "a certificate from another CA got through");
}

#[tokio::test]
async fn http1_over_tls_is_chosen_by_alpn() {
    let pki = pki();
    let gw = Gateway::start(tls_config(&pki, false)).await;
    aigw::upstream::http::install_crypto_provider();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap())
        .http1_only()
        .build()
        .unwrap();
    let resp = client
        .get(format!("https://localhost:{}/v1/models", gw.addr.port()))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body["data"][0]["id"], "big");
}

/// A renewed certificate is served to new connections after a reload, without a restart.
#[tokio::test]
async fn a_reload_serves_the_renewed_certificate() {
    let (first, renewed) = (pki(), pki());
    let d = first.dir.path().display();
    let tls = format!("[server.tls]\ncert = \"{d}/server.crt\"\nkey = \"{d}/server.key\"\n");
    let text = mock_config_text(&tls, 100_000)
        + "\n[admin]\nlisten = \"127.0.0.1:0\"\nkey_env = \"TEST_ADMIN_KEY\"\n";
    let path = first.dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let gw = Gateway::start_from_file(&path).await;
    let trusting = |ca: &str| {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name("localhost")
    };
    let call = |tls: ClientTlsConfig| {
        let gw = &gw;
        async move {
            let mut client = connect(gw, tls).await.ok()?;
            client
                .generate(authed(generate("big", "hi"), KEY))
                .await
                .ok()
        }
    };
    assert!(call(trusting(&first.ca_pem)).await.is_some());

    // The renewed pair (from another CA) replaces the files in place.
    let old_key = std::fs::read(first.dir.path().join("server.key")).unwrap();
    for file in ["server.crt", "server.key"] {
        std::fs::copy(renewed.dir.path().join(file), first.dir.path().join(file)).unwrap();
    }
    let resp = http()
        .post(format!("http://{}/v1/reload", gw.admin))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        200,
        "{}",
        resp.text().await.unwrap()
    );
    assert!(call(trusting(&renewed.ca_pem)).await.is_some());
    assert!(
        call(trusting(&first.ca_pem)).await.is_none(),
        "the old certificate is still served"
    );

    // A key that does not match its certificate is refused, and the renewed pair stays.
    std::fs::write(first.dir.path().join("server.key"), old_key).unwrap();
    let resp = http()
        .post(format!("http://{}/v1/reload", gw.admin))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 422);
    assert!(call(trusting(&renewed.ca_pem)).await.is_some());
}
