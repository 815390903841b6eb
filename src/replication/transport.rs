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
//! When `listener.security.protocol.map` maps CONTROLLER to SSL every link is mutual TLS
//! (`link_stream.rs`): the accepting node verifies the dialing node's certificate against its
//! truststore (and, with the authorizer on, admits only a `super.users` principal) before it
//! reads the hello, so a process without a trusted certificate cannot speak Raft to a node.
//!
//! Each peer's queue is bounded (`LINK_QUEUE_FRAMES`): when a peer is slow or unreachable,
//! `send` drops the frame and says so. Everything sent here is Raft traffic or a request with its
//! own retry (Raft retransmits, forwarded admin requests time out), so losing a frame costs a
//! retry, never correctness; an unbounded queue would cost memory without limit. A link
//! reconnects by itself (every `RECONNECT_DELAY`) while the peer is down.
//!
//! Writes are batched: a link takes every frame queued for its peer and writes them in one
//! system call, so the frames many groups produce in one pass cost one write per peer.
//!
//! Liveness: a link with nothing to send for `LinkTiming::ping` sends a ping frame (kind 255,
//! empty). A peer is live while its link to this node is connected and something (a frame or a
//! ping) arrived within `LinkTiming::silence`; it is down as soon as its link closes (a killed
//! process's sockets are closed by its kernel, so a crash is seen at once) or after that
//! silence (a frozen process, a cut link). Changes go to the `on_liveness` handler; the partition
//! groups use them to quiesce and to elect at once when a leader's node goes
//! (`replicas.rs`). A peer never heard from is down.
//!
//! Runs on one shard (shard 0, beside the controller); frames for other shards are carried on by
//! the mesh.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::{TcpListener, TcpStream};

use super::link_stream::LinkStream;
use crate::ids::NodeId;
use crate::security::tls::NodeTls;

pub const FRAME_BYTES_MAX: usize = 64 << 20;
const KIND_HELLO: u8 = 0;
/// Sent by an idle link every `LinkTiming::ping`; never handed to the handler.
const KIND_PING: u8 = 255;
/// Bytes of queued frames gathered into one write.
const WRITE_BATCH_BYTES: usize = 1 << 20;
/// Frames queued per peer before `send` starts dropping.
pub const LINK_QUEUE_FRAMES: usize = 1024;
const RECONNECT_DELAY: Duration = Duration::from_millis(200);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A link lost sooner than this after it opened waits `RECONNECT_DELAY` before the next try.
const LINK_SHORT_LIVED: Duration = Duration::from_secs(2);
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

/// What a peer must show to be linked: the cluster's fingerprint in its hello and, when the
/// links are TLS, a certificate this node trusts (`link_stream.rs`).
#[derive(Clone)]
pub struct Membership {
    pub fingerprint: u64,
    pub tls: Option<Arc<NodeTls>>,
}

/// What an outgoing link needs from its transport.
struct LinkSetup {
    node: NodeId,
    local: SocketAddr,
    ping: Duration,
    membership: Membership,
}

/// Called for every frame that arrives, with the sending node.
pub type Handler = Rc<dyn Fn(NodeId, Frame)>;

/// Told when a peer becomes live (true) or down (false).
pub type LivenessHandler = Rc<dyn Fn(NodeId, bool)>;

/// How often idle links ping, and how long a silent peer stays live.
#[derive(Debug, Clone, Copy)]
pub struct LinkTiming {
    pub ping: Duration,
    pub silence: Duration,
}

/// What this node hears from one peer.
struct Heard {
    last: Instant,
    /// Links from the peer to this node that are open (one, but a reconnect may overlap).
    connected: u32,
    live: bool,
}

pub struct Transport {
    node: NodeId,
    local: SocketAddr,
    membership: Membership,
    timing: LinkTiming,
    links: RefCell<HashMap<NodeId, LocalSender<Frame>>>,
    heard: RefCell<HashMap<NodeId, Heard>>,
    on_liveness: LivenessHandler,
    /// Frames dropped because a peer's queue was full.
    pub dropped: RefCell<u64>,
}

