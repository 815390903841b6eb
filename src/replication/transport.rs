//! Node-to-node links over the `CONTROLLER` listener: one outgoing TCP connection per peer,
//! bound to this node's own CONTROLLER address (so a test or an operator can cut two nodes
//! apart by address pair), carrying frames one way; a peer answers over its own link back.
//! Frames are `u32 body length` (LE), `u8 kind`, body; a link opens with a hello frame (kind 0:
//! the sender's node id as i32 LE, the sender's cluster fingerprint as u64 LE — the owner
//! derives it from what all nodes of one cluster must agree on, such as the voters — and the
//! sender's CONTROLLER address as text, to which a link back is opened if there is none: that
//! is how nodes that join later, brokers that are not voters, become reachable). Frames
//! larger than `FRAME_BYTES_MAX`, a first frame that is not a hello, or a hello with another
//! fingerprint close that connection and nothing else.
//!
//! Each peer's queue is bounded (`LINK_QUEUE_FRAMES`): when a peer is slow or unreachable,
//! `send` drops the frame and says so. Everything sent here is Raft traffic or a request with its
//! own retry (Raft retransmits, forwarded admin requests time out), so losing a frame costs a
//! retry, never correctness; an unbounded queue would cost memory without limit. A link
//! reconnects by itself (every `RECONNECT_DELAY`) while the peer is down.
//!
//! Runs on one shard (shard 0, beside the controller); frames for other shards will be carried
//! on by the mesh.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::{TcpListener, TcpStream};

use crate::ids::NodeId;

pub const FRAME_BYTES_MAX: usize = 64 << 20;
const KIND_HELLO: u8 = 0;
/// Frames queued per peer before `send` starts dropping.
pub const LINK_QUEUE_FRAMES: usize = 1024;
const RECONNECT_DELAY: Duration = Duration::from_millis(200);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A frame write that makes no progress this long (the peer is cut off or frozen and its
/// receive window is full) ends the connection, and the link reconnects; the kernel also drops
/// a connection whose sent data stays unacknowledged this long (TCP_USER_TIMEOUT). Without it a
/// link cut by a partition would wait out TCP's retransmission backoff (minutes) after the
/// partition heals.
const STALL_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub body: Bytes,
}

/// Called for every frame that arrives, with the sending node.
pub type Handler = Rc<dyn Fn(NodeId, Frame)>;

pub struct Transport {
    node: NodeId,
    local: SocketAddr,
    fingerprint: u64,
    links: RefCell<HashMap<NodeId, LocalSender<Frame>>>,
    /// Frames dropped because a peer's queue was full.
    pub dropped: RefCell<u64>,
}

impl Transport {
    /// Listens on `listen` and opens a link to every peer (not this node) in `peers`.
    pub fn start(
        node: NodeId,
        listen: SocketAddr,
        peers: &[(NodeId, SocketAddr)],
        fingerprint: u64,
        handler: Handler,
    ) -> io::Result<Rc<Transport>> {
        let listener = TcpListener::bind(listen)?;
        let transport = Rc::new(Transport {
            node,
            local: listen,
            fingerprint,
            links: RefCell::new(HashMap::new()),
            dropped: RefCell::new(0),
        });
        glommio::spawn_local(accept(listener, Rc::downgrade(&transport), handler)).detach();
        for &(peer, address) in peers {
            transport.add_peer(peer, address);
        }
        Ok(transport)
    }

    /// Opens a link to `peer` at `address` unless one exists (or `peer` is this node). Nodes
    /// that join later (brokers that are not voters) are added as their registrations arrive.
    pub fn add_peer(&self, peer: NodeId, address: SocketAddr) {
        if peer == self.node || self.links.borrow().contains_key(&peer) {
            return;
        }
        let (sender, receiver) = local_channel::new_bounded(LINK_QUEUE_FRAMES);
        self.links.borrow_mut().insert(peer, sender);
        glommio::spawn_local(link(
            self.node,
            self.fingerprint,
            self.local,
            peer,
            address,
            receiver,
        ))
        .detach();
    }

    /// Queues `frame` for `to`; false if it was dropped (unknown peer or full queue).
    pub fn send(&self, to: NodeId, frame: Frame) -> bool {
        let links = self.links.borrow();
        let Some(link) = links.get(&to) else {
            return false;
        };
        if link.try_send(frame).is_err() {
            *self.dropped.borrow_mut() += 1;
            return false;
        }
        true
    }
}

async fn accept(listener: TcpListener, transport: std::rc::Weak<Transport>, handler: Handler) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let handler = handler.clone();
                let transport = transport.clone();
                glommio::spawn_local(async move {
                    match serve(stream, transport, handler).await {
                        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                            log::debug!("node link closed by its sender");
                        }
                        Err(error) => crate::warn_limited!("node link closed: {error}"),
                        Ok(()) => {}
                    }
                })
                .detach();
            }
            Err(error) => {
                crate::warn_limited!("node listener: accept failed: {error}");
                glommio::timer::sleep(RECONNECT_DELAY).await;
            }
        }
    }
}

