//! The socket a connection task owns, and the read and write halves it
//! borrows from it. A plain TCP socket is split by reference, inside the
//! task; `tokio::io::split` would put it in an allocation of its own (64
//! bytes for every connection, for the connection's life). Other streams
//! (TLS, WebSocket) need that split: both halves own a share.

use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::TcpStream;

pub trait Duplex: Send {
    type Read<'a>: AsyncRead + Unpin + Send
    where
        Self: 'a;
    type Write<'a>: AsyncWrite + Unpin + Send
    where
        Self: 'a;

    fn halves(&mut self) -> (Self::Read<'_>, Self::Write<'_>);
}

impl Duplex for TcpStream {
    type Read<'a> = tokio::net::tcp::ReadHalf<'a>;
    type Write<'a> = tokio::net::tcp::WriteHalf<'a>;

    fn halves(&mut self) -> (Self::Read<'_>, Self::Write<'_>) {
        self.split()
    }
}

/// Any stream, from `tokio::io::split`.
impl<S: AsyncRead + AsyncWrite + Send> Duplex for (ReadHalf<S>, WriteHalf<S>) {
    type Read<'a>
        = &'a mut ReadHalf<S>
    where
        S: 'a;
    type Write<'a>
        = &'a mut WriteHalf<S>
    where
        S: 'a;

    fn halves(&mut self) -> (Self::Read<'_>, Self::Write<'_>) {
        (&mut self.0, &mut self.1)
    }
}
