//! The session half of a tenant: sessions by client id, and their life
//! cycle: attach (takeover, resume, clean start), detach, expiry and wills.
//! Subscriptions and wills go through the tenant's [`Router`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aerie_proto::{ReasonCode, Will};
use parking_lot::Mutex;
use tokio::time::Instant;

use super::{Attachment, Router};
use crate::config::CoreConfig;
use crate::message::{Message, MessageId};
use crate::metrics as m;
use crate::seams::{BoxFuture, Resumed, Seams, SessionOwners, SessionRecords, Wills, WindowChange};
use crate::session::{FlightState, Kick, Session};
use crate::store::{LoadedSession, TenantStore, unix_ms_now};

pub struct SessionTable {
    tenant: Arc<str>,
    config: Arc<CoreConfig>,
    router: Arc<Router>,
    owners: Arc<dyn SessionOwners>,
    /// Where persistent sessions are kept off the node (embedded: nowhere).
    records: Arc<dyn SessionRecords>,
    /// Where this node's standing wills are kept for other nodes
    /// (embedded: nowhere).
    wills: Arc<dyn Wills>,
    sessions: Mutex<HashMap<Arc<str>, Arc<Session>>>,
    /// Client ids with an attach under way (and how many): a session that
    /// such an attach replaces ends without releasing the ownership the
    /// attach has just claimed.
    attaching: Mutex<HashMap<Arc<str>, usize>>,
    session_ids: Arc<AtomicU64>,
    store: Arc<TenantStore>,
    /// Set once the tenant is deleted: its timers (session expiry, delayed
    /// wills) end early on it.
    deleted: tokio::sync::watch::Sender<bool>,
}

