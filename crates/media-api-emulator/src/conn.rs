//! Connections the emulator can break on purpose. Each accepted TCP stream carries a switch that
//! its requests reach through `ConnectInfo<Breaker>`; once thrown, the stream refuses every read
//! and write and closes with a TCP reset, so the client gets no HTTP answer at all (not even a
//! status line), as when a load balancer or NAT drops a connection mid-request.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// A TCP listener whose connections are `Conn`s.
pub struct Listener(pub TcpListener);

impl axum::serve::Listener for Listener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        // axum's own accept loop logs and backs off on errors such as too many open files.
        let (stream, addr) = axum::serve::Listener::accept(&mut self.0).await;
        let conn = Conn {
            stream,
            broken: Breaker::default(),
        };
        (conn, addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// The switch of one connection, handed to its requests as connect info.
#[derive(Clone, Debug, Default)]
pub struct Breaker(Arc<AtomicBool>);

impl Breaker {
    /// From now on the connection fails every read and write; the answer being prepared is
    /// never sent.
    pub fn break_connection(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn is_broken(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

impl Connected<IncomingStream<'_, Listener>> for Breaker {
    fn connect_info(stream: IncomingStream<'_, Listener>) -> Self {
        stream.io().broken.clone()
    }
}

/// An accepted stream and its switch.
pub struct Conn {
    stream: TcpStream,
    broken: Breaker,
}

impl Conn {
    /// `Some(error)` once the switch is thrown. Also arms a zero linger, so that dropping the
    /// stream (hyper does on the error) sends RST instead of a clean FIN.
    fn refusal(&self) -> Option<io::Error> {
        if !self.broken.is_broken() {
            return None;
        }
        let _ = self.stream.set_zero_linger();
        Some(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "connection reset (injected by the emulator)",
        ))
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.refusal() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.refusal() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.refusal() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.refusal() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.refusal() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
