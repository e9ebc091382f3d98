//! Readiness changes, logged once each. A load balancer or orchestrator
//! asks `/readyz` every few seconds: an unready answer logged at every
//! probe would drown the log (and page someone at ERROR for what is a
//! state, not a fault). A process logs when it becomes unready (WARN, with
//! the reason, again if the reason changes) and when it is ready again (INFO).

use parking_lot::Mutex;

/// What the last `/readyz` answer said, to log only its changes.
#[derive(Debug, Default)]
pub struct ReadinessLog {
    /// None until the first answer; then Ok, or Err with the reason.
    last: Mutex<Option<Result<(), String>>>,
}

impl ReadinessLog {
    pub const fn new() -> ReadinessLog {
        ReadinessLog {
            last: parking_lot::const_mutex(None),
        }
    }

    /// Notes the answer `/readyz` gives now; logs it if it differs from the
    /// last one. Returns whether it did.
    pub fn observe(&self, now: Result<(), &str>) -> bool {
        let mut last = self.last.lock();
        let unchanged = last
            .as_ref()
            .is_some_and(|l| l.as_ref().map(|_| ()).map_err(String::as_str) == now);
        if unchanged {
            return false;
        }
        match now {
            Ok(()) if last.is_some() => tracing::info!("ready again"),
            Ok(()) => tracing::info!("ready"),
            Err(reason) => tracing::warn!(%reason, "not ready"),
        }
        *last = Some(now.map_err(str::to_owned));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::ReadinessLog;

    #[test]
    fn only_changes_are_logged() {
        let log = ReadinessLog::new();
        assert!(log.observe(Err("NATS is not connected")));
        assert!(!log.observe(Err("NATS is not connected")), "the same again");
        assert!(log.observe(Err("no facts yet")), "another reason");
        assert!(log.observe(Ok(())));
        assert!(!log.observe(Ok(())));
        assert!(log.observe(Err("no facts yet")));
    }
}