impl Transport {
    /// Listens on `listen` and opens a link to every peer (not this node) in `peers`.
    pub fn start(
        node: NodeId,
        listen: SocketAddr,
        peers: &[(NodeId, SocketAddr)],
        membership: Membership,
        timing: LinkTiming,
        handler: Handler,
        on_liveness: LivenessHandler,
    ) -> io::Result<Rc<Transport>> {
        // At the node's start, before anything runs on it: a blocking wait for a dead
        // predecessor's listener to go is fine here.
        let blocking_sleep = |pause| async move { std::thread::sleep(pause) };
        let listener = futures_lite::future::block_on(crate::server::listener::bind_retrying(
            listen,
            false,
            blocking_sleep,
        ))?;
        let transport = Rc::new(Transport {
            node,
            local: listen,
            membership,
            timing,
            links: RefCell::new(HashMap::new()),
            heard: RefCell::new(HashMap::new()),
            on_liveness,
            dropped: RefCell::new(0),
        });
        glommio::spawn_local(accept(listener, Rc::downgrade(&transport), handler)).detach();
        glommio::spawn_local(watch_liveness(Rc::downgrade(&transport))).detach();
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
            LinkSetup {
                node: self.node,
                local: self.local,
                ping: self.timing.ping,
                membership: self.membership.clone(),
            },
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

    /// Whether `peer` is live as this node's links see it.
    pub fn is_live(&self, peer: NodeId) -> bool {
        self.heard
            .borrow()
            .get(&peer)
            .is_some_and(|heard| heard.live)
    }

    fn heard_from(&self, peer: NodeId) {
        if let Some(heard) = self.heard.borrow_mut().get_mut(&peer) {
            heard.last = Instant::now();
        }
    }

    fn connected(&self, peer: NodeId, change: i32) {
        {
            let mut table = self.heard.borrow_mut();
            let heard = table.entry(peer).or_insert(Heard {
                last: Instant::now(),
                connected: 0,
                live: false,
            });
            heard.connected = heard.connected.saturating_add_signed(change);
            heard.last = Instant::now();
        }
        self.evaluate();
    }

    /// Tells the handler of every peer whose liveness changed.
    fn evaluate(&self) {
        let silence = self.timing.silence;
        let mut changed = Vec::new();
        for (peer, heard) in self.heard.borrow_mut().iter_mut() {
            let live = heard.connected > 0 && heard.last.elapsed() < silence;
            if live != heard.live {
                heard.live = live;
                changed.push((*peer, live));
            }
        }
        for (peer, live) in changed {
            if live {
                log::info!("node {} is live", peer.0);
            } else {
                log::warn!("node {} is down (its link closed or went silent)", peer.0);
            }
            (self.on_liveness)(peer, live);
        }
    }
}

/// Re-evaluates liveness as silences run out.
async fn watch_liveness(transport: std::rc::Weak<Transport>) {
    loop {
        let Some(pause) = transport.upgrade().map(|t| t.timing.ping / 2) else {
            return;
        };
        glommio::timer::sleep(pause).await;
        let Some(transport) = transport.upgrade() else {
            return;
        };
        transport.evaluate();
    }
}

/// Counts an incoming link of `peer` open until dropped.
struct Connected {
    transport: std::rc::Weak<Transport>,
    peer: NodeId,
}

impl Drop for Connected {
    fn drop(&mut self) {
        if let Some(transport) = self.transport.upgrade() {
            transport.connected(self.peer, -1);
        }
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

/// Reads one incoming link: the TLS handshake if the links use it, a hello, then frames for
/// `handler`.
async fn serve(
    stream: TcpStream,
    transport: std::rc::Weak<Transport>,
    handler: Handler,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let tls = transport
        .upgrade()
        .and_then(|transport| transport.membership.tls.clone());
    let (mut stream, principal) = LinkStream::accept(stream, tls.as_deref()).await?;
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
    if from.0 < 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a node link's hello names node {}", from.0),
        ));
    }
    let theirs = u64::from_le_bytes(hello.body[4..12].try_into().expect("8 bytes"));
    let Some(transport) = transport.upgrade() else {
        return Ok(()); // the shard is stopping
    };
    if theirs != transport.membership.fingerprint {
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
        .filter(|address| !address.ip().is_unspecified())
    {
        transport.add_peer(from, address);
    }
    if let Some(principal) = principal {
        log::debug!("node {} linked over TLS as {principal}", from.0);
    }
    transport.connected(from, 1);
    let _connected = Connected {
        transport: Rc::downgrade(&transport),
        peer: from,
    };
    let weak = Rc::downgrade(&transport);
    drop(transport);
    loop {
        let frame = read_frame(&mut stream).await?;
        let Some(transport) = weak.upgrade() else {
            return Ok(()); // the shard is stopping
        };
        transport.heard_from(from);
        drop(transport);
        if frame.kind != KIND_PING {
            handler(from, frame);
        }
    }
}

async fn read_frame(stream: &mut LinkStream) -> io::Result<Frame> {
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

fn put_frame(buffer: &mut Vec<u8>, frame: &Frame) {
    buffer.extend_from_slice(&(frame.body.len() as u32).to_le_bytes());
    buffer.push(frame.kind);
    buffer.extend_from_slice(&frame.body);
}

async fn write_frame(stream: &mut LinkStream, frame: &Frame) -> io::Result<()> {
    let mut buffer = Vec::with_capacity(5 + frame.body.len());
    put_frame(&mut buffer, frame);
    stream.write_all(&buffer).await
}

/// The next frame queued for a link, or None when none came within `idle` (time to ping);
/// Err(()) when the queue is closed (the transport is gone).
async fn next_frame(frames: &LocalReceiver<Frame>, idle: Duration) -> Result<Option<Frame>, ()> {
    let queued = async { frames.recv().await.map(Some).ok_or(()) };
    let silent = async {
        glommio::timer::sleep(idle).await;
        Ok(None)
    };
    futures_lite::future::or(queued, silent).await
}

/// One outgoing link: connect (bound to our own address), say hello, write queued frames;
/// reconnect after any error.
async fn link(setup: LinkSetup, peer: NodeId, address: SocketAddr, frames: LocalReceiver<Frame>) {
    let LinkSetup {
        node,
        local,
        ping,
        membership: Membership { fingerprint, tls },
    } = setup;
    let mut hello_body = node.0.to_le_bytes().to_vec();
    hello_body.extend_from_slice(&fingerprint.to_le_bytes());
    hello_body.extend_from_slice(local.to_string().as_bytes());
    let hello = Frame {
        kind: KIND_HELLO,
        body: Bytes::from(hello_body),
    };
    loop {
        let connected = match connect_from(local, address).await {
            Ok(stream) => LinkStream::connect(stream, address, tls.as_deref()).await,
            Err(error) => Err(error),
        };
        let mut stream = match connected {
            Ok(stream) => stream,
            Err(error) => {
                // A refused TLS handshake is a configuration problem worth seeing; a peer that
                // is down is routine.
                if error.kind() == io::ErrorKind::InvalidData {
                    crate::warn_limited!("node {} at {address}: {error}", peer.0);
                } else {
                    log::debug!("node {} at {address}: {error}", peer.0);
                }
                glommio::timer::sleep(RECONNECT_DELAY).await;
                continue;
            }
        };
        if write_frame(&mut stream, &hello).await.is_err() {
            glommio::timer::sleep(RECONNECT_DELAY).await;
            continue;
        }
        log::info!("linked to node {} at {address}", peer.0);
        let linked = Instant::now();
        let mut buffer = Vec::new();
        loop {
            let first = match next_frame(&frames, ping).await {
                Ok(Some(frame)) => frame,
                Ok(None) => Frame {
                    kind: KIND_PING,
                    body: Bytes::new(),
                },
                Err(()) => return, // the transport is gone: the shard is stopping
            };
            buffer.clear();
            put_frame(&mut buffer, &first);
            // Everything else already queued goes in the same write.
            while buffer.len() < WRITE_BATCH_BYTES {
                match futures_lite::future::poll_once(frames.recv()).await {
                    Some(Some(frame)) => put_frame(&mut buffer, &frame),
                    _ => break,
                }
            }
            if let Err(error) = stream.write_all(&buffer).await {
                log::info!("link to node {} at {address} lost: {error}", peer.0);
                // A link the peer drops at once (a refused certificate or cluster: under TLS
                // 1.3 the dialer's handshake ends before the peer has checked it) is retried
                // at the reconnect pace, not in a loop.
                if linked.elapsed() < LINK_SHORT_LIVED {
                    glommio::timer::sleep(RECONNECT_DELAY).await;
                }
                break;
            }
            if buffer.capacity() > 4 * WRITE_BATCH_BYTES {
                buffer = Vec::new();
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
