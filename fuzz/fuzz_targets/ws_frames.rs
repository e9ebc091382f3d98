//! A WebSocket client's bytes through the gateway's own upgrade and
//! WebSocket-to-byte-stream bridge (`aerie_gateway::ws`), then into the MQTT
//! decoder as the connection task reads it, over an in-memory pipe: it must
//! never panic, and the frame and message sizes are whatever the gateway's
//! upgrade configures.
//!
//! The first byte picks how the rest is sent after the (fixed, valid)
//! upgrade request:
//! - even: as raw bytes (masking, fragmentation, control, text and close
//!   frames, lengths that lie — all up to the fuzzer);
//! - odd: as frames the harness masks itself, so the fuzzer's payloads reach
//!   the MQTT decoder: each frame is a byte with FIN/RSV/opcode bits, a
//!   length byte, then that many payload bytes.

#![no_main]

use std::sync::LazyLock;

use aerie_gateway::GatewayConfig;
use aerie_gateway::ws::upgrade_for_fuzzing;
use aerie_proto::{Packet, ProtocolVersion, decode};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::runtime::Runtime;

const UPGRADE: &[u8] = b"GET /mqtt HTTP/1.1\r\n\
Host: fuzz\r\n\
Connection: Upgrade\r\n\
Upgrade: websocket\r\n\
Sec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Protocol: mqtt\r\n\r\n";

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One runtime per process: building one per input would dominate the run.
static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
});

/// The connection's limit on what it decodes.
static MAX_PACKET_SIZE: LazyLock<u32> = LazyLock::new(|| GatewayConfig::default().max_packet_size);

/// Client frames (masked, as a client must send them) from `spec`.
fn masked_frames(mut spec: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(spec.len() * 2);
    while let [bits, len, rest @ ..] = spec {
        let n = (*len as usize).min(rest.len());
        let (payload, tail) = rest.split_at(n);
        out.push(*bits);
        // Lengths past 125 take the 16-bit form, as a client would write them.
        if n <= 125 {
            out.push(0x80 | n as u8);
        } else {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        out.extend_from_slice(&MASK);
        out.extend(payload.iter().zip(MASK.iter().cycle()).map(|(b, m)| b ^ m));
        spec = tail;
    }
    out
}

/// Reads MQTT from the bridged stream as the connection task does (CONNECT
/// decoded as 5.0, then the CONNECT's version), answering each packet so
/// the bridge's write half is exercised too.
async fn read_mqtt(mut stream: Box<dyn aerie_gateway::ws::ByteStream>) {
    let mut inbuf = BytesMut::new();
    let mut version = ProtocolVersion::V5;
    loop {
        match decode(&mut inbuf, version, *MAX_PACKET_SIZE) {
            Ok(Some(packet)) => {
                if let Packet::Connect(c) = &packet {
                    version = c.protocol;
                }
                // A PINGRESP: any bytes will do to drive the sink.
                if stream.write_all(&[0xd0, 0x00]).await.is_err() {
                    return;
                }
            }
            Ok(None) => match stream.read_buf(&mut inbuf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            Err(_) => return,
        }
    }
}

/// The client: the upgrade request; once the 101 is in (as a client waits
/// for it: hyper drops an upgrade whose client hung up first), `frames`,
/// then a half-close; meanwhile it reads (and drops) whatever the server
/// answers, so the server never blocks on a full pipe.
async fn client_sends(client: DuplexStream, frames: Vec<u8>) {
    let (mut from_server, mut to_server) = tokio::io::split(client);
    to_server
        .write_all(UPGRADE)
        .await
        .expect("the request is sent");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(from_server.read_u8().await.expect("a response"));
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101 "),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let drain = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_server, &mut tokio::io::sink()).await;
    });
    let _ = to_server.write_all(&frames).await;
    let _ = to_server.shutdown().await;
    drain.await.expect("the drain ends");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let frames = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        masked_frames(rest)
    };
    RUNTIME.block_on(async move {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let client = tokio::spawn(client_sends(client, frames));
        let stream = upgrade_for_fuzzing(server)
            .await
            .expect("a valid upgrade request upgrades");
        read_mqtt(stream).await;
        client.await.expect("the client ends");
    });
});