/// Reads one incoming link: a hello, then frames for `handler`.
async fn serve(
    mut stream: TcpStream,
    transport: std::rc::Weak<Transport>,
    handler: Handler,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let hello = read_frame(&mut stream).await?;
    if hello.kind != KIND_HELLO || hello.body.len() < 12 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a node link must open with a hello",
        ));
    }
    let from = NodeId(i32::from_le_bytes(
        hello.body[..4].try_into().expect("4 bytes"),
    ));
    let theirs = u64::from_le_bytes(hello.body[4..12].try_into().expect("8 bytes"));
    let Some(transport) = transport.upgrade() else {
        return Ok(()); // the shard is stopping
    };
    if theirs != transport.fingerprint {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "node {} is configured for another cluster (controller.quorum.voters differ)",
                from.0
            ),
        ));
    }
    // The sender's own CONTROLLER address: a link back, for nodes that joined after start.
    if let Some(address) = std::str::from_utf8(&hello.body[12..])
        .ok()
        .and_then(|text| text.parse::<SocketAddr>().ok())
        .filter(|address| !address.ip().is_unspecified() && from.0 >= 0)
    {
        transport.add_peer(from, address);
    }
    drop(transport);
    loop {
        let frame = read_frame(&mut stream).await?;
        handler(from, frame);
    }
}

async fn read_frame(stream: &mut TcpStream) -> io::Result<Frame> {
    let mut header = [0u8; 5];
    stream.read_exact(&mut header).await?;
    let length = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    if length > FRAME_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("node frame of {length} bytes is over {FRAME_BYTES_MAX}"),
        ));
    }
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await?;
    Ok(Frame {
        kind: header[4],
        body: Bytes::from(body),
    })
}

async fn write_frame(stream: &mut TcpStream, frame: &Frame) -> io::Result<()> {
    let mut header = Vec::with_capacity(5 + frame.body.len());
    header.extend_from_slice(&(frame.body.len() as u32).to_le_bytes());
    header.push(frame.kind);
    header.extend_from_slice(&frame.body);
    stream.write_all(&header).await
}

/// One outgoing link: connect (bound to our own address), say hello, write queued frames;
/// reconnect after any error.
async fn link(
    node: NodeId,
    fingerprint: u64,
    local: SocketAddr,
    peer: NodeId,
    address: SocketAddr,
    frames: LocalReceiver<Frame>,
) {
    let mut hello_body = node.0.to_le_bytes().to_vec();
    hello_body.extend_from_slice(&fingerprint.to_le_bytes());
    hello_body.extend_from_slice(local.to_string().as_bytes());
    let hello = Frame {
        kind: KIND_HELLO,
        body: Bytes::from(hello_body),
    };
    loop {
        let mut stream = match connect_from(local, address).await {
            Ok(stream) => stream,
            Err(error) => {
                log::debug!("node {} at {address}: {error}", peer.0);
                glommio::timer::sleep(RECONNECT_DELAY).await;
                continue;
            }
        };
        if write_frame(&mut stream, &hello).await.is_err() {
            continue;
        }
        log::info!("linked to node {} at {address}", peer.0);
        loop {
            let Some(frame) = frames.recv().await else {
                return; // the transport is gone: the shard is stopping
            };
            if let Err(error) = write_frame(&mut stream, &frame).await {
                log::info!("link to node {} at {address} lost: {error}", peer.0);
                break;
            }
        }
    }
}

/// A TCP connection to `peer` from `local`'s address (any port). The blocking connect runs on
/// a thread of its own, not on glommio's blocking pool: that pool (one thread) also does the
/// shard's renames and directory syncs, and a connect to an unreachable peer blocks for up to
/// `CONNECT_TIMEOUT`.
async fn connect_from(local: SocketAddr, peer: SocketAddr) -> io::Result<TcpStream> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("sluice-connect".into())
        .spawn(move || {
            let connected = (|| -> io::Result<i32> {
                let socket = socket2::Socket::new(
                    socket2::Domain::for_address(peer),
                    socket2::Type::STREAM,
                    Some(socket2::Protocol::TCP),
                )?;
                socket.bind(&SocketAddr::new(local.ip(), 0).into())?;
                socket.connect_timeout(&peer.into(), CONNECT_TIMEOUT)?;
                socket.set_nodelay(true)?;
                socket.set_tcp_user_timeout(Some(STALL_TIMEOUT))?;
                socket.set_nonblocking(true)?;
                Ok(socket.into_raw_fd())
            })();
            let _ = sender.send(connected);
        })?;
    let fd = loop {
        match receiver.try_recv() {
            Ok(connected) => break connected?,
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                glommio::timer::sleep(Duration::from_millis(5)).await
            }
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                return Err(io::Error::other("connect thread ended without an answer"))
            }
        }
    };
    // SAFETY: `fd` is a connected TCP socket we own (into_raw_fd gave up ownership).
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    stream.set_write_timeout(Some(STALL_TIMEOUT))?;
    Ok(stream)
}
