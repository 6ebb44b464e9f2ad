//! Server TLS with rustls: certificate chain and key from PEM files, ALPN h2 and http/1.1, optional client-certificate
//! verification (mutual TLS). The certificate and key are read again on a reload (`Certificate::reload`), so a
//! renewed certificate takes effect for new connections without a restart; the client CA is read at start only.

use std::sync::{Arc, RwLock};

use rustls::{
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier},
    sign::CertifiedKey,
    RootCertStore, ServerConfig,
};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::{ConfigError, TlsConfig};

fn fail(field: &str, path: &std::path::Path, e: &dyn std::fmt::Display) -> ConfigError {
    // The message names the file, never its content.
    ConfigError(format!("server.tls.{field}: {}: {e}", path.display()))
}

/// The chain and key in the files `cfg` names, checked to belong together.
fn load(cfg: &TlsConfig) -> Result<Arc<CertifiedKey>, ConfigError> {
    let certs = CertificateDer::pem_file_iter(&cfg.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| fail("cert", &cfg.cert, &e))?;
    if certs.is_empty() {
        return Err(fail("cert", &cfg.cert, &"no certificate found"));
    }
    let key = PrivateKeyDer::from_pem_file(&cfg.key).map_err(|e| fail("key", &cfg.key, &e))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified =
        CertifiedKey::from_der(certs, key, &provider).map_err(|e| fail("key", &cfg.key, &e))?;
    Ok(Arc::new(certified))
}

/// The server's certificate, swappable while connections are accepted.
#[derive(Debug)]
pub(crate) struct Certificate {
    cfg: TlsConfig,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certificate {
    /// Reads the files again; on an error the current certificate stays.
    pub(crate) fn reload(&self) -> Result<(), ConfigError> {
        let next = load(&self.cfg)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

pub(crate) fn acceptor(cfg: &TlsConfig) -> Result<(TlsAcceptor, Arc<Certificate>), ConfigError> {
    crate::upstream::http::install_crypto_provider();
    let certificate = Arc::new(Certificate {
        cfg: cfg.clone(),
        current: RwLock::new(load(cfg)?),
    });
    let builder = ServerConfig::builder();
    let builder = match &cfg.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in
                CertificateDer::pem_file_iter(path).map_err(|e| fail("client_ca", path, &e))?
            {
                let cert = cert.map_err(|e| fail("client_ca", path, &e))?;
                roots.add(cert).map_err(|e| fail("client_ca", path, &e))?;
            }
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| fail("client_ca", path, &e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(certificate.clone());
    // h2 for gRPC; HTTP/1.1 for REST and gRPC-Web clients that do not speak h2.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((TlsAcceptor::from(Arc::new(config)), certificate))
}
