//! `aigw healthcheck`: asks the local gateway's `grpc.health.v1.Health` whether the AIService is serving, for
//! container health checks in images with no shell or curl.
//!
//! It reads the same config as the server. Over TLS it trusts exactly the certificate the server is configured
//! to present (pinned, byte for byte), so it needs no CA bundle and no host name. A server that requires client
//! certificates (mTLS) refuses it; probe such a deployment from the orchestrator instead.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms},
    pki_types::{pem::PemObject, CertificateDer, ServerName, UnixTime},
    ClientConfig, DigitallySignedStruct, SignatureScheme,
};
use tonic::transport::Endpoint;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

use crate::config::Config;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Ok with the serving status when it is SERVING; Err with what went wrong otherwise.
pub async fn check(config: &Config) -> Result<String, String> {
    let addr = local(config.listen);
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(TIMEOUT)
        .timeout(TIMEOUT);
    let channel = match &config.tls {
        None => endpoint.connect().await,
        Some(tls) => {
            let pinned = CertificateDer::from_pem_file(&tls.cert)
                .map_err(|e| format!("server.tls.cert: {}: {e}", tls.cert.display()))?;
            let client = tls_client(pinned);
            let connector = tower::service_fn(move |_| {
                let client = client.clone();
                async move {
                    let tcp = tokio::net::TcpStream::connect(addr).await?;
                    let name = ServerName::IpAddress(addr.ip().into());
                    let tls = tokio_rustls::TlsConnector::from(client)
                        .connect(name, tcp)
                        .await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
                }
            });
            endpoint.connect_with_connector(connector).await
        }
    }
    .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let request = HealthCheckRequest {
        service: "holysheepai.AIService".into(),
    };
    let status = HealthClient::new(channel)
        .check(request)
        .await
        .map_err(|s| format!("health check: {s}"))?;
    match status.into_inner().status() {
        ServingStatus::Serving => Ok("SERVING".into()),
        other => Err(other.as_str_name().into()),
    }
}

/// The listen address as a client reaches it from inside the same host or container.
fn local(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

fn tls_client(pinned: CertificateDer<'static>) -> Arc<ClientConfig> {
    crate::upstream::http::install_crypto_provider();
    let algorithms = rustls::crypto::ring::default_provider().signature_verification_algorithms;
    let mut config = ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            cert: pinned,
            algorithms,
        }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// Accepts one certificate: the server's own. Signatures are still checked, so the peer must hold its key.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "not the configured server certificate".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
