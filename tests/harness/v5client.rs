//! rumqttc clients (v3.1.1 and v5) driven from a background task, with their
//! events forwarded to a channel a test can wait on.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;

/// rumqttc v5 client plus its incoming packets.
pub struct V5 {
    pub client: rumqttc::v5::AsyncClient,
    pub events: mpsc::UnboundedReceiver<rumqttc::v5::mqttbytes::v5::Packet>,
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
    pub async fn connect(
        options: rumqttc::v5::MqttOptions,
    ) -> (V5, rumqttc::v5::mqttbytes::v5::ConnAck) {
        let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 64);
        let (tx, mut events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::v5::Event::Incoming(p)) => {
                        if tx.send(p).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        let connack = loop {
            match tokio::time::timeout(crate::WAIT, events.recv()).await {
                Ok(Some(rumqttc::v5::mqttbytes::v5::Packet::ConnAck(c))) => break c,
                Ok(Some(_)) => continue,
                other => panic!("no CONNACK: {other:?}"),
            }
        };
        (V5 { client, events }, connack)
    }

    /// The next incoming PUBLISH.
    pub async fn next_publish(&mut self) -> rumqttc::v5::mqttbytes::v5::Publish {
        loop {
            match tokio::time::timeout(crate::WAIT, self.events.recv()).await {
                Ok(Some(rumqttc::v5::mqttbytes::v5::Packet::Publish(p))) => return p,
                Ok(Some(_)) => continue,
                other => panic!("no PUBLISH in time: {other:?}"),
            }
        }
    }

    /// The next incoming packet of any kind.
    pub async fn next_packet(&mut self) -> rumqttc::v5::mqttbytes::v5::Packet {
        match tokio::time::timeout(crate::WAIT, self.events.recv()).await {
            Ok(Some(p)) => p,
            other => panic!("no packet in time: {other:?}"),
        }
    }

    /// Asserts no PUBLISH arrives within `wait`.
    pub async fn expect_no_publish(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(p)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            if let rumqttc::v5::mqttbytes::v5::Packet::Publish(p) = p {
                panic!("unexpected PUBLISH on {:?}", p.topic);
            }
        }
    }
}

/// rumqttc 3.1.1 client plus its incoming packets.
pub struct V3 {
    pub client: rumqttc::AsyncClient,
    pub events: mpsc::UnboundedReceiver<rumqttc::Packet>,
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
    pub async fn connect(options: rumqttc::MqttOptions) -> (V3, rumqttc::ConnAck) {
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 64);
        let (tx, mut events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::Event::Incoming(p)) => {
                        if tx.send(p).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        let connack = loop {
            match tokio::time::timeout(crate::WAIT, events.recv()).await {
                Ok(Some(rumqttc::Packet::ConnAck(c))) => break c,
                Ok(Some(_)) => continue,
                other => panic!("no CONNACK: {other:?}"),
            }
        };
        (V3 { client, events }, connack)
    }

    /// The next incoming packet of any kind.
    pub async fn next_packet(&mut self) -> rumqttc::Packet {
        match tokio::time::timeout(crate::WAIT, self.events.recv()).await {
            Ok(Some(p)) => p,
            other => panic!("no packet in time: {other:?}"),
        }
    }

    pub async fn next_publish(&mut self) -> rumqttc::Publish {
        loop {
            match tokio::time::timeout(crate::WAIT, self.events.recv()).await {
                Ok(Some(rumqttc::Packet::Publish(p))) => return p,
                Ok(Some(_)) => continue,
                other => panic!("no PUBLISH in time: {other:?}"),
            }
        }
    }

    pub async fn expect_no_publish(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(p)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            if let rumqttc::Packet::Publish(p) = p {
                panic!("unexpected PUBLISH on {:?}", p.topic);
            }
        }
    }
}