impl SessionTable {
    pub(crate) fn new(
        tenant: Arc<str>,
        config: Arc<CoreConfig>,
        router: Arc<Router>,
        seams: &Seams,
        session_ids: Arc<AtomicU64>,
        store: Arc<TenantStore>,
    ) -> SessionTable {
        SessionTable {
            tenant,
            config,
            router,
            owners: seams.owners.clone(),
            records: seams.records.clone(),
            wills: seams.wills.clone(),
            sessions: Mutex::new(HashMap::new()),
            attaching: Mutex::new(HashMap::new()),
            session_ids,
            store,
            deleted: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Attaches a connection to the session of `client_id`: takes an attached
    /// one over (its connection is asked to close with 0x8E and hands the
    /// session back), resumes a persistent one, or starts a new one. The
    /// connection's `will` is kept off the node before this returns.
    pub async fn attach(
        &self,
        client_id: &str,
        clean_start: bool,
        expiry_interval: u32,
        connection_id: u64,
        will: Option<&Will>,
    ) -> Result<Attachment, ReasonCode> {
        // Across nodes first: another node holding it lets go (0x8E there).
        let client: Arc<str> = Arc::from(client_id);
        let _attaching = Attaching::new(self, &client);
        let claim = self
            .owners
            .claim(&self.tenant, &client, clean_start)
            .await?;
        // Another node's record of the session: starts over, or resumes here.
        let mut kept = None;
        if clean_start {
            self.records.ended(&self.tenant, &client, true);
        } else if self.session(client_id).is_none() {
            kept = self
                .records
                .resume(&self.tenant, &client, self.offline_queue_bound())
                .await;
        }
        let deadline = Instant::now() + self.config.takeover_timeout;
        loop {
            // Decide under the map lock; wait (if we must) after releasing it.
            let step = {
                let mut sessions = self.sessions.lock();
                match sessions.get(client_id).cloned() {
                    Some(session) if session.is_attached() => TakeoverStep::Wait(session),
                    Some(old) if clean_start => {
                        sessions.remove(client_id);
                        TakeoverStep::Proceed(None, Some(old))
                    }
                    Some(old) => TakeoverStep::Proceed(Some(old), None),
                    None => TakeoverStep::Proceed(None, None),
                }
            };
            let resumed = match step {
                TakeoverStep::Wait(session) => {
                    let detached = session.detached();
                    tokio::pin!(detached);
                    detached.as_mut().enable();
                    session.kick(Kick::TAKEN_OVER);
                    if session.is_attached()
                        && tokio::time::timeout_at(deadline, detached).await.is_err()
                    {
                        return Err(ReasonCode::SERVER_BUSY);
                    }
                    continue;
                }
                TakeoverStep::Proceed(resumed, ended) => {
                    if let Some(old) = ended {
                        // Ending the session ends a will's delay (MQTT 5 §3.1.3.2.2).
                        let will = old.take_pending_will();
                        self.end_session(&old);
                        if let Some(will) = will {
                            self.publish_will(old.id, will);
                        }
                    }
                    resumed
                }
            };
            let mut session_present = resumed.is_some();
            let session = match resumed {
                Some(s) => s,
                None => {
                    let id = self.session_ids.fetch_add(1, Ordering::Relaxed) + 1;
                    let s = Arc::new(Session::new(
                        id,
                        self.tenant.clone(),
                        Arc::from(client_id),
                        expiry_interval,
                        self.store.clone(),
                    ));
                    if !self.insert_new(client_id, &s) {
                        // Another connection for this id got in between: start over.
                        continue;
                    }
                    metrics::gauge!(m::SESSIONS).increment(1.0);
                    if let Some(kept) = kept.take() {
                        self.resume_kept(&s, kept).await;
                        session_present = true;
                    }
                    s
                }
            };
            let Some(flight) = session.attach_connection(connection_id, expiry_interval) else {
                continue;
            };
            self.records.changed(&session);
            self.wills
                .connected(&session, connection_id, will, expiry_interval, claim)
                .await;
            return Ok(Attachment {
                session,
                session_present,
                flight,
            });
        }
    }

    /// Puts a new session in the table unless one of its client id is
    /// there already.
    fn insert_new(&self, client_id: &str, session: &Arc<Session>) -> bool {
        let mut sessions = self.sessions.lock();
        if sessions.contains_key(client_id) {
            return false;
        }
        sessions.insert(Arc::from(client_id), session.clone());
        true
    }

    /// Detaches a connection from its session. `will` is the will to publish
    /// (None after a normal DISCONNECT); `expiry_interval` is the session's
    /// final expiry (0 ends it now).
    pub fn detach(
        self: &Arc<Self>,
        session: &Arc<Session>,
        connection_id: u64,
        flight: FlightState,
        will: Option<Will>,
    ) {
        let Some(detached) =
            session.detach_connection(connection_id, flight, self.config.queue_qos0_offline)
        else {
            return;
        };
        let (expiry, generation) = (detached.expiry_interval, detached.generation);
        self.router.redispatch_shared(session, detached.orphans);

        if expiry == 0 {
            self.remove_session(session);
            if let Some(will) = will {
                self.publish_will(session.id, will);
            }
            self.will_ended(session, Some(connection_id));
            return;
        }
        self.records.changed(session);
        self.schedule_expiry(session, generation, expiry);
        let Some(will) = will else {
            // A normal DISCONNECT: the will is discarded.
            self.will_ended(session, Some(connection_id));
            return;
        };
        let delay = will.properties.will_delay_interval.unwrap_or(0);
        if delay == 0 {
            self.publish_will(session.id, will);
            self.will_ended(session, Some(connection_id));
        } else {
            // Kept off the node while it waits: if this node dies, another
            // publishes it, counting the delay from now.
            self.wills.waiting(session, connection_id, &will, expiry);
            session.set_pending_will(will, generation);
            let tenant = self.clone();
            let s = session.clone();
            let wait = Duration::from_secs(u64::from(delay.min(expiry)));
            let mut deleted = self.deleted.subscribe();
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {
                        tenant.fire_pending_will(&s, generation);
                        tenant.will_ended(&s, Some(connection_id));
                    }
                    _ = deleted.wait_for(|d| *d) => {}
                }
            });
        }
    }

    pub(crate) fn will_discarded(&self, session: &Session, connection_id: u64) {
        self.will_ended(session, Some(connection_id));
    }

    /// The will of `session`'s connection `connection` (None: any) no
    /// longer stands here: what was kept of it off the node goes.
    fn will_ended(&self, session: &Session, connection: Option<u64>) {
        self.wills
            .ended(&self.tenant, &session.client_id, connection);
    }

    /// Ends a detached session after `expiry` seconds unless it is attached again.
    fn schedule_expiry(self: &Arc<Self>, session: &Arc<Session>, generation: u64, expiry: u32) {
        if expiry != u32::MAX {
            let tenant = self.clone();
            let s = session.clone();
            let mut deleted = self.deleted.subscribe();
            tokio::spawn(async move {
                let wait = tokio::time::sleep(Duration::from_secs(u64::from(expiry)));
                tokio::select! {
                    _ = wait => {}
                    _ = deleted.wait_for(|d| *d) => return,
                }
                if s.detached_since(generation) {
                    tenant.fire_pending_will(&s, generation);
                    tenant.remove_session(&s);
                }
            });
        }
    }

    fn fire_pending_will(&self, session: &Arc<Session>, generation: u64) {
        if let Some(will) = session.take_pending_will_of(generation) {
            self.publish_will(session.id, will);
        }
    }

    pub(crate) fn publish_will(&self, origin: u64, will: Will) {
        let properties = crate::message::will_publish_properties(will.properties);
        self.router.publish(Message::published(
            will.topic,
            will.payload,
            will.qos,
            will.retain,
            properties,
            self.router.node().origin(origin),
            self.router.node().next_message_id(),
        ));
    }

    /// Removes a session from the map (if it is still the current one for its
    /// client id) and ends it.
    fn remove_session(&self, session: &Arc<Session>) {
        let mut sessions = self.sessions.lock();
        if sessions
            .get(&session.client_id)
            .is_some_and(|s| Arc::ptr_eq(s, session))
        {
            sessions.remove(&session.client_id);
            if !self.attaching.lock().contains_key(&session.client_id) {
                self.owners.release(&self.tenant, &session.client_id);
                self.records.ended(&self.tenant, &session.client_id, false);
            }
        }
        drop(sessions);
        self.end_session(session);
    }

    /// Another node took `client_id`'s session over: the connection attached
    /// here, if any, is asked to close with 0x8E. Returns whether one was.
    pub fn taken_over_elsewhere(&self, client_id: &str) -> bool {
        let Some(session) = self.session(client_id) else {
            return false;
        };
        let attached = session.is_attached();
        session.kick(Kick::TAKEN_OVER);
        if !attached {
            self.let_go(&session);
        }
        attached
    }

    /// Ends a detached session another node holds now: its record and
    /// ownership are that node's, so neither is touched (the owner calls
    /// again once a kicked connection detached).
    fn let_go(&self, session: &Arc<Session>) {
        let mut sessions = self.sessions.lock();
        let current = sessions
            .get(&session.client_id)
            .is_some_and(|s| Arc::ptr_eq(s, session));
        if !current
            || session.is_attached()
            || self.attaching.lock().contains_key(&session.client_id)
        {
            return;
        }
        sessions.remove(&session.client_id);
        drop(sessions);
        self.end_session(session);
        // Its will waiting for its delay ended with it.
        self.will_ended(session, None);
    }

    /// Drops a session's subscriptions and queue. Idempotent.
    fn end_session(&self, session: &Arc<Session>) {
        let Some(filters) = session.end() else {
            return;
        };
        self.router.drop_subscriptions(session, &filters);
        metrics::gauge!(m::SESSIONS).decrement(1.0);
    }

    /// A persistent session's subscriptions or expiry changed: its record
    /// off the node follows.
    pub(crate) fn record_changed(&self, session: &Arc<Session>) {
        self.records.changed(session);
    }

    /// Fills a new session from another node's record: its subscriptions
    /// (live here before the replay reads the log, so nothing falls
    /// between), then what it missed, within its offline queue bound.
    async fn resume_kept(&self, session: &Arc<Session>, kept: Resumed) {
        let live = self
            .router
            .resume_subscriptions(session, &kept.subscriptions);
        session.restore(&kept.subscriptions, Vec::new(), Vec::new());
        session.restore_recorded_qos2(kept.inbound_qos2);
        futures_util::future::join_all(live).await;
        let replayed = kept.replay.await;
        let deliveries = super::resume::replayed_deliveries(&kept.subscriptions, replayed);
        let resent =
            super::resume::in_flight_again(&kept.outbound, &kept.completed_qos2, deliveries);
        session.restore_flights(resent.flights);
        if !resent.forgotten.is_empty() {
            let _ = self
                .records
                .window_changed(session, resent.forgotten, false);
        }
        session.queue_replayed(resent.queued, self.offline_queue_bound());
    }

    /// See [`SessionRecords::keep_inbound_qos2`].
    pub(crate) fn keep_inbound_qos2(
        &self,
        session: &Arc<Session>,
        packet_id: u16,
        id: MessageId,
    ) -> Option<BoxFuture<bool>> {
        self.records.keep_inbound_qos2(session, packet_id, id)
    }

    pub(crate) fn released_inbound_qos2(
        &self,
        session: &Arc<Session>,
        packet_id: u16,
    ) -> Option<BoxFuture<bool>> {
        self.records.released_inbound_qos2(session, packet_id)
    }

    pub(crate) fn keeps_windows(&self) -> bool {
        self.records.keeps_windows()
    }

    pub(crate) fn window_changed(
        &self,
        session: &Arc<Session>,
        changes: Vec<WindowChange>,
        wait: bool,
    ) -> Option<BoxFuture<bool>> {
        self.records.window_changed(session, changes, wait)
    }

    /// The most messages an offline session of this tenant holds.
    fn offline_queue_bound(&self) -> usize {
        self.config
            .max_queued_messages
            .min(self.router.offline_queue_limit())
    }

    /// Recreates a stored session, detached, with its subscriptions, queue
    /// and inbound QoS 2 ids; its expiry clock continues from the record.
    pub(crate) fn restore_session(self: &Arc<Self>, loaded: LoadedSession) {
        let id = self.session_ids.fetch_add(1, Ordering::Relaxed) + 1;
        let expiry = loaded.record.expiry_interval;
        let session = Arc::new(Session::new(
            id,
            self.tenant.clone(),
            loaded.client_id.clone(),
            expiry,
            self.store.clone(),
        ));
        self.router
            .restore_subscriptions(&session, &loaded.record.subscriptions);
        session.restore(
            &loaded.record.subscriptions,
            loaded.queue,
            loaded.inbound_qos2,
        );
        self.sessions
            .lock()
            .insert(loaded.client_id, session.clone());
        metrics::gauge!(m::SESSIONS).increment(1.0);
        let remaining = match (loaded.record.expires_at_ms, expiry) {
            (_, u32::MAX) => u32::MAX,
            // Attached when the process stopped: the clock starts now.
            (None, e) => e,
            (Some(at), _) => u32::try_from(at.saturating_sub(unix_ms_now()).div_ceil(1000))
                .unwrap_or(u32::MAX - 1),
        };
        self.schedule_expiry(&session, 1, remaining);
    }

    /// Messages queued in all of this tenant's sessions (for the queue-depth gauge).
    pub fn queued_messages(&self) -> usize {
        let sessions: Vec<_> = self.sessions.lock().values().cloned().collect();
        sessions.iter().map(|s| s.queued()).sum()
    }

    pub fn session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    pub fn session(&self, client_id: &str) -> Option<Arc<Session>> {
        self.sessions.lock().get(client_id).cloned()
    }

    /// Asks every attached connection to close (server shutdown, tenant suspended).
    pub fn kick_all(&self, kick: Kick) {
        let sessions: Vec<_> = self.sessions.lock().values().cloned().collect();
        for s in sessions {
            s.kick(kick);
        }
    }

    /// Ends the tenant's timers (the tenant was deleted).
    pub(crate) fn mark_deleted(&self) {
        self.deleted.send_replace(true);
    }

    /// Ends every session (the tenant was deleted).
    pub(crate) fn end_all(&self) {
        let sessions: Vec<_> = self.sessions.lock().drain().map(|(_, s)| s).collect();
        for s in &sessions {
            self.end_session(s);
            self.records.ended(&self.tenant, &s.client_id, false);
        }
    }
}

/// Marks an attach of a client id as under way while it lives.
struct Attaching<'a> {
    table: &'a SessionTable,
    client: Arc<str>,
}

impl<'a> Attaching<'a> {
    fn new(table: &'a SessionTable, client: &Arc<str>) -> Attaching<'a> {
        *table.attaching.lock().entry(client.clone()).or_insert(0) += 1;
        Attaching {
            table,
            client: client.clone(),
        }
    }
}

impl Drop for Attaching<'_> {
    fn drop(&mut self) {
        let mut attaching = self.table.attaching.lock();
        if let Some(n) = attaching.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                attaching.remove(&self.client);
            }
        }
    }
}

enum TakeoverStep {
    /// The session is attached elsewhere: kick that connection and wait.
    Wait(Arc<Session>),
    /// Go ahead: resume this session (if any), after ending that one (if any).
    Proceed(Option<Arc<Session>>, Option<Arc<Session>>),
}
