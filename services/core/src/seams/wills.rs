//! Wills kept off the node: a connection's will lives in its gateway's
//! memory, and a gateway that dies without a word would take it along. The
//! scale-out shape keeps each standing will where a surviving node finds
//! it and publishes it when the node that held it is gone.

use std::sync::Arc;

use aerie_proto::Will;

use super::{BoxFuture, Claim};
use crate::session::Session;

/// Where the wills of this node's connections are kept for other nodes.
/// Called once per CONNECT and once when a will stops standing here; never
/// per message.
pub trait Wills: Send + Sync + 'static {
    /// A connection attached to `session` with `will` (None: without one),
    /// its session expiry `expiry` (which bounds the will's delay). The
    /// will is kept until [`Wills::ended`]; without one, whatever this
    /// node kept for the client id goes, and so does another node's when
    /// `claim` took the client id over from it (a new connection cancels a
    /// will still waiting for its delay). The CONNECT waits for the
    /// returned future: a will is kept before its CONNACK is sent.
    fn connected(
        &self,
        session: &Arc<Session>,
        connection: u64,
        will: Option<&Will>,
        expiry: u32,
        claim: Claim,
    ) -> BoxFuture<()>;

    /// Connection `connection` of `session` closed and its `will` waits
    /// for its delay (at most `expiry`, the session's expiry as the
    /// connection left it): kept with the moment it started waiting, so
    /// another node counts the delay from there, not from this node's death.
    fn waiting(&self, session: &Arc<Session>, connection: u64, will: &Will, expiry: u32);

    /// The will of `client_id`'s connection `connection` (None: whichever
    /// connected here last) no longer stands: this node published it, or
    /// MQTT discarded it (a normal DISCONNECT, the session ended, a
    /// shutdown). What this node kept for it goes, unless a later
    /// connection (here or on another node) wrote it since.
    fn ended(&self, tenant: &Arc<str>, client_id: &Arc<str>, connection: Option<u64>);
}

/// The embedded shape: one process, whose wills die with it and its
/// clients' connections alike; nothing is kept elsewhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalWills;

impl Wills for LocalWills {
    fn connected(
        &self,
        _session: &Arc<Session>,
        _connection: u64,
        _will: Option<&Will>,
        _expiry: u32,
        _claim: Claim,
    ) -> BoxFuture<()> {
        Box::pin(std::future::ready(()))
    }

    fn waiting(&self, _session: &Arc<Session>, _connection: u64, _will: &Will, _expiry: u32) {}

    fn ended(&self, _tenant: &Arc<str>, _client_id: &Arc<str>, _connection: Option<u64>) {}
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use aerie_proto::{QoS, WillProperties};
    use parking_lot::Mutex;

    use super::*;
    use crate::seams::Seams;
    use crate::{Broker, CoreConfig, NullStore};

    /// Says what the core asked, in order.
    #[derive(Default)]
    struct RecordingWills(Mutex<Vec<String>>);

    impl Wills for RecordingWills {
        fn connected(
            &self,
            session: &Arc<Session>,
            connection: u64,
            will: Option<&Will>,
            expiry: u32,
            claim: Claim,
        ) -> BoxFuture<()> {
            let will = will.map_or("none".to_owned(), |w| w.topic.to_string());
            self.0.lock().push(format!(
                "connected {} #{connection} {will} expiry {expiry} {claim:?}",
                session.client_id
            ));
            Box::pin(std::future::ready(()))
        }

        fn waiting(&self, session: &Arc<Session>, connection: u64, _will: &Will, expiry: u32) {
            self.0.lock().push(format!(
                "waiting {} #{connection} expiry {expiry}",
                session.client_id
            ));
        }

        fn ended(&self, _tenant: &Arc<str>, client_id: &Arc<str>, connection: Option<u64>) {
            self.0
                .lock()
                .push(format!("ended {client_id} {connection:?}"));
        }
    }

    fn will(delay: Option<u32>) -> Will {
        Will {
            topic: "will/c".into(),
            payload: bytes::Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: WillProperties {
                will_delay_interval: delay,
                ..Default::default()
            },
        }
    }

    fn broker(wills: Arc<RecordingWills>) -> Broker {
        let seams = Seams {
            wills,
            ..Seams::embedded()
        };
        Broker::with_seams(CoreConfig::default(), Arc::new(NullStore::new()), seams)
    }

    #[tokio::test]
    async fn a_will_stands_from_its_connect_until_a_normal_disconnect_discards_it() {
        let wills = Arc::new(RecordingWills::default());
        let tenant = broker(wills.clone()).tenant("t");
        let w = will(None);
        let s = tenant
            .attach_with_will("c", true, 0, 1, Some(&w))
            .await
            .unwrap()
            .session;
        let plain = tenant.attach("p", true, 0, 2).await.unwrap().session;
        tenant.detach(&s, 1, Default::default(), None);
        tenant.detach(&plain, 2, Default::default(), None);
        assert_eq!(
            *wills.0.lock(),
            [
                "connected c #1 will/c expiry 0 Claimed",
                "connected p #2 none expiry 0 Claimed",
                "ended c Some(1)",
                "ended p Some(2)",
            ]
        );
    }

    /// A persistent session of "c" whose connection 1, with a will
    /// delayed 5 s, has just dropped; what the seam was told.
    async fn dropped_with_a_delayed_will() -> (Arc<crate::Tenant>, Arc<RecordingWills>) {
        let wills = Arc::new(RecordingWills::default());
        let tenant = broker(wills.clone()).tenant("t");
        let w = will(Some(5));
        let s = tenant
            .attach_with_will("c", false, 60, 1, Some(&w))
            .await
            .unwrap()
            .session;
        tenant.detach(&s, 1, Default::default(), Some(w));
        (tenant, wills)
    }

    #[tokio::test(start_paused = true)]
    async fn a_delayed_will_stands_until_its_own_node_publishes_it() {
        let (_tenant, wills) = dropped_with_a_delayed_will().await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(
            *wills.0.lock(),
            [
                "connected c #1 will/c expiry 60 Claimed",
                "waiting c #1 expiry 60",
            ],
            "still waiting"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(wills.0.lock().last().unwrap(), "ended c Some(1)");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_back_before_the_delay_replaces_the_will_and_the_old_timer_ends_nothing() {
        let (tenant, wills) = dropped_with_a_delayed_will().await;
        tenant.attach("c", false, 60, 2).await.unwrap();
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(
            *wills.0.lock(),
            [
                "connected c #1 will/c expiry 60 Claimed",
                "waiting c #1 expiry 60",
                "connected c #2 none expiry 60 Claimed",
                // The first connection's timer: for connection 1 only, which
                // the seam no longer holds.
                "ended c Some(1)",
            ]
        );
    }
}
