//! W3C trace context carried with a change, so that work it causes later,
//! elsewhere (a gateway's kick after a revocation, a delivery after an HTTP
//! publish), joins the trace of the request that made it.
//!
//! Everything here is a no-op unless spans are exported (the
//! OpenTelemetry layer is installed): [`TraceParent::current`] is then
//! `None`, and nothing is recorded or carried.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

const TRACEPARENT: &str = "traceparent";

/// A W3C `traceparent` value (`00-<trace id>-<span id>-<flags>`): the span
/// a later span is to have as its parent.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TraceParent(String);

impl TraceParent {
    /// The context of the current `tracing` span, if it is exported.
    pub fn current() -> Option<TraceParent> {
        let cx = tracing::Span::current().context();
        let mut carrier = HashMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut carrier);
        carrier.remove(TRACEPARENT).map(TraceParent)
    }

    /// `value` if it is a valid `traceparent` (what another process sent is
    /// checked before it is used or passed on).
    pub fn parse(value: &str) -> Option<TraceParent> {
        let parsed = TraceParent(value.to_owned());
        use opentelemetry::trace::TraceContextExt as _;
        parsed
            .context()
            .span()
            .span_context()
            .is_valid()
            .then_some(parsed)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Makes this the parent of `span` (a span just made, not yet entered:
    /// a started span keeps its parent).
    pub fn adopt(&self, span: &tracing::Span) {
        // Fails only without the OpenTelemetry layer: nothing to join then.
        let _ = span.set_parent(self.context());
    }

    fn context(&self) -> opentelemetry::Context {
        let carrier = HashMap::from([(TRACEPARENT.to_owned(), self.0.clone())]);
        TraceContextPropagator::new().extract(&carrier)
    }
}

/// The traces of recent control-plane changes that gateways enforce, by
/// what they changed: a kick they cause is a child of the request's span.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeTraces {
    /// A token revocation, by (tenant id, `jti`).
    pub revoked: HashMap<(String, String), TraceParent>,
    /// A tenant's status change (suspension), by tenant id.
    pub tenants: HashMap<String, TraceParent>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_well_formed_traceparent_parses() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(TraceParent::parse(valid).unwrap().as_str(), valid);
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "a secret token",
        ] {
            assert!(TraceParent::parse(bad).is_none(), "{bad:?}");
        }
    }

    /// Runs `f` with spans going to an OpenTelemetry tracer (exported
    /// nowhere: only the ids matter).
    fn exported<R>(f: impl FnOnce() -> R) -> R {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f)
    }

    #[test]
    fn a_span_adopting_a_traceparent_is_its_child_in_the_same_trace() {
        exported(|| {
            let request = tracing::info_span!("request");
            let carried = request.in_scope(TraceParent::current).expect("exported");
            // What a gateway reads back from the KV entry or the header.
            let received = TraceParent::parse(carried.as_str()).unwrap();
            let kick = tracing::info_span!("kick");
            received.adopt(&kick);
            let seen = kick.in_scope(TraceParent::current).unwrap();
            let (sent, got): (Vec<&str>, Vec<&str>) = (
                carried.as_str().split('-').collect(),
                seen.as_str().split('-').collect(),
            );
            assert_eq!(got[1], sent[1], "one trace id: {carried:?} {seen:?}");
            assert_ne!(got[2], sent[2], "a span of its own");
        });
    }

    #[test]
    fn without_an_exported_span_there_is_no_current_context() {
        let span = tracing::info_span!("untraced");
        let _entered = span.enter();
        assert_eq!(TraceParent::current(), None);
    }
}
