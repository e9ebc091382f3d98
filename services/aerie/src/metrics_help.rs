//! The HELP line of every metric the binaries export, described once when
//! the recorder is installed: `/metrics` says what each series means, and
//! the dashboards' and alerts' authors read the same words. A unit test
//! below fails when a metric name defined anywhere in services/ has no
//! line here.

/// What kind of metric a name is (the exporter needs it to describe it).
#[derive(Clone, Copy)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

use Kind::{Counter as C, Gauge as G, Histogram as H};

/// (kind, name, help). Units are in the names (`_seconds`, `_bytes`,
/// `_total` for counters); labels are said in the text.
#[rustfmt::skip]
pub const HELP: &[(Kind, &str, &str)] = &[
    // Connections and packets (services/core/src/metrics.rs).
    (G, "aerie_connections", "Open MQTT connections on this process (from the accept, whether their CONNECT succeeds or not)."),
    (C, "aerie_connections_total", "MQTT connections opened (before their CONNECT is checked), by transport (tcp, tls, ws, wss)."),
    (C, "aerie_connect_refused_total", "Connections refused, by reason: max_connections at the accept, or the CONNACK's error reason code (0x86, 0x87, 0x97, ...)."),
    (C, "aerie_packets_received_total", "MQTT control packets received, by packet type."),
    (C, "aerie_packets_sent_total", "MQTT control packets sent, by packet type."),
    (C, "aerie_bytes_received_total", "Bytes of MQTT packets received from clients."),
    (C, "aerie_bytes_sent_total", "Bytes of MQTT packets sent to clients."),
    (C, "aerie_messages_published_total", "Messages accepted and routed into a tenant (MQTT PUBLISH, wills, HTTP publish)."),
    (C, "aerie_messages_delivered_total", "Messages written to subscribers."),
    (C, "aerie_messages_dropped_total", "Messages that did not reach a subscriber, by reason (queue_full, expired, offline_qos0, too_large_for_client, session_ended)."),
    (C, "aerie_slow_consumers_disconnected_total", "Subscribers closed because their socket took nothing while their queue was full (--slow-consumer-timeout)."),
    (G, "aerie_retained_messages", "Retained messages held, all tenants."),
    (G, "aerie_sessions", "MQTT sessions held (connected or not), all tenants."),
    (G, "aerie_queued_messages", "Messages queued for sessions and not yet sent, all tenants (refreshed every 5 s)."),
    (H, "aerie_publish_to_deliver_seconds", "Seconds from a PUBLISH's arrival to its delivery being written to a subscriber on this process (sampled; microsecond buckets)."),
    (C, "aerie_protocol_errors_total", "Packets that broke the protocol (the connection was closed), by MQTT reason code."),
    (C, "aerie_disconnects_total", "Connections that ended, by why."),
    (C, "aerie_limit_exceeded_total", "Refusals (or clamps) by a tenant limit, by limit; all tenants."),
    // The embedded store.
    (H, "aerie_store_commit_seconds", "Seconds one store commit (a batch of writes made durable) took (millisecond buckets)."),
    (H, "aerie_store_batch_ops", "Writes per store commit."),
    (C, "aerie_store_errors_total", "Store commits that failed (each attempt; the writes are kept and retried)."),
    (G, "aerie_store_failing", "1 while the store's last commit failed, else 0."),
    (G, "aerie_store_backlog_ops", "Writes submitted to the store and not yet durable."),
    (G, "aerie_store_backlog_bytes", "Approximate bytes of writes submitted to the store and not yet durable."),
    (C, "aerie_store_reopens_total", "Times the store reopened its database to recover from a failure."),
    (C, "aerie_store_ack_timeouts_total", "Acknowledgements given up on after --store-ack-timeout, by MQTT version."),
    // Listeners and TLS.
    (C, "aerie_handshake_timeouts_total", "TLS handshakes and HTTP request headers not completed in time, by listener and stage."),
    (C, "aerie_tls_handshake_failures_total", "Failed TLS handshakes, by listener and reason (not_tls, no_shared_cipher, bad_certificate, timeout, other)."),
    (G, "aerie_tls_certificate_expiry_timestamp_seconds", "When the TLS listeners' certificate stops being valid (not-after), Unix seconds."),
    (C, "aerie_http_connections_refused_total", "Connections to the HTTP listener refused at its connection cap."),
    (C, "aerie_http_request_timeouts_total", "HTTP requests answered 408 for taking longer than the request timeout."),
    (C, "aerie_ws_too_large_total", "WebSocket frames or messages refused for their size (the connection closes)."),
    // Authentication and the control plane's decisions at the gateway.
    (C, "aerie_auth_failures_total", "Refused authentications, by reason."),
    (C, "aerie_acl_denied_total", "PUBLISH, SUBSCRIBE and wills refused by a token's acl, by action."),
    (C, "aerie_auth_disconnects_total", "Connections closed because of a control-plane decision (a revoked token, a suspended tenant, ...), by why."),
    (C, "aerie_reauthentications_total", "Successful MQTT 5 re-authentications."),
    (C, "aerie_directory_stale_loads_total", "Token directory loads that finished after a newer one was published, and were dropped."),
    (C, "aerie_tenants_removed_total", "Tenants removed from the broker because the control plane deleted them."),
    // Per-tenant series (services/core/src/tenant_series.rs), bounded.
    (G, "aerie_tenant_connections", "Live MQTT connections of a tenant (first 100 tenants of the process only)."),
    (G, "aerie_tenant_sessions", "MQTT sessions held for a tenant (first 100 tenants of the process only)."),
    (G, "aerie_tenant_retained_messages", "Retained messages held for a tenant (first 100 tenants of the process only)."),
    (C, "aerie_tenant_messages_received_total", "Messages a tenant's clients published (first 100 tenants of the process only)."),
    (C, "aerie_tenant_messages_delivered_total", "Messages delivered to a tenant's subscribers (first 100 tenants of the process only)."),
    (C, "aerie_tenant_payload_bytes_received_total", "Payload bytes a tenant's clients published (first 100 tenants of the process only)."),
    (C, "aerie_tenant_payload_bytes_delivered_total", "Payload bytes delivered to a tenant's subscribers (first 100 tenants of the process only)."),
    (C, "aerie_tenant_limit_exceeded_total", "Refusals by a tenant's limits, by tenant and limit (first 100 tenants of the process only; a resumed session's replay over queued_messages only in aerie_limit_exceeded_total)."),
    // Control plane.
    (C, "aerie_control_account_key_management_refused_total", "Requests to manage account API keys refused for not coming with a session token, by credential."),
    (C, "aerie_control_rate_limited_total", "Control-plane requests refused by its rate limits, by route and key (ip, account)."),
    (C, "aerie_control_csrf_refused_total", "Cookie-authenticated requests refused, by reason (cross_origin, missing_token, wrong_token)."),
    (C, "aerie_control_scope_refused_total", "Requests refused for a scope the API key lacks, by scope."),
    (C, "aerie_outbound_requests_total", "Outbound HTTP requests (tenants' JWKS URLs), by purpose and outcome."),
    (C, "aerie_usage_reports_total", "Usage reports from gateways folded into the usage table, by outcome (folded, duplicate, refused)."),
    // NATS and the facts (services/facts).
    (G, "aerie_nats_connected", "1 while connected to NATS, else 0."),
    (C, "aerie_nats_slow_consumer_drops_total", "Messages NATS delivered that this process dropped because a subscription's queue was full."),
    (G, "aerie_facts_revision", "The facts bucket's revision this gateway enforces."),
    (G, "aerie_facts_updated_timestamp_seconds", "When this gateway last applied a facts change, Unix seconds."),
    (C, "aerie_facts_bad_entries_total", "Facts entries that did not parse and were skipped."),
    (G, "aerie_facts_published_revision", "The facts bucket's last revision after the control plane's last publisher pass."),
    (C, "aerie_facts_published_total", "Facts keys the control plane wrote, by op (put, delete)."),
    (C, "aerie_facts_publish_failures_total", "Facts publisher passes that failed (the store or NATS); retried."),
    // The backbone and JetStream (services/cluster).
    (C, "aerie_backbone_published_total", "Messages sent to the other gateways over NATS."),
    (C, "aerie_backbone_received_total", "Messages of other gateways received over NATS."),
    (C, "aerie_backbone_decode_failures_total", "Messages received over NATS that did not decode (dropped)."),
    (C, "aerie_backbone_dropped_total", "Messages not sent to the other gateways, by reason (queue_full, too_large, subject_too_long, nats)."),
    (G, "aerie_backbone_subscriptions", "NATS subscriptions this gateway holds for its clients' filters."),
    (H, "aerie_backbone_latency_seconds", "Seconds from a message's hand-off to NATS on its gateway to its receipt on another (sampled; wall clocks, so host clock skew adds to it; microsecond buckets)."),
    (C, "aerie_message_log_appends_total", "Messages JetStream acknowledged in a tenant's message log."),
    (C, "aerie_message_log_append_failures_total", "Message log appends that failed, by reason (no_stream, timeout, jetstream, stream_open, gave_up, too_large, subject_too_long)."),
    (H, "aerie_message_log_ack_wait_seconds", "Seconds from a QoS 1/2 PUBLISH to JetStream's acknowledgement of its append (how long its PUBACK/PUBREC was held)."),
    (G, "aerie_message_log_pending", "Message log appends not yet acknowledged by JetStream."),
    (C, "aerie_message_log_qos2_resends_total", "QoS 2 resends of messages a gateway now gone had recorded, by outcome (held, appended, unknown)."),
    (C, "aerie_retained_store_errors_total", "Retained sets and lookups that failed on NATS, by op."),
    (C, "aerie_retained_expired_purged_total", "Expired retained messages deleted from the retained stream."),
    (C, "aerie_retained_usage_conflicts_total", "Retained usage reservations whose compare-and-set lost to another gateway's write."),
    (C, "aerie_retained_usage_reconciles_total", "Reconciles of a tenant's retained usage record, by outcome (agreed, corrected, busy, failed)."),
    (C, "aerie_cluster_connection_count_errors_total", "Reads or writes of the cluster-wide connection count that failed (the CONNECT was admitted on this gateway's count alone)."),
    (C, "aerie_cluster_connection_count_conflicts_total", "Compare-and-set rounds of the connection count that lost to another gateway's write."),
    (C, "aerie_cluster_rate_share_changes_total", "Changes of this gateway's share of a tenant's publish rates or of the connect rates."),
    (G, "aerie_cluster_nodes_alive", "The gateways alive now, as this gateway last counted them."),
    (C, "aerie_cluster_wills_kept_total", "Wills written to NATS at CONNECT."),
    (C, "aerie_cluster_wills_removed_total", "Wills removed by the gateway that kept them."),
    (C, "aerie_cluster_wills_cancelled_total", "Wills of another gateway removed by a connection that took its client id over."),
    (C, "aerie_cluster_will_failures_total", "Will writes and removals NATS did not take (or not in time)."),
    (C, "aerie_cluster_dead_nodes_total", "Gateways this gateway found dead."),
    (C, "aerie_cluster_wills_published_by_survivors_total", "Wills of dead gateways published by this gateway."),
    (C, "aerie_cluster_will_races_lost_total", "Wills of dead gateways another survivor published first."),
    (C, "aerie_cluster_sessions_expired_by_survivors_total", "Persistent sessions of dead gateways expired by this gateway."),
    (C, "aerie_cluster_session_claims_total", "Session ownership claims written (this gateway became or stayed the owner)."),
    (C, "aerie_cluster_takeovers_sent_total", "Owners told to let a client id go."),
    (C, "aerie_cluster_takeovers_received_total", "Times this gateway was told another took a client id over."),
    (C, "aerie_cluster_takeover_requests_malformed_total", "Takeover requests that did not decode (dropped)."),
    (C, "aerie_cluster_claim_conflicts_total", "Session claims whose compare-and-set lost to another write."),
    (C, "aerie_cluster_stale_owners_removed_total", "Session owner keys of dead gateways deleted."),
    (C, "aerie_cluster_session_record_writes_total", "Session records written, by op (put, delete)."),
    (C, "aerie_cluster_session_record_conflicts_total", "Session record writes that found another gateway's revision."),
    (C, "aerie_cluster_session_record_failures_total", "Session record writes NATS did not take (retried)."),
    (C, "aerie_cluster_session_resumes_total", "Sessions resumed from a record another gateway wrote."),
    (C, "aerie_cluster_session_replayed_messages_total", "Messages replayed from the message log to resumed sessions."),
    (C, "aerie_cluster_session_cursor_lost_total", "Resumes whose cursor was older than the log's oldest message (messages lost to that session)."),
    (C, "aerie_live_requests_total", "Live-state requests to gateways, by op and outcome (answered, gone, timed_out, failed)."),
    (C, "aerie_live_requests_served_total", "Live-state requests this gateway answered, by op."),
    (C, "aerie_live_requests_refused_total", "Live-state requests that did not decode or found this gateway busy."),
];

