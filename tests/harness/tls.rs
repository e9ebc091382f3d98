//! TLS for tests: a self-signed certificate for `localhost`/127.0.0.1 made on
//! the fly (rcgen, aws-lc-rs), written as PEM for `--tls-cert`/`--tls-key`, and
//! a rustls client that trusts exactly that certificate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::server::ServerOptions;

/// A fresh self-signed certificate and key, as PEM files in a temp dir that
/// lives as long as this value (keep it alive while the server may restart).
pub struct TestCert {
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
    pub der: CertificateDer<'static>,
    _dir: tempfile::TempDir,
}

impl TestCert {
    /// Valid for the names `localhost` and `127.0.0.1`.
    pub fn localhost() -> TestCert {
        let ck = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .expect("generate certificate");
        TestCert::of(ck.cert, ck.signing_key)
    }

    /// As [`TestCert::localhost`], valid until midnight (UTC) of `year`-
    /// `month`-`day`; that moment's Unix seconds too.
    pub fn localhost_until(year: i32, month: u8, day: u8) -> (TestCert, i64) {
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("certificate params");
        params.not_after = rcgen::date_time_ymd(year, month, day);
        let key = rcgen::KeyPair::generate().expect("key pair");
        let cert = params.self_signed(&key).expect("generate certificate");
        (TestCert::of(cert, key), params.not_after.unix_timestamp())
    }

    fn of(cert: rcgen::Certificate, key: rcgen::KeyPair) -> TestCert {
        let ck = rcgen::CertifiedKey {
            cert,
            signing_key: key,
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let cert_pem = dir.path().join("cert.pem");
        let key_pem = dir.path().join("key.pem");
        std::fs::write(&cert_pem, ck.cert.pem()).expect("write cert.pem");
        std::fs::write(&key_pem, ck.signing_key.serialize_pem()).expect("write key.pem");
        TestCert {
            cert_pem,
            key_pem,
            der: ck.cert.der().clone(),
            _dir: dir,
        }
    }

    /// Server options with `--tls-cert`/`--tls-key` set to this certificate.
    pub fn server_options(&self) -> ServerOptions {
        ServerOptions::default().tls(&self.cert_pem, &self.key_pem)
    }

    /// A rustls client config (aws-lc-rs) that trusts only this certificate.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).expect("trust test cert");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }

    /// Opens TCP to `addr` and completes a TLS handshake for `localhost`.
    pub async fn connect(&self, addr: SocketAddr) -> TlsStream<TcpStream> {
        self.connect_as(addr, "localhost").await
    }

    /// Like [`TestCert::connect`], checking the certificate against `name`.
    pub async fn connect_as(&self, addr: SocketAddr, name: &str) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).unwrap();
        let name = ServerName::try_from(name.to_owned()).expect("server name");
        let handshake = TlsConnector::from(self.client_config()).connect(name, tcp);
        tokio::time::timeout(crate::WAIT, handshake)
            .await
            .expect("TLS handshake timed out")
            .expect("TLS handshake")
    }
}
