//! TLS for the OTLP exporter, from the standard variables: a collector's
//! CA (`OTEL_EXPORTER_OTLP_CERTIFICATE`) and a client certificate and key
//! for mutual TLS (`OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`,
//! `OTEL_EXPORTER_OTLP_CLIENT_KEY`), each also per signal
//! (`OTEL_EXPORTER_OTLP_TRACES_…`, which wins). opentelemetry-otlp reads
//! these for gRPC only, so the HTTP client is built here (reqwest on rustls,
//! as the exporter's own).

use std::time::Duration;

use anyhow::Context;

/// The exporter's default request timeout (the OTLP specification's).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The per-signal variable, else the general one.
fn var(name: &str) -> Option<String> {
    [
        format!("OTEL_EXPORTER_OTLP_TRACES_{name}"),
        format!("OTEL_EXPORTER_OTLP_{name}"),
    ]
    .into_iter()
    .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
}

fn read(name: &str, path: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("OTEL_EXPORTER_OTLP_{name}: cannot read {path}"))
}

/// An HTTP client that trusts only the configured CA and presents the
/// client certificate, if any is set; `None` when no TLS variable is set
/// (the exporter's default client then trusts the system's roots).
/// Call it outside the async runtime (the blocking client starts its own).
pub fn http_client() -> anyhow::Result<Option<reqwest::blocking::Client>> {
    let ca = var("CERTIFICATE");
    let cert = var("CLIENT_CERTIFICATE");
    let key = var("CLIENT_KEY");
    if ca.is_none() && cert.is_none() && key.is_none() {
        return Ok(None);
    }
    let timeout = var("TIMEOUT")
        .and_then(|ms| ms.parse().ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_millis);
    let mut builder = reqwest::blocking::Client::builder().timeout(timeout);
    if let Some(path) = ca {
        let roots = reqwest::Certificate::from_pem_bundle(&read("CERTIFICATE", &path)?)
            .with_context(|| {
                format!("OTEL_EXPORTER_OTLP_CERTIFICATE: no PEM certificate in {path}")
            })?;
        anyhow::ensure!(
            !roots.is_empty(),
            "OTEL_EXPORTER_OTLP_CERTIFICATE: no PEM certificate in {path}"
        );
        builder = builder.tls_certs_only(roots);
    }
    match (cert, key) {
        (Some(cert), Some(key)) => {
            let mut pem = read("CLIENT_CERTIFICATE", &cert)?;
            pem.push(b'\n');
            pem.extend(read("CLIENT_KEY", &key)?);
            // The error says nothing of the key's bytes.
            let identity = reqwest::Identity::from_pem(&pem).map_err(|_| {
                anyhow::anyhow!("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE/_KEY: {cert} and {key} are not a PEM certificate and its key")
            })?;
            builder = builder.identity(identity);
        }
        (None, None) => {}
        _ => anyhow::bail!(
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY go together"
        ),
    }
    Ok(Some(
        builder.build().context("the OTLP exporter's HTTP client")?,
    ))
}