/// Describes every metric of [`HELP`] to the installed recorder.
pub fn describe_all() {
    for &(kind, name, help) in HELP {
        match kind {
            Kind::Counter => metrics::describe_counter!(name, help),
            Kind::Gauge => metrics::describe_gauge!(name, help),
            Kind::Histogram => metrics::describe_histogram!(name, help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::HELP;
    use std::collections::HashSet;
    use std::path::Path;

    /// `aerie_…` constants that are no metric.
    const NOT_METRICS: &[&str] = &["aerie_session"]; // the console's cookie

    /// Every `const …: &str = "aerie_…"` metric name under `dir`.
    fn metric_names(dir: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).expect("a source dir") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                metric_names(&path, out);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("a source file");
            for line in text.lines() {
                let Some((_, rest)) = line.split_once(": &str = \"aerie_") else {
                    continue;
                };
                let Some((tail, _)) = rest.split_once('"') else {
                    continue;
                };
                // API key prefixes ("aerie_", "aerie_acct_") are not metrics.
                if !line.trim_start().starts_with("const") && !line.contains(" const ")
                    || tail.is_empty()
                    || tail.ends_with('_')
                    || NOT_METRICS.contains(&format!("aerie_{tail}").as_str())
                {
                    continue;
                }
                out.push((format!("aerie_{tail}"), path.display().to_string()));
            }
        }
    }

    #[test]
    fn every_metric_name_defined_in_services_has_help() {
        let services = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut found = vec![];
        for krate in [
            "aerie", "cluster", "control", "core", "egress", "facts", "gateway", "store",
        ] {
            metric_names(&services.join(krate).join("src"), &mut found);
        }
        assert!(found.len() > 50, "the scan found too few names: {found:?}");
        let described: HashSet<&str> = HELP.iter().map(|(_, name, _)| *name).collect();
        let missing: Vec<_> = found
            .iter()
            .filter(|(name, _)| !described.contains(name.as_str()))
            .collect();
        assert!(missing.is_empty(), "metrics without HELP text: {missing:?}");
    }

    #[test]
    fn counters_end_in_total_and_nothing_is_described_twice() {
        let mut seen = HashSet::new();
        for (kind, name, help) in HELP {
            assert!(seen.insert(name), "{name} is described twice");
            assert!(!help.is_empty(), "{name} has an empty HELP");
            let counter = matches!(kind, super::Kind::Counter);
            assert_eq!(
                counter,
                name.ends_with("_total"),
                "{name}: counters, and only they, end in _total"
            );
        }
    }
}
