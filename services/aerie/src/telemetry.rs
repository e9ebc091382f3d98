//! Logging (tracing), OpenTelemetry export (OTLP over HTTP) and the
//! Prometheus recorder.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::LogFormat;

/// What `init_logging` set up that must be shut down on exit.
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still queued and stops the exporter. Call it outside
    /// the async runtime (the exporter's HTTP client blocks).
    pub fn shutdown(self) {
        if let Some(provider) = self.tracer_provider
            && let Err(e) = provider.shutdown_with_timeout(Duration::from_secs(5))
        {
            tracing::warn!(error = %e, "OpenTelemetry: flushing the last spans failed");
        }
    }
}

/// Installs the global `tracing` subscriber: logs on stderr, plus OTLP export
/// of spans when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. Call it before the async
/// runtime starts.
pub fn init_logging(format: LogFormat) -> Telemetry {
    let filter = EnvFilter::try_from_env("AERIE_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,fjall=warn,lsm_tree=warn"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    }
    .with_filter(filter);
    let (tracer_provider, otel_error) = match otlp_configured() {
        false => (None, None),
        true => match tracer_provider() {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(e)),
        },
    };
    let otel = tracer_provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("aerie"))
            // INFO and up whatever `AERIE_LOG` says, and each MQTT
            // connection's span (DEBUG, so that logs alone do not pay for
            // it); the exporter's own HTTP client must not feed its spans back.
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                (*meta.level() <= tracing::Level::INFO || meta.name() == "mqtt.connection")
                    && !["hyper", "h2", "reqwest", "opentelemetry", "tower"]
                        .iter()
                        .any(|t| meta.target().starts_with(t))
            }))
    });
    tracing_subscriber::registry().with(fmt).with(otel).init();
    if let Some(e) = otel_error {
        tracing::warn!(error = %e, "OpenTelemetry export disabled: cannot set up the OTLP exporter");
    } else if tracer_provider.is_some() {
        tracing::info!("OpenTelemetry: exporting spans over OTLP/HTTP");
    }
    Telemetry { tracer_provider }
}

fn otlp_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// OTLP/HTTP (protobuf) behind a batch span processor; endpoint, headers,
/// timeout, batching and TLS (`otlp_tls.rs`) come from the standard
/// `OTEL_*` variables.
fn tracer_provider() -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
    if let Some(client) = crate::otlp_tls::http_client()? {
        builder = builder.with_http_client(client);
    }
    let exporter = builder.build()?;
    Ok(SdkTracerProvider::builder()
        .with_resource(resource())
        .with_batch_exporter(WarnOnce {
            inner: exporter,
            warned: AtomicBool::new(false),
        })
        .build())
}

/// `service.name` is `OTEL_SERVICE_NAME` (or `OTEL_RESOURCE_ATTRIBUTES`'s),
/// otherwise "aerie".
fn resource() -> Resource {
    let detected = Resource::builder().build();
    let named = detected
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .is_some_and(|v| !v.as_str().starts_with("unknown_service"));
    if named {
        detected
    } else {
        Resource::builder().with_service_name("aerie").build()
    }
}

/// An exporter that says once, as a warning, that the collector cannot be
/// reached, instead of an error per batch; the service runs on regardless.
#[derive(Debug)]
struct WarnOnce<E> {
    inner: E,
    warned: AtomicBool,
}

impl<E: SpanExporter> SpanExporter for WarnOnce<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let result = self.inner.export(batch).await;
        match &result {
            Err(e) if !self.warned.swap(true, Ordering::Relaxed) => {
                tracing::warn!(error = %e, "OpenTelemetry: cannot export spans (warned once; the spans are dropped)");
            }
            Err(e) => tracing::debug!(error = %e, "OpenTelemetry: span export failed"),
            Ok(()) => {}
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Seconds, for the message path: tens of microseconds when all is well,
/// milliseconds under a backlog.
const MESSAGE_PATH_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.0001, 0.000_25, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.5, 1.0,
];

/// Installs the global metrics recorder and returns the handle `/metrics` renders.
pub fn init_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(
                aerie_core::metrics::PUBLISH_TO_DELIVER_SECONDS.to_owned(),
            ),
            MESSAGE_PATH_BUCKETS,
        )?
        // A message crossing between gateways.
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(
                aerie_cluster::backbone::LATENCY_SECONDS.to_owned(),
            ),
            MESSAGE_PATH_BUCKETS,
        )?
        // How long a PUBACK waited for JetStream (`aerie gateway`): a
        // round trip in milliseconds, a leader election in seconds.
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(
                aerie_cluster::message_log::ACK_WAIT_SECONDS.to_owned(),
            ),
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ],
        )?
        // A store commit is an fsync: a fraction of a millisecond on a
        // good disk, tens on a busy one, seconds when it is failing.
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(
                aerie_core::metrics::STORE_COMMIT_SECONDS.to_owned(),
            ),
            &[
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5,
            ],
        )?
        // Writes per commit: 1 when idle, thousands under a burst.
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(
                aerie_core::metrics::STORE_BATCH_OPS.to_owned(),
            ),
            &[
                1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0, 5000.0,
            ],
        )?
        .install_recorder()?;
    crate::metrics_help::describe_all();
    Ok(handle)
}
