//! A raw WebSocket client (tokio-tungstenite) for MQTT over WS/WSS: the
//! handshake with chosen subprotocols, and a bridge that turns the socket
//! into a byte stream for [`crate::RawClient`].

use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Response;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::io::{CopyToBytes, SinkWriter, StreamReader};

use crate::raw::ByteStream;

/// WebSocket handshake for `url` over `stream`, offering `protocols` (none:
/// no Sec-WebSocket-Protocol header). Err carries e.g. the HTTP refusal.
pub async fn handshake<S>(
    stream: S,
    url: &str,
    protocols: &[&str],
) -> Result<(WebSocketStream<S>, Response), tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = url.into_client_request()?;
    if !protocols.is_empty() {
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            protocols.join(", ").parse().expect("header value"),
        );
    }
    tokio::time::timeout(
        crate::WAIT,
        tokio_tungstenite::client_async(request, stream),
    )
    .await
    .expect("WebSocket handshake timed out")
}

/// Plain WebSocket to `ws://addr/mqtt`, offering `protocols`.
pub async fn open(
    addr: SocketAddr,
    protocols: &[&str],
) -> Result<(WebSocketStream<TcpStream>, Response), tungstenite::Error> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).unwrap();
    handshake(tcp, &format!("ws://{addr}/mqtt"), protocols).await
}

/// The socket as a byte stream: every write (RawClient's `send`,
/// `send_bytes`) goes out as one binary message; incoming binary messages
/// are concatenated. A text message from the broker reads as an error.
pub fn byte_stream<S>(ws: WebSocketStream<S>) -> impl ByteStream + 'static
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, stream) = ws.split();
    let incoming = stream.filter_map(|m| {
        std::future::ready(match m {
            Ok(Message::Binary(b)) => Some(Ok(b)),
            Ok(Message::Text(_)) => Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "text frame from the broker",
            ))),
            Ok(_) => None,
            Err(e) => Some(Err(io::Error::other(e))),
        })
    });
    let reader = StreamReader::new(Box::pin(incoming));
    let outgoing = sink
        .with(|b: Bytes| std::future::ready(Ok::<_, tungstenite::Error>(Message::Binary(b))))
        .sink_map_err(io::Error::other);
    let writer = SinkWriter::new(CopyToBytes::new(Box::pin(outgoing)));
    tokio::io::join(reader, writer)
}
