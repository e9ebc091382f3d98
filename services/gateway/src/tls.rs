//! TLS: the server configuration from PEM files, and the handshake with
//! its time limit and failure metrics.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aerie_core::metrics as m;
use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Loads a certificate chain and private key (PEM) into an acceptor, and
/// exports when the certificate expires (`aerie_tls_certificate_expiry_
/// timestamp_seconds`). `alpn` lists the protocols to offer (e.g.
/// `http/1.1` for WSS).
pub fn acceptor(cert: &Path, key: &Path, alpn: &[&[u8]]) -> anyhow::Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading TLS certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing TLS certificate {}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("no certificate found in {}", cert.display());
    }
    let (_, leaf) = x509_parser::parse_x509_certificate(&certs[0])
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("parsing TLS certificate {}", cert.display()))?;
    let not_after = leaf.validity().not_after.timestamp();
    metrics::gauge!(m::TLS_CERTIFICATE_EXPIRY).set(not_after as f64);
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading TLS key {}", key.display()))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS certificate and key do not fit together")?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Runs the TLS handshake on `socket` within `timeout`. A handshake that
/// fails or runs out of time is counted by reason (`listener` names the
/// listener in the metrics) and yields `None`.
pub async fn handshake(
    acceptor: &TlsAcceptor,
    socket: TcpStream,
    timeout: Duration,
    listener: &'static str,
) -> Option<TlsStream<TcpStream>> {
    let peer = socket.peer_addr().ok();
    let reason = match tokio::time::timeout(timeout, acceptor.accept(socket)).await {
        Ok(Ok(stream)) => return Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(?peer, error = %e, "TLS handshake failed");
            failure_reason(&e)
        }
        Err(_) => {
            tracing::debug!(?peer, "TLS handshake timed out");
            metrics::counter!(m::HANDSHAKE_TIMEOUTS_TOTAL, "listener" => listener, "stage" => "tls")
                .increment(1);
            "timeout"
        }
    };
    metrics::counter!(m::TLS_HANDSHAKE_FAILURES_TOTAL, "listener" => listener, "reason" => reason)
        .increment(1);
    None
}

/// Why a handshake failed, as one of a few fixed labels: what an operator
/// can act on (plain text sent to a TLS port, clients too old or too
/// strict, clients that do not trust the certificate).
fn failure_reason(e: &std::io::Error) -> &'static str {
    use rustls::{AlertDescription as Alert, Error as E};
    // tokio-rustls hands rustls errors over inside the io::Error.
    match e.get_ref().and_then(|e| e.downcast_ref::<E>()) {
        Some(
            E::InvalidMessage(_)
            | E::InappropriateMessage { .. }
            | E::InappropriateHandshakeMessage { .. },
        ) => "not_tls",
        Some(E::PeerIncompatible(_))
        | Some(E::AlertReceived(
            Alert::HandshakeFailure | Alert::ProtocolVersion | Alert::InsufficientSecurity,
        )) => "no_shared_cipher",
        Some(E::NoCertificatesPresented | E::InvalidCertificate(_))
        | Some(E::AlertReceived(
            Alert::BadCertificate
            | Alert::UnsupportedCertificate
            | Alert::CertificateRevoked
            | Alert::CertificateExpired
            | Alert::CertificateUnknown
            | Alert::UnknownCA,
        )) => "bad_certificate",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::failure_reason;
    use rustls::{AlertDescription, CertificateError, Error, InvalidMessage, PeerIncompatible};

    fn reason(e: Error) -> &'static str {
        failure_reason(&std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    #[test]
    fn handshake_failures_fall_into_a_few_reasons() {
        assert_eq!(
            reason(Error::InvalidMessage(InvalidMessage::InvalidContentType)),
            "not_tls"
        );
        assert_eq!(
            reason(Error::PeerIncompatible(
                PeerIncompatible::NoCipherSuitesInCommon
            )),
            "no_shared_cipher"
        );
        assert_eq!(
            reason(Error::AlertReceived(AlertDescription::ProtocolVersion)),
            "no_shared_cipher"
        );
        assert_eq!(
            reason(Error::AlertReceived(AlertDescription::UnknownCA)),
            "bad_certificate"
        );
        assert_eq!(
            reason(Error::InvalidCertificate(CertificateError::Expired)),
            "bad_certificate"
        );
        assert_eq!(
            reason(Error::AlertReceived(AlertDescription::InternalError)),
            "other"
        );
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        assert_eq!(failure_reason(&eof), "other");
    }
}
