//! rumqttc clients (v3.1.1 and v5) driven from a background task, with their
//! events forwarded to a channel a test can wait on.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc::{self, UnboundedReceiver};

use rumqttc::v5::mqttbytes::v5 as p5;

/// Polls a rumqttc event loop in a task and forwards what it receives; the
/// task ends with the connection or when the receiver is dropped.
macro_rules! forward_incoming {
    ($eventloop:expr, $incoming:path) => {{
        let mut eventloop = $eventloop;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(event) = eventloop.poll().await {
                if let $incoming(p) = event
                    && tx.send(p).is_err()
                {
                    return;
                }
            }
        });
        rx
    }};
}

/// The first packet `pick` accepts within [`crate::WAIT`]; others are skipped.
async fn next_matching<P: Debug, T>(
    events: &mut UnboundedReceiver<P>,
    what: &str,
    pick: impl Fn(P) -> Option<T>,
) -> T {
    loop {
        match tokio::time::timeout(crate::WAIT, events.recv()).await {
            Ok(Some(p)) => {
                if let Some(t) = pick(p) {
                    return t;
                }
            }
            other => panic!("no {what} in time: {other:?}"),
        }
    }
}

/// Panics if `is_publish` accepts anything arriving within `wait`.
async fn expect_none<P: Debug>(
    events: &mut UnboundedReceiver<P>,
    wait: Duration,
    is_publish: impl Fn(&P) -> bool,
) {
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(p)) = tokio::time::timeout_at(deadline, events.recv()).await {
        assert!(!is_publish(&p), "unexpected PUBLISH: {p:?}");
    }
}

/// rumqttc v5 client plus its incoming packets.
pub struct V5 {
    pub client: rumqttc::v5::AsyncClient,
    pub events: UnboundedReceiver<p5::Packet>,
}

pub fn v5_options(addr: SocketAddr, client_id: &str) -> rumqttc::v5::MqttOptions {
    let mut o = rumqttc::v5::MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o
}

/// v5 options for MQTT over WebSocket at `ws://addr/mqtt`.
pub fn v5_ws_options(addr: SocketAddr, client_id: &str) -> rumqttc::v5::MqttOptions {
    // With Transport::Ws rumqttc takes host and port from the URL.
    let mut o = rumqttc::v5::MqttOptions::new(client_id, format!("ws://{addr}/mqtt"), addr.port());
    o.set_transport(rumqttc::Transport::Ws);
    o.set_keep_alive(Duration::from_secs(30));
    o
}

impl V5 {
    /// Connects and waits for CONNACK; panics if refused.
    pub async fn connect(options: rumqttc::v5::MqttOptions) -> (V5, p5::ConnAck) {
        let (client, eventloop) = rumqttc::v5::AsyncClient::new(options, 64);
        let mut events = forward_incoming!(eventloop, rumqttc::v5::Event::Incoming);
        let connack = next_matching(&mut events, "CONNACK", |p| match p {
            p5::Packet::ConnAck(c) => Some(c),
            _ => None,
        })
        .await;
        (V5 { client, events }, connack)
    }

    /// The next incoming PUBLISH.
    pub async fn next_publish(&mut self) -> p5::Publish {
        next_matching(&mut self.events, "PUBLISH", |p| match p {
            p5::Packet::Publish(p) => Some(p),
            _ => None,
        })
        .await
    }

    /// The next incoming packet of any kind.
    pub async fn next_packet(&mut self) -> p5::Packet {
        next_matching(&mut self.events, "packet", Some).await
    }

    /// Subscribes to `filter` at QoS 1 and waits for the SUBACK (packets
    /// before it are skipped); panics unless it granted the subscription.
    pub async fn subscribe_acked(&mut self, filter: &str) {
        self.client
            .subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
            .await
            .unwrap();
        let ack = next_matching(&mut self.events, "SUBACK", |p| match p {
            p5::Packet::SubAck(a) => Some(a),
            _ => None,
        })
        .await;
        let granted =
            |r: &p5::SubscribeReasonCode| matches!(r, p5::SubscribeReasonCode::Success(_));
        assert!(ack.return_codes.iter().all(granted), "{filter}: {ack:?}");
    }

    /// Asserts no PUBLISH arrives within `wait`.
    pub async fn expect_no_publish(&mut self, wait: Duration) {
        expect_none(&mut self.events, wait, |p| {
            matches!(p, p5::Packet::Publish(_))
        })
        .await
    }
}

/// rumqttc 3.1.1 client plus its incoming packets.
pub struct V3 {
    pub client: rumqttc::AsyncClient,
    pub events: UnboundedReceiver<rumqttc::Packet>,
}

pub fn v3_options(addr: SocketAddr, client_id: &str) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o
}

/// 3.1.1 options for MQTT over WebSocket at `ws://addr/mqtt`.
pub fn v3_ws_options(addr: SocketAddr, client_id: &str) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(client_id, format!("ws://{addr}/mqtt"), addr.port());
    o.set_transport(rumqttc::Transport::Ws);
    o.set_keep_alive(Duration::from_secs(30));
    o
}

impl V3 {
    /// Connects and waits for CONNACK; panics if refused.
    pub async fn connect(options: rumqttc::MqttOptions) -> (V3, rumqttc::ConnAck) {
        let (client, eventloop) = rumqttc::AsyncClient::new(options, 64);
        let mut events = forward_incoming!(eventloop, rumqttc::Event::Incoming);
        let connack = next_matching(&mut events, "CONNACK", |p| match p {
            rumqttc::Packet::ConnAck(c) => Some(c),
            _ => None,
        })
        .await;
        (V3 { client, events }, connack)
    }

    /// The next incoming packet of any kind.
    pub async fn next_packet(&mut self) -> rumqttc::Packet {
        next_matching(&mut self.events, "packet", Some).await
    }

    /// Subscribes to `filter` at QoS 1 and waits for the SUBACK (packets
    /// before it are skipped); panics unless it granted the subscription.
    pub async fn subscribe_acked(&mut self, filter: &str) {
        self.client
            .subscribe(filter, rumqttc::QoS::AtLeastOnce)
            .await
            .unwrap();
        let ack = next_matching(&mut self.events, "SUBACK", |p| match p {
            rumqttc::Packet::SubAck(a) => Some(a),
            _ => None,
        })
        .await;
        let granted = |r: &rumqttc::SubscribeReasonCode| {
            matches!(r, rumqttc::SubscribeReasonCode::Success(_))
        };
        assert!(ack.return_codes.iter().all(granted), "{filter}: {ack:?}");
    }

    /// The next incoming PUBLISH.
    pub async fn next_publish(&mut self) -> rumqttc::Publish {
        next_matching(&mut self.events, "PUBLISH", |p| match p {
            rumqttc::Packet::Publish(p) => Some(p),
            _ => None,
        })
        .await
    }

    /// Asserts no PUBLISH arrives within `wait`.
    pub async fn expect_no_publish(&mut self, wait: Duration) {
        expect_none(&mut self.events, wait, |p| {
            matches!(p, rumqttc::Packet::Publish(_))
        })
        .await
    }
}
