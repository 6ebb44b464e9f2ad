//! Server TLS with rustls: certificate chain and key from PEM files, ALPN h2 and http/1.1, optional client-certificate
//! verification (mutual TLS). Built once at start.

use std::sync::Arc;

use rustls::{server::WebPkiClientVerifier, RootCertStore, ServerConfig};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::{ConfigError, TlsConfig};

pub(crate) fn acceptor(cfg: &TlsConfig) -> Result<TlsAcceptor, ConfigError> {
    crate::upstream::http::install_crypto_provider();
    let fail = |field: &str, path: &std::path::Path, e: &dyn std::fmt::Display| {
        ConfigError(format!("server.tls.{field}: {}: {e}", path.display()))
    };
    let certs = CertificateDer::pem_file_iter(&cfg.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| fail("cert", &cfg.cert, &e))?;
    if certs.is_empty() {
        return Err(fail("cert", &cfg.cert, &"no certificate found"));
    }
    // The message names the file, never its content.
    let key = PrivateKeyDer::from_pem_file(&cfg.key).map_err(|e| fail("key", &cfg.key, &e))?;
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
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| fail("cert", &cfg.cert, &e))?;
    // h2 for gRPC; HTTP/1.1 for REST and gRPC-Web clients that do not speak h2.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
