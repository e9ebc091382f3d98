//! MQTT over WebSocket (MQTT 5 §6): binary messages carry the byte stream,
//! with no alignment between packets and messages. The socket is bridged into
//! `AsyncRead + AsyncWrite` and handed to the same connection task as TCP.

use std::io;
use std::net::SocketAddr;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::io::{CopyToBytes, SinkWriter, StreamReader};

use crate::connection::Transport;
use crate::edge::HeldPermit;
use crate::listener::Gateway;

/// Subprotocols a client may offer; "mqttv3.1" is what older clients send.
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// WebSocket frames or messages refused for their size (the connection
/// closes): larger than the largest MQTT packet plus [`FRAME_SLACK`].
pub const WS_TOO_LARGE_TOTAL: &str = "aerie_ws_too_large_total";
/// Room above the largest packet for a message that also carries the end of
/// the previous packet or the start of the next.
const FRAME_SLACK: usize = 16 * 1024;

#[derive(Clone)]
struct WsState {
    gateway: Gateway,
    transport: Transport,
}

/// The router serving MQTT over WebSocket at `path`.
pub fn router(gateway: Gateway, path: &str, transport: Transport) -> Router {
    Router::new()
        .route(path, get(upgrade))
        .with_state(WsState { gateway, transport })
}

async fn upgrade(
    State(state): State<WsState>,
    held: Option<Extension<HeldPermit>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    // axum completes an upgrade even when no offered subprotocol matched, so
    // refuse here: a client that offers only others does not speak MQTT.
    let offered: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_owned()))
        .filter(|p| !p.is_empty())
        .collect();
    if !offered.is_empty() && !offered.iter().any(|p| SUBPROTOCOLS.contains(&p.as_str())) {
        return (
            StatusCode::BAD_REQUEST,
            "MQTT over WebSocket needs the subprotocol \"mqtt\"\n",
        )
            .into_response();
    }
    // The connection's permit goes with it into the MQTT connection.
    let permit = held.and_then(|Extension(h)| h.take());
    let peer = peer.map(|Extension(ConnectInfo(p))| p);
    let max_packet_size = state.gateway.config().max_packet_size;
    settings(ws, max_packet_size).on_upgrade(move |socket| async move {
        let stream = bridge(socket);
        match permit {
            Some(permit) => state
                .gateway
                .spawn_holding(stream, state.transport, peer, permit),
            None => state.gateway.spawn_connection(stream, state.transport),
        }
    })
}

/// What every MQTT WebSocket upgrade gets, here and in the fuzzing entry
/// point alike: the subprotocols, and frame and message limits from the
/// largest packet. An MQTT packet may span messages, so no honest client
/// needs more; without them the library's defaults (16 MiB frames, 64 MiB
/// messages, the declared size reserved at the header) let a client that
/// has not even sent CONNECT make the broker hold megabytes.
fn settings(ws: WebSocketUpgrade, max_packet_size: u32) -> WebSocketUpgrade {
    let limit = usize::try_from(max_packet_size)
        .unwrap_or(usize::MAX)
        .saturating_add(FRAME_SLACK);
    ws.protocols(SUBPROTOCOLS)
        .max_frame_size(limit)
        .max_message_size(limit)
}

/// A byte stream both ways, boxed for [`upgrade_for_fuzzing`].
#[doc(hidden)]
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for T {}

/// Fuzzing entry point (`fuzz/fuzz_targets/ws_frames.rs`), not an API:
/// serves one HTTP/1.1 connection on `io` (a client's bytes, with no
/// network) whose WebSocket upgrade, at any path, gets the listener's
/// [`settings`] and [`bridge`]; returns the bridged byte stream the
/// connection task would read MQTT from, or `None` if `io` did not upgrade.
#[doc(hidden)]
pub async fn upgrade_for_fuzzing<S>(io: S) -> Option<Box<dyn ByteStream>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel::<Box<dyn ByteStream>>();
    let tx = std::sync::Arc::new(parking_lot::Mutex::new(Some(tx)));
    let app = Router::new().fallback(get(move |ws: WebSocketUpgrade| async move {
        let max_packet_size = crate::GatewayConfig::default().max_packet_size;
        settings(ws, max_packet_size).on_upgrade(move |socket| async move {
            if let Some(tx) = tx.lock().take() {
                let _ = tx.send(Box::new(bridge(socket)));
            }
        })
    }));
    let service =
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            tower::Service::call(&mut app.clone(), request)
        });
    tokio::spawn(
        hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(io), service)
            .with_upgrades(),
    );
    rx.await.ok()
}

/// A WebSocket read error as the connection task sees it; one over the size
/// limits is counted.
fn read_error(e: axum::Error) -> io::Error {
    let e = e.into_inner();
    if let Some(tungstenite::Error::Capacity(_)) = e.downcast_ref::<tungstenite::Error>() {
        metrics::counter!(WS_TOO_LARGE_TOTAL).increment(1);
    }
    io::Error::other(e)
}

/// The WebSocket as a byte stream.
fn bridge(socket: WebSocket) -> impl AsyncRead + AsyncWrite + Unpin + Send + 'static {
    let (sink, stream) = socket.split();
    // A text frame is a protocol violation (MQTT 5 §6.0): end the stream with an error.
    let incoming = stream
        .take_while(|m| std::future::ready(!matches!(m, Ok(Message::Close(_)))))
        .filter_map(|m| {
            std::future::ready(match m {
                Ok(Message::Binary(b)) => Some(Ok(b)),
                Ok(Message::Text(_)) => Some(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "text frame",
                ))),
                Ok(_) => None,
                Err(e) => Some(Err(read_error(e))),
            })
        });
    let reader = StreamReader::new(Box::pin(incoming));
    let outgoing = sink
        .with(|b: Bytes| std::future::ready(Ok::<_, axum::Error>(Message::Binary(b))))
        .sink_map_err(io::Error::other);
    let writer = SinkWriter::new(CopyToBytes::new(Box::pin(outgoing)));
    tokio::io::join(reader, writer)
}
