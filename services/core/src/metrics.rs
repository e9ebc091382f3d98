//! Metric names the core and gateway report. One place, so dashboards and
//! tests can rely on them.

pub const CONNECTIONS: &str = "aerie_connections";
pub const CONNECTIONS_TOTAL: &str = "aerie_connections_total";
pub const CONNECT_REFUSED_TOTAL: &str = "aerie_connect_refused_total";
pub const PACKETS_RECEIVED_TOTAL: &str = "aerie_packets_received_total";
pub const PACKETS_SENT_TOTAL: &str = "aerie_packets_sent_total";
pub const BYTES_RECEIVED_TOTAL: &str = "aerie_bytes_received_total";
pub const BYTES_SENT_TOTAL: &str = "aerie_bytes_sent_total";
pub const MESSAGES_PUBLISHED_TOTAL: &str = "aerie_messages_published_total";
pub const MESSAGES_DELIVERED_TOTAL: &str = "aerie_messages_delivered_total";
pub const MESSAGES_DROPPED_TOTAL: &str = "aerie_messages_dropped_total";
/// Subscribers closed because their socket took nothing while their queue
/// was full (`--slow-consumer-timeout`).
pub const SLOW_CONSUMERS_DISCONNECTED_TOTAL: &str = "aerie_slow_consumers_disconnected_total";
pub const RETAINED_MESSAGES: &str = "aerie_retained_messages";
pub const SESSIONS: &str = "aerie_sessions";
pub const QUEUED_MESSAGES: &str = "aerie_queued_messages";
pub const PUBLISH_TO_DELIVER_SECONDS: &str = "aerie_publish_to_deliver_seconds";
pub const PROTOCOL_ERRORS_TOTAL: &str = "aerie_protocol_errors_total";
pub const DISCONNECTS_TOTAL: &str = "aerie_disconnects_total";
/// Seconds one store commit took (a batch of writes made durable).
pub const STORE_COMMIT_SECONDS: &str = "aerie_store_commit_seconds";
/// Writes per store commit.
pub const STORE_BATCH_OPS: &str = "aerie_store_batch_ops";
/// Store commits that failed (each attempt; the writes are kept and retried).
pub const STORE_ERRORS_TOTAL: &str = "aerie_store_errors_total";
/// 1 while the store's last commit failed.
pub const STORE_FAILING: &str = "aerie_store_failing";
/// Writes submitted and not yet durable.
pub const STORE_BACKLOG_OPS: &str = "aerie_store_backlog_ops";
/// Approximate bytes of writes submitted and not yet durable.
pub const STORE_BACKLOG_BYTES: &str = "aerie_store_backlog_bytes";
/// Times the store reopened its database to recover from a failure.
pub const STORE_REOPENS_TOTAL: &str = "aerie_store_reopens_total";
/// Acknowledgements given up on after `--store-ack-timeout`, by MQTT version.
pub const STORE_ACK_TIMEOUTS_TOTAL: &str = "aerie_store_ack_timeouts_total";
/// TLS handshakes and HTTP request headers (WebSocket upgrades, the HTTP
/// listener) not completed in time, by `listener` and `stage` (tls, headers).
pub const HANDSHAKE_TIMEOUTS_TOTAL: &str = "aerie_handshake_timeouts_total";
/// Failed TLS handshakes by `listener` and `reason` (not_tls,
/// no_shared_cipher, bad_certificate, timeout, other).
pub const TLS_HANDSHAKE_FAILURES_TOTAL: &str = "aerie_tls_handshake_failures_total";
/// When the TLS listeners' certificate (the chain's first) stops being
/// valid, Unix seconds: what a certificate-expiry alert reads.
pub const TLS_CERTIFICATE_EXPIRY: &str = "aerie_tls_certificate_expiry_timestamp_seconds";
/// Connections to the HTTP listener refused at its connection cap.
pub const HTTP_CONNECTIONS_REFUSED_TOTAL: &str = "aerie_http_connections_refused_total";
/// HTTP requests answered 408 for taking longer than the request timeout.
pub const HTTP_REQUEST_TIMEOUTS_TOTAL: &str = "aerie_http_request_timeouts_total";

/// Why a message did not reach a subscriber. Never silent: each is counted
/// under `aerie_messages_dropped_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The session's queue was at its message or byte limit.
    QueueFull,
    /// The message expiry interval ran out before delivery.
    Expired,
    /// QoS 0 for an offline session (not queued by policy).
    OfflineQos0,
    /// Larger than the subscriber's maximum packet size.
    TooLargeForClient,
    /// The session ended with messages still queued.
    SessionEnded,
}

impl DropReason {
    pub const ALL: [DropReason; 5] = [
        DropReason::QueueFull,
        DropReason::Expired,
        DropReason::OfflineQos0,
        DropReason::TooLargeForClient,
        DropReason::SessionEnded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Expired => "expired",
            DropReason::OfflineQos0 => "offline_qos0",
            DropReason::TooLargeForClient => "too_large_for_client",
            DropReason::SessionEnded => "session_ended",
        }
    }
}

pub fn count_drop(reason: DropReason, n: u64) {
    metrics::counter!(MESSAGES_DROPPED_TOTAL, "reason" => reason.as_str()).increment(n);
}

/// Registers, at zero, the series dashboards and alerts read that only move
/// on a fault: a healthy process then shows a flat 0 instead of "no data",
/// and a query on them is known to name a real series. Adds 0, so a value
/// already recorded is kept.
pub fn register_zeroes() {
    for reason in DropReason::ALL {
        count_drop(reason, 0);
    }
    metrics::counter!(SLOW_CONSUMERS_DISCONNECTED_TOTAL).increment(0);
    metrics::counter!(STORE_ERRORS_TOTAL).increment(0);
    for version in ["5", "3.1.1"] {
        metrics::counter!(STORE_ACK_TIMEOUTS_TOTAL, "version" => version).increment(0);
    }
    metrics::gauge!(STORE_FAILING).increment(0.0);
}

/// Handles for the metrics touched per packet or per message, looked up once
/// (a `counter!` with labels hashes its key on every call). Created on first
/// use, which must come after the recorder is installed (`aerie serve` does
/// that before it binds anything).
pub struct Hot {
    pub published: metrics::Counter,
    pub delivered: metrics::Counter,
    pub publish_to_deliver: metrics::Histogram,
    pub bytes_received: metrics::Counter,
    pub bytes_sent: metrics::Counter,
    /// Indexed by control packet type (1..=15).
    pub packets_received: [metrics::Counter; 16],
    pub packets_sent: [metrics::Counter; 16],
}

fn per_packet_type(name: &'static str) -> [metrics::Counter; 16] {
    std::array::from_fn(|i| match i {
        0 => metrics::Counter::noop(),
        _ => metrics::counter!(name, "type" => aerie_proto::packet_type_name(i as u8)),
    })
}

static HOT: std::sync::OnceLock<Hot> = std::sync::OnceLock::new();

pub fn hot() -> &'static Hot {
    HOT.get_or_init(|| Hot {
        published: metrics::counter!(MESSAGES_PUBLISHED_TOTAL),
        delivered: metrics::counter!(MESSAGES_DELIVERED_TOTAL),
        publish_to_deliver: metrics::histogram!(PUBLISH_TO_DELIVER_SECONDS),
        bytes_received: metrics::counter!(BYTES_RECEIVED_TOTAL),
        bytes_sent: metrics::counter!(BYTES_SENT_TOTAL),
        packets_received: per_packet_type(PACKETS_RECEIVED_TOTAL),
        packets_sent: per_packet_type(PACKETS_SENT_TOTAL),
    })
}
