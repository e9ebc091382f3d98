//! One timer for every connection's deadlines (keep alive, token expiry,
//! held acks, a stalled socket). A tokio timer is 112 bytes inside each
//! connection's task for the connection's whole life; an entry here is 16
//! bytes in a slot, only while its deadline is pending.
//!
//! Coarse on purpose: an entry fires up to one tick (64 ms) after its
//! deadline, never before (MQTT's deadlines are seconds). A deadline past
//! the horizon (about 131 s) fires at the horizon: [`arm`] says when, and
//! the connection, woken with nothing due, arms again.
//!
//! Process-wide and driven by one OS thread rather than a task: it serves
//! every runtime (each test has its own), and what it does on a deadline,
//! waking the session's connection, needs no runtime.

use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

use aerie_core::Session;
use parking_lot::{Condvar, Mutex};
use tokio::time::Instant;

const TICK: Duration = Duration::from_millis(64);
const SLOTS: u32 = 2048;

/// Wakes `session`'s connection (`Session::wake_connection`) at `at` or up
/// to one tick later, or at the horizon if `at` is beyond it. Returns the
/// tick it fires at: the connection arms again once it has [`passed`].
pub(crate) fn arm(at: Instant, session: &Arc<Session>) -> u32 {
    WHEEL.arm(at.into_std(), Arc::downgrade(session))
}

/// The tick an entry armed for `at` would fire at, horizon aside: two
/// deadlines with the same tick need one entry.
pub(crate) fn tick_of(at: Instant) -> u32 {
    WHEEL.tick_of(at.into_std())
}

/// Whether `tick`'s time has come by `now`.
pub(crate) fn passed(tick: u32, now: Instant) -> bool {
    WHEEL.time_of(tick) <= now.into_std()
}

static WHEEL: LazyLock<Wheel> = LazyLock::new(Wheel::new);

struct Wheel {
    origin: std::time::Instant,
    state: Mutex<State>,
    /// Signalled when the first entry is armed into an empty wheel.
    armed: Condvar,
}

struct State {
    /// The first tick the driver has not fired yet.
    next_tick: u32,
    /// Entries by `tick % SLOTS`, each with its tick: a slot may hold a
    /// later round's entry when the driver fell behind.
    slots: Vec<Vec<(u32, Weak<Session>)>>,
    len: usize,
    driver_started: bool,
}

impl Wheel {
    fn new() -> Wheel {
        Wheel {
            origin: std::time::Instant::now(),
            state: Mutex::new(State {
                next_tick: 0,
                slots: (0..SLOTS).map(|_| Vec::new()).collect(),
                len: 0,
                driver_started: false,
            }),
            armed: Condvar::new(),
        }
    }

    /// The first tick at or after `at` (rounded up: never early).
    fn tick_of(&self, at: std::time::Instant) -> u32 {
        let since = at.saturating_duration_since(self.origin);
        let ticks = since.as_nanos().div_ceil(TICK.as_nanos());
        u32::try_from(ticks).unwrap_or(u32::MAX)
    }

    fn time_of(&self, tick: u32) -> std::time::Instant {
        self.origin + TICK * tick
    }

    fn arm(&self, at: std::time::Instant, session: Weak<Session>) -> u32 {
        let mut state = self.state.lock();
        let tick = self
            .tick_of(at)
            .clamp(state.next_tick, state.next_tick.saturating_add(SLOTS - 1));
        state.slots[(tick % SLOTS) as usize].push((tick, session));
        state.len += 1;
        if !state.driver_started {
            let spawned = std::thread::Builder::new()
                .name("aerie-deadlines".into())
                .spawn(|| WHEEL.drive());
            match spawned {
                Ok(_) => state.driver_started = true,
                // Tried again by the next arm; meanwhile deadlines wait.
                Err(e) => tracing::error!(error = %e, "cannot start the deadline thread"),
            }
        }
        if state.len == 1 {
            self.armed.notify_one();
        }
        tick
    }

    /// The driver thread: every tick, wakes the connections whose deadlines
    /// passed; sleeps while nothing is armed.
    fn drive(&self) {
        let mut due = Vec::new();
        loop {
            let mut state = self.state.lock();
            while state.len == 0 {
                self.armed.wait(&mut state);
            }
            let now = self.tick_of(std::time::Instant::now()).saturating_sub(1);
            take_due(&mut state, now, &mut due);
            drop(state);
            for session in due.drain(..).filter_map(|s| s.upgrade()) {
                session.wake_connection();
            }
            std::thread::sleep(TICK);
        }
    }
}

/// Moves every entry of a tick up to `now` into `due`, and moves the
/// driver's position past `now`.
fn take_due(state: &mut State, now: u32, due: &mut Vec<Weak<Session>>) {
    if now < state.next_tick {
        return;
    }
    // Behind by a whole round or more: every slot is looked at once.
    let ticks = (now - state.next_tick + 1).min(SLOTS);
    for i in 0..ticks {
        let slot = &mut state.slots[((state.next_tick + i) % SLOTS) as usize];
        let before = slot.len();
        slot.retain(|(tick, session)| {
            if *tick <= now {
                due.push(session.clone());
                false
            } else {
                true
            }
        });
        state.len -= before - slot.len();
        if slot.is_empty() && slot.capacity() > 64 {
            // A burst of connections armed here once: not kept for ever.
            *slot = Vec::new();
        }
    }
    state.next_tick = now + 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State {
            next_tick: 10,
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            len: 0,
            driver_started: true,
        }
    }

    fn put(state: &mut State, tick: u32) {
        state.slots[(tick % SLOTS) as usize].push((tick, Weak::new()));
        state.len += 1;
    }

    #[test]
    fn only_entries_whose_tick_passed_are_due() {
        let mut s = state();
        put(&mut s, 11);
        put(&mut s, 12);
        // A later round's entry in the same slot as tick 11.
        put(&mut s, 11 + SLOTS);
        let mut due = Vec::new();
        take_due(&mut s, 11, &mut due);
        assert_eq!(due.len(), 1);
        assert_eq!(s.len, 2);
        assert_eq!(s.next_tick, 12);
        take_due(&mut s, 12, &mut due);
        assert_eq!(due.len(), 2);
        // Far behind: the later round's entry comes due with its own tick.
        take_due(&mut s, 11 + SLOTS, &mut due);
        assert_eq!(due.len(), 3);
        assert_eq!(s.len, 0);
    }

    #[test]
    fn nothing_is_due_before_its_tick() {
        let mut s = state();
        put(&mut s, 10);
        let mut due = Vec::new();
        take_due(&mut s, 9, &mut due);
        assert!(due.is_empty());
        assert_eq!(s.len, 1);
    }

    #[test]
    fn ticks_round_up_so_a_deadline_never_fires_early() {
        let wheel = Wheel::new();
        let at = wheel.origin + TICK * 3 + Duration::from_millis(1);
        assert_eq!(wheel.tick_of(at), 4);
        assert!(wheel.time_of(wheel.tick_of(at)) >= at);
        assert_eq!(wheel.tick_of(wheel.origin + TICK * 3), 3);
    }
}
