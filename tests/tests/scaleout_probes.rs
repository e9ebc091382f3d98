//! `/readyz` of an `aerie gateway` probed while it is not ready (a real
//! nats-server, no control plane yet, so no facts): the log says so once
//! per reason, at WARN, not at ERROR at every probe; and once when it is
//! ready again.

use std::time::Duration;

use aerie_e2e::nats::{NatsServer, unique_prefix};
use aerie_e2e::scaleout::{Control, Gateway};

#[test]
fn an_unready_gateway_probed_again_and_again_logs_it_once_and_never_at_error() {
    let nats = NatsServer::shared();
    let prefix = unique_prefix();
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("gateway.log");
    let mut gateway = Gateway::start_logging(&nats.url(), &prefix, &log);
    for _ in 0..10 {
        assert_eq!(gateway.readyz(), 503, "no facts without a control plane");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _control = Control::start(&nats.url(), &prefix, &[]);
    gateway.wait_readyz(200, Duration::from_secs(20));
    for _ in 0..3 {
        assert_eq!(gateway.readyz(), 200);
    }

    let text = std::fs::read_to_string(&log).expect("the gateway's log");
    let lines = |what: &str| text.lines().filter(|l| l.contains(what)).count();
    assert_eq!(lines("ERROR"), 0, "{text}");
    // Once per reason (NATS, then the facts), not once per probe.
    assert!(lines("not ready") >= 1, "{text}");
    assert!(lines("not connected to NATS") <= 1, "{text}");
    assert!(lines("facts have not arrived") <= 1, "{text}");
    assert_eq!(lines("ready again"), 1, "{text}");
}
