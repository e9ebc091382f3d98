//! Publisher pacing: a publisher whose messages fill a subscriber's queue
//! waits a little for that subscriber to drain, within a budget, so a slow
//! subscriber costs each publisher a bounded share of its time and a stuck
//! one (whose socket takes nothing, see `Session::paces_publishers`) none.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Conn;

/// The longest single pause, so a publisher's own acks and pings still flow.
const MAX_PAUSE: Duration = Duration::from_millis(50);
/// At most this much pausing per `WINDOW`: whatever its subscribers do, a
/// publisher keeps at least 80% of its pace (a slowdown of at most 1.25×).
const BUDGET: Duration = Duration::from_millis(200);
const WINDOW: Duration = Duration::from_secs(1);

/// What one publisher has spent of its pausing budget.
#[derive(Debug, Default)]
pub(crate) struct Pacing {
    window_start: Option<Instant>,
    spent: Duration,
}

impl Pacing {
    /// How long the publisher may pause now.
    fn allowance(&mut self, now: Instant) -> Duration {
        match self.window_start {
            Some(start) if now.saturating_duration_since(start) < WINDOW => {}
            _ => {
                self.window_start = Some(now);
                self.spent = Duration::ZERO;
            }
        }
        BUDGET.saturating_sub(self.spent).min(MAX_PAUSE)
    }

    fn spend(&mut self, paused: Duration) {
        self.spent += paused;
    }
}

impl Conn {
    /// Pauses (within the budget) while a subscriber this connection just
    /// published to is congested but still reading, so a fast publisher
    /// slows towards its subscribers' pace instead of overflowing their
    /// queues.
    pub(super) async fn pace_publisher(&mut self) {
        let Some(subscriber) = self.publishing.as_mut().and_then(|p| p.backpressure.take()) else {
            return;
        };
        if Arc::ptr_eq(&subscriber, &self.session) {
            return;
        }
        // Boxed: the pause (a notification and a timer) is rare, and inline
        // it would size every connection's task for its whole life.
        Box::pin(self.pause_for(subscriber)).await;
    }

    async fn pause_for(&mut self, subscriber: Arc<aerie_core::Session>) {
        let space = subscriber.space();
        tokio::pin!(space);
        // Registered before the check, so a drain in between is not missed.
        space.as_mut().enable();
        let now = Instant::now();
        if !subscriber.paces_publishers(self.tenant.config(), now) {
            return;
        }
        let Some(publishing) = self.publishing.as_mut() else {
            return;
        };
        let allowance = publishing.pacing.allowance(now);
        if allowance.is_zero() {
            return;
        }
        let _ = tokio::time::timeout(allowance, space).await;
        if let Some(publishing) = self.publishing.as_mut() {
            publishing.pacing.spend(now.elapsed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_add_up_to_the_budget_per_window_then_none() {
        let mut p = Pacing::default();
        let start = Instant::now();
        let mut now = start;
        let mut paused = Duration::ZERO;
        // A publisher that would pause the longest every time, 1 ms apart.
        while now - start < WINDOW {
            let a = p.allowance(now);
            assert!(a <= MAX_PAUSE);
            p.spend(a);
            paused += a;
            now += a + Duration::from_millis(1);
        }
        assert_eq!(paused, BUDGET, "one window's pauses");
        assert_eq!(p.allowance(now), MAX_PAUSE, "a new window");
    }
}
