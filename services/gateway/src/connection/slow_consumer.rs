//! The "no progress" clock of a connection's socket: how long bytes have
//! waited without the socket taking any. It tells publishers (through the
//! session) to stop pacing for a stuck subscriber, and closes a subscriber
//! whose socket stayed stuck for `--slow-consumer-timeout` while its queue
//! overflowed: a slow consumer costs itself, never its tenant.

use std::time::Duration;

use aerie_core::Session;
use aerie_core::metrics as m;
use aerie_proto::ReasonCode;
use tokio::time::Instant;

use super::{Close, Conn};

/// How often a socket stuck past the timeout is checked again while its
/// queue still has room.
const RECHECK: Duration = Duration::from_secs(1);

/// `timeout` (`None`: never close a slow consumer) is passed to each call,
/// not kept: this is in every connection's task.
#[derive(Default)]
pub(crate) struct SocketClock {
    /// Since when bytes have waited without the socket taking any.
    waiting_since: Option<Instant>,
}

impl SocketClock {
    /// At each loop turn: starts the clock when bytes begin to wait, and
    /// sets `deadline` for when they would have waited too long.
    pub fn observe(
        &mut self,
        timeout: Option<Duration>,
        now: impl FnOnce() -> Instant,
        pending: bool,
        session: &Session,
        deadline: &mut Option<Instant>,
    ) {
        if !pending || self.waiting_since.is_some() {
            return;
        }
        let now = now();
        self.waiting_since = Some(now);
        session.set_socket_waiting(Some(now));
        if let Some(timeout) = timeout
            && deadline.is_none_or(|d| d > now + timeout)
        {
            *deadline = Some(now + timeout);
        }
    }

    /// The socket took bytes; `pending`: some still wait.
    pub fn progressed(&mut self, now: impl FnOnce() -> Instant, pending: bool, session: &Session) {
        if pending {
            let now = now();
            self.waiting_since = Some(now);
            session.set_socket_waiting(Some(now));
        } else if self.waiting_since.take().is_some() {
            session.set_socket_waiting(None);
        }
    }

    /// When `deadline` passed: how long the socket has been stuck if the
    /// connection is a slow consumer now (stuck past the timeout with its
    /// queue overflowing); otherwise moves `deadline` and says `None`.
    pub fn check(
        &self,
        timeout: Option<Duration>,
        now: Instant,
        session: &Session,
        deadline: &mut Option<Instant>,
    ) -> Option<Duration> {
        *deadline = match (timeout, self.waiting_since) {
            (Some(timeout), Some(since)) if now >= since + timeout => {
                if session.is_overflowing() {
                    return Some(now - since);
                }
                Some(now + RECHECK)
            }
            (Some(timeout), Some(since)) => Some(since + timeout),
            // Idle or never: `observe` sets it again when bytes wait.
            _ => None,
        };
        None
    }
}

impl Conn {
    /// Closes a subscriber that stopped reading: its queue's drops were
    /// counted already; this counts and logs the disconnect.
    pub(super) fn slow_consumer(&self, stalled: Duration) -> Close {
        metrics::counter!(m::SLOW_CONSUMERS_DISCONNECTED_TOTAL).increment(1);
        tracing::warn!(
            tenant = %self.tenant.id,
            client_id = %self.session.client_id,
            stalled_ms = stalled.as_millis() as u64,
            queued = self.session.queued(),
            "slow consumer disconnected: its socket took nothing while its queue was full"
        );
        // 0x97 "an implementation or administrative imposed limit has been
        // exceeded": the session's queue bound, which is the client's doing;
        // 0x89 "Server busy" would tell it to retry against a server that is fine.
        Close {
            disconnect: Some(ReasonCode::QUOTA_EXCEEDED),
            publish_will: true,
            why: "slow_consumer",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aerie_core::{Broker, CoreConfig, Delivery, Message};
    use aerie_proto::QoS;

    fn delivery() -> Delivery {
        let message = Message::published(
            "t".into(),
            bytes::Bytes::from_static(b"x"),
            QoS::AtMostOnce,
            false,
            Default::default(),
            Default::default(),
            Default::default(),
        );
        Delivery {
            message,
            qos: QoS::AtMostOnce,
            retain: false,
            subscription_ids: Default::default(),
            shared: None,
            stored_seq: None,
        }
    }

    #[tokio::test]
    async fn a_stuck_socket_is_a_slow_consumer_only_past_the_timeout_with_its_queue_overflowing() {
        let config = CoreConfig {
            max_queued_messages: 1,
            ..CoreConfig::default()
        };
        let broker = Broker::new(config.clone());
        let session = broker
            .tenant("t")
            .attach("c", true, 0, 1)
            .await
            .unwrap()
            .session;
        let timeout = Duration::from_secs(2);
        let mut clock = SocketClock::default();
        let on = Some(timeout);
        let mut deadline = None;
        let t0 = Instant::now();
        clock.observe(on, || t0, true, &session, &mut deadline);
        assert_eq!(deadline, Some(t0 + timeout), "armed for the timeout");
        // Publishers see it too (to the millisecond).
        let seen = session.socket_stalled_for(t0 + timeout);
        assert!(
            seen > timeout - Duration::from_millis(2) && seen <= timeout + Duration::from_millis(1)
        );

        assert_eq!(
            clock.check(on, t0 + timeout, &session, &mut deadline),
            None,
            "its queue still has room"
        );
        assert_eq!(deadline, Some(t0 + timeout + RECHECK));
        session.enqueue(delivery(), &config).unwrap();
        assert!(session.enqueue(delivery(), &config).is_err(), "full");
        let later = t0 + timeout + RECHECK;
        assert_eq!(
            clock.check(on, later, &session, &mut deadline),
            Some(timeout + RECHECK),
            "stuck and overflowing"
        );

        // The socket took bytes: the clock starts over.
        clock.progressed(|| later, true, &session);
        assert_eq!(clock.check(on, later, &session, &mut deadline), None);
        assert_eq!(deadline, Some(later + timeout));
        clock.progressed(|| later, false, &session);
        assert_eq!(session.socket_stalled_for(later + timeout), Duration::ZERO);

        let stuck = SocketClock {
            waiting_since: Some(t0),
        };
        assert_eq!(
            stuck.check(None, later, &session, &mut deadline),
            None,
            "never closed"
        );
    }
}
