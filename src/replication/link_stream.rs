//! The byte stream under a node link (`transport.rs`): plain TCP on a PLAINTEXT CONTROLLER
//! listener, or mutual TLS when it is mapped to SSL (`security::tls::NodeTls`). A link carries
//! frames one way, so after the handshake a stream is only read (the accepting side) or only
//! written (the dialing side); the handshake itself is bounded by `HANDSHAKE_TIMEOUT`.
//!
//! TLS here runs in user space with rustls on the shard that owns the links, like the client
//! listeners' sessions; records are written as the link's batches are (one write per batch).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::security::tls::{decrypt, pending_records, NodeTls};

/// Longest a node link's TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Ciphertext read at once (a TLS record is at most 16 KiB plus its overhead).
const READ_BYTES: usize = 17 << 10;

pub enum LinkStream {
    Plain(TcpStream),
    Tls(Box<TlsLink>),
}

pub struct TlsLink {
    tcp: TcpStream,
    session: rustls::Connection,
    /// Decrypted bytes not yet taken by `read_exact`.
    plaintext: BytesMut,
    scratch: Vec<u8>,
}

impl LinkStream {
    /// The accepting side. With TLS: the handshake, then the admission check on the peer's
    /// certificate principal; Ok also returns that principal (None on plain TCP).
    pub async fn accept(
        tcp: TcpStream,
        tls: Option<&NodeTls>,
    ) -> io::Result<(LinkStream, Option<String>)> {
        let Some(tls) = tls else {
            return Ok((LinkStream::Plain(tcp), None));
        };
        let session = rustls::ServerConnection::new(tls.server.clone())
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        let mut link = TlsLink::new(tcp, rustls::Connection::Server(session));
        link.handshake().await?;
        let principal = crate::security::tls::certificate_principal(&link.session)
            .map(|subject| format!("User:{subject}"))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "the peer's certificate subject is unreadable",
                )
            })?;
        if let Some(admitted) = &tls.admitted {
            if !admitted.contains(&principal) {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("{principal} is not one of super.users; node link refused"),
                ));
            }
        }
        Ok((LinkStream::Tls(Box::new(link)), Some(principal)))
    }

    /// The dialing side, to `peer`.
    pub async fn connect(
        tcp: TcpStream,
        peer: SocketAddr,
        tls: Option<&NodeTls>,
    ) -> io::Result<LinkStream> {
        let Some(tls) = tls else {
            return Ok(LinkStream::Plain(tcp));
        };
        let name = rustls::pki_types::ServerName::IpAddress(peer.ip().into());
        let session = rustls::ClientConnection::new(tls.client.clone(), name)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        let mut link = TlsLink::new(tcp, rustls::Connection::Client(session));
        link.handshake().await?;
        Ok(LinkStream::Tls(Box::new(link)))
    }

    pub async fn read_exact(&mut self, out: &mut [u8]) -> io::Result<()> {
        match self {
            LinkStream::Plain(tcp) => tcp.read_exact(out).await,
            LinkStream::Tls(link) => link.read_exact(out).await,
        }
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            LinkStream::Plain(tcp) => tcp.write_all(bytes).await,
            LinkStream::Tls(link) => link.write_all(bytes).await,
        }
    }
}

impl TlsLink {
    fn new(tcp: TcpStream, mut session: rustls::Connection) -> TlsLink {
        // The link hands over whole batches; `write_all` sends them at once.
        session.set_buffer_limit(None);
        TlsLink {
            tcp,
            session,
            plaintext: BytesMut::new(),
            scratch: vec![0; READ_BYTES],
        }
    }

    async fn handshake(&mut self) -> io::Result<()> {
        let exchange = async {
            loop {
                self.flush().await?;
                if !self.session.is_handshaking() {
                    return Ok(());
                }
                if let Err(error) = self.receive().await {
                    // The alert rustls queued says why, best effort.
                    let _ = self.flush().await;
                    return Err(error);
                }
            }
        };
        futures_lite::future::or(exchange, async {
            glommio::timer::sleep(HANDSHAKE_TIMEOUT).await;
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "node link TLS handshake not done in time",
            ))
        })
        .await
    }

    /// Reads what the socket has and decrypts it into `plaintext`.
    async fn receive(&mut self) -> io::Result<()> {
        let read = self.tcp.read(&mut self.scratch).await?;
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if decrypt(
            &mut self.session,
            &self.scratch[..read],
            &mut self.plaintext,
        )? && self.plaintext.is_empty()
        {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    async fn read_exact(&mut self, out: &mut [u8]) -> io::Result<()> {
        while self.plaintext.len() < out.len() {
            self.receive().await?;
        }
        out.copy_from_slice(&self.plaintext.split_to(out.len()));
        Ok(())
    }

    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        io::Write::write_all(&mut self.session.writer(), bytes)?;
        self.flush().await
    }

    async fn flush(&mut self) -> io::Result<()> {
        let records = pending_records(&mut self.session)?;
        if !records.is_empty() {
            self.tcp.write_all(&records).await?;
        }
        Ok(())
    }
}

/// The node-link TLS configuration, when the CONTROLLER listener is mapped to SSL.
pub fn node_tls(config: &crate::config::Config) -> Result<Option<Arc<NodeTls>>, String> {
    if config.listeners.controller_protocol() != crate::config::SecurityProtocol::Ssl {
        return Ok(None);
    }
    NodeTls::build(&config.ssl, &config.authorizer)
        .map(|tls| Some(Arc::new(tls)))
        .map_err(|error| format!("CONTROLLER listener (SSL): {error}"))
}
