//! One client connection, on the shard that accepted it. A reader task reads size-prefixed
//! frames and starts a handler task per request (pipelining, at most
//! `connection.requests.in.flight.max` in flight); a writer task awaits the handlers in request
//! order and writes their responses with vectored `sendmsg`, so record bytes go from the log
//! buffers to the socket without being concatenated. One socket descriptor per connection:
//! reader and writer share the glommio stream through `Rc<RefCell<_>>`, borrowed only inside a
//! single poll (never across an `.await`), so there is no lock and no dup'ed descriptor.
//!
//! Bounds (all Kafka's keys but the last): `max.connections` and `max.connections.per.ip` are
//! checked as a connection is accepted — past either, it is closed at once (the client sees a
//! clean close and retries with backoff; Kafka's acceptor blocks instead, which leaves clients
//! hanging in the backlog); `connections.max.idle.ms` closes a connection with nothing in
//! flight and no traffic; `socket.request.read.timeout.ms` bounds the time from a request's
//! first byte to its last (a client announcing 100 MB and sending a byte a second is cut off),
//! not counting time the shard itself makes it wait for request memory; a client that stops
//! reading its responses is cut off after `connections.max.idle.ms` without progress.
//!
//! Request order. Kafka handles a connection's requests one at a time, so a request sees the
//! effects of every request sent before it on the same connection: two OffsetCommits apply in
//! order, an OffsetFetch after a commit sees it, Metadata after CreateTopics lists the topic.
//! Here every request takes a ticket of the connection's `AppendOrder` when its frame is read
//! (in arrival order, before any `.await`), and:
//! - Produce waits for its turn and hands it on once its appends are dispatched to the owning
//!   shards, before they are durable. Each owner appends in arrival order, so batches stay in
//!   the order sent, and pipelined produce requests share fdatasyncs.
//! - Fetch waits for its turn (it sees everything sent before it) and hands it on at once: it
//!   only reads, and its long poll (up to `max_wait_ms`) must not hold up the requests behind it.
//! - Every other request keeps its turn until its handler returns.
//!
//! This cannot deadlock: a request waits only for requests sent before it on its own connection,
//! and nothing that keeps a turn waits for a later request of that connection (JoinGroup and
//! SyncGroup wait for other members, i.e. other connections; a produce's fsync and a fetch's
//! long poll are never waited for under a turn). Responses were already written in request
//! order, so this only delays the start of requests queued behind a slow one, as in Kafka.
//!
//! A malformed frame closes the connection with a log line; it never panics the shard.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::channels::local_channel;
use glommio::net::TcpStream;
use glommio::task::JoinHandle;

use crate::partition::append_order::AppendOrder;
use crate::protocol::frame::{check_frame_size, FrameError, ResponseFrame};
use crate::security::tls::ShardTls;
use crate::security::Principal;
use crate::server::session::{ListenerContext, Session};
use crate::server::{admission, handlers};
use crate::shard::Shard;

/// iovecs per sendmsg call (Linux IOV_MAX is 1024).
const IOVECS_PER_SEND_MAX: usize = 1024;

/// Kafka's API key of Produce (its last stage is timed here, `metrics::ProduceStage`).
const PRODUCE_API_KEY: i16 = 0;

/// A request being handled: its task, its API key and when it was read (for the metrics).
struct Pending {
    /// The handler's outcome and when it was ready.
    task: JoinHandle<(Result<Option<ResponseFrame>, FrameError>, Instant)>,
    api: i16,
    received: Instant,
}

/// Most bytes read past the frame being completed, so one recv can take several pipelined
/// requests. A connection starts at `READ_AHEAD_BYTES_MIN` and doubles its read-ahead each time
/// a recv fills it (a busy producer), so thousands of quiet connections hold a page each, not
/// 64 KiB.
const READ_AHEAD_BYTES: usize = 64 << 10;
const READ_AHEAD_BYTES_MIN: usize = 4 << 10;
const _: () = assert!(READ_AHEAD_BYTES_MIN <= READ_AHEAD_BYTES);
// A cached batch may pin the read-ahead it was read with; the cache charges for that much.
const _: () = assert!(READ_AHEAD_BYTES as u64 <= crate::storage::CACHE_PINNED_EXTRA_BYTES_MAX);

/// Bytes a readiness wait reads at once (zeroed first: glommio reads into `&mut [u8]`).
const WAKE_READ_BYTES: usize = 4096;

/// Ciphertext read at once while a TLS session is in user space (a TLS record is at most
/// 16 KiB plus its overhead).
const TLS_READ_BYTES: usize = 17 << 10;
/// Most ciphertext read at once (the buffer for it is kept per connection).
const TLS_READ_BYTES_MAX: usize = 128 << 10;
/// Plaintext handed to rustls before its records are written to the socket.
const TLS_WRITE_BATCH_BYTES: usize = 256 << 10;

/// The socket both tasks of a connection use and, while rustls encrypts in user space, its TLS
/// session. Each is borrowed only within one poll or one synchronous step, never across an
/// `.await`. Only the writer task sends TLS records (the reader only reads and decrypts), so
/// records are never interleaved on the socket.
struct Link {
    stream: RefCell<TcpStream>,
    fd: RawFd,
    tls: Option<RefCell<rustls::Connection>>,
    /// The socket's SO_RCVLOWAT as last set (`expect`).
    low_water: Cell<usize>,
    /// Where the ciphertext read so far stands in the TLS record framing.
    records: Cell<RecordFraming>,
}

/// Bytes a wait must expect before the socket's low-water mark is raised to them: below this a
/// wake-up per segment costs less than the `setsockopt` calls.
const LOW_WATER_MIN_BYTES: usize = 8 << 10;

/// Follows the TLS record framing (a 5-byte header whose last two bytes are the length) of the
/// ciphertext stream, to know how many bytes of an incomplete record rustls already holds.
#[derive(Clone, Copy, Default)]
struct RecordFraming {
    header: [u8; 5],
    header_have: usize,
    body_left: usize,
    body_have: usize,
}

impl RecordFraming {
    fn advance(mut self, mut bytes: &[u8]) -> RecordFraming {
        while !bytes.is_empty() {
            if self.header_have < 5 {
                let taken = (5 - self.header_have).min(bytes.len());
                self.header[self.header_have..self.header_have + taken]
                    .copy_from_slice(&bytes[..taken]);
                self.header_have += taken;
                bytes = &bytes[taken..];
                if self.header_have == 5 {
                    self.body_left = u16::from_be_bytes([self.header[3], self.header[4]]) as usize;
                    self.body_have = 0;
                }
            } else {
                let taken = self.body_left.min(bytes.len());
                self.body_left -= taken;
                self.body_have += taken;
                bytes = &bytes[taken..];
            }
            if self.header_have == 5 && self.body_left == 0 {
                self.header_have = 0;
                self.body_have = 0;
            }
        }
        self
    }

    /// Bytes received of the record not yet complete (0 at a record boundary).
    fn incomplete(&self) -> usize {
        self.header_have + self.body_have
    }
}

type SharedLink = Rc<Link>;

pub async fn serve(shard: Rc<Shard>, stream: TcpStream, listener: Rc<ListenerContext>) {
    // IPv4 clients of a dual-stack listener as plain IPv4 (`::ffff:a.b.c.d` -> `a.b.c.d`), as
    // Kafka reports them: ACL hosts and per-address limits name them that way.
    let address = stream
        .peer_addr()
        .ok()
        .map(|address| std::net::SocketAddr::new(address.ip().to_canonical(), address.port()));
    let peer = address.map_or_else(|| "?".to_string(), |address| address.to_string());
    let Some(admission) = admission::admit(&shard, address.map(|address| address.ip())).await
    else {
        shutdown(stream.as_raw_fd());
        return;
    };
    if let Err(error) = stream.set_nodelay(true) {
        log::debug!("{peer}: TCP_NODELAY: {error}");
    }
    let idle = Duration::from_millis(shard.config.connections_max_idle_ms);
    if let Err(error) = stream.set_write_timeout(Some(idle)) {
        log::debug!("{peer}: write timeout: {error}");
    }
    let client_host: Rc<str> = address
        .map(|address| format!("/{}", address.ip()))
        .unwrap_or_default()
        .into();
    let fd = stream.as_raw_fd();
    let _open = shard.shutdown.connection_opened();
    crate::metrics::connections_changed(1);
    let link = Link {
        stream: RefCell::new(stream),
        fd,
        tls: None,
        low_water: Cell::new(1),
        records: Cell::new(RecordFraming::default()),
    };
    if let Some((link, buffer, principal)) = establish(&shard, link, &listener, &peer).await {
        let session = Rc::new(Session::new(
            client_host,
            address.map(|address| address.ip()),
            listener,
            principal,
        ));
        run(&shard, Rc::new(link), buffer, session, &peer).await;
    } else {
        shutdown(fd);
    }
    crate::metrics::connections_changed(-1);
    admission.release(&shard).await;
}

/// The TLS handshake on SSL and SASL_SSL listeners, within `socket.request.read.timeout.ms`
/// of the accept (a client that never finishes it holds its connection that long, and rustls'
/// bounded handshake buffers). Returns the link, any plaintext that came with the handshake's
/// last flight, and the principal of a verified client certificate. None: the connection is
/// closed (the reason is logged, rate-limited).
async fn establish(
    shard: &Rc<Shard>,
    mut link: Link,
    listener: &ListenerContext,
    peer: &str,
) -> Option<(Link, BytesMut, Principal)> {
    let mut plaintext = BytesMut::new();
    if !listener.protocol.tls() {
        return Some((link, plaintext, Principal::anonymous()));
    }
    let Some(config) = shard.service::<ShardTls>().current() else {
        crate::warn_limited!("{peer}: TLS is not configured; closing");
        return None;
    };
    let session = match rustls::ServerConnection::new(config) {
        Ok(session) => session,
        Err(error) => {
            crate::warn_limited!("{peer}: TLS session: {error}; closing");
            return None;
        }
    };
    link.tls = Some(RefCell::new(rustls::Connection::Server(session)));
    let deadline =
        Instant::now() + Duration::from_millis(shard.config.socket_request_read_timeout_ms);
    if let Err(error) = handshake(&link, &mut plaintext, deadline).await {
        crate::metrics::security_event(("tls_handshake_failed", "", ""));
        crate::warn_limited!("{peer}: TLS handshake failed: {error}; closing");
        return None;
    }
    let principal = match link.tls.as_ref().map(|tls| {
        let session = tls.borrow();
        let presented = session
            .peer_certificates()
            .is_some_and(|chain| !chain.is_empty());
        (
            presented,
            crate::security::tls::certificate_principal(&session),
        )
    }) {
        Some((_, Some(subject))) => Principal::user(subject),
        // A verified certificate whose subject cannot be read is refused, not anonymous.
        Some((true, None)) => {
            crate::warn_limited!("{peer}: client certificate subject unreadable; closing");
            return None;
        }
        _ => Principal::anonymous(),
    };
    crate::metrics::security_event(("tls_session", "rustls", ""));
    Some((link, plaintext, principal))
}

/// Reads and answers requests until the client closes, the connection idles out or the shard
/// drains.
async fn run(
    shard: &Rc<Shard>,
    link: SharedLink,
    buffer: BytesMut,
    session: Rc<Session>,
    peer: &str,
) {
    let in_flight = Rc::new(Cell::new(0u32));
    let in_flight_max = shard.config.connection_requests_in_flight_max as usize;
    let (sender, receiver) = local_channel::new_bounded::<Pending>(in_flight_max);
    let writer = glommio::spawn_local({
        let (link, peer, in_flight) = (link.clone(), peer.to_string(), in_flight.clone());
        async move { write_responses(&link, receiver, &peer, &in_flight).await }
    });
    let reader = Reader {
        shard,
        link: &link,
        in_flight: &in_flight,
        read_ahead: Cell::new(READ_AHEAD_BYTES_MIN),
        ciphertext: Cell::default(),
        session,
    };
    match reader.read_requests(sender, buffer).await {
        Err(error) if error.kind() == io::ErrorKind::TimedOut => {
            crate::warn_limited!("{peer}: {error}; closing");
        }
        Err(error) => log::debug!("{peer}: connection closed: {error}"),
        Ok(()) => {}
    }
    writer.await;
}

/// The reading side of one connection.
struct Reader<'a> {
    shard: &'a Rc<Shard>,
    link: &'a SharedLink,
    /// Requests read and not yet answered (the writer counts them down).
    in_flight: &'a Rc<Cell<u32>>,
    /// Current read-ahead, READ_AHEAD_BYTES_MIN..=READ_AHEAD_BYTES.
    read_ahead: Cell<usize>,
    /// TLS only: the buffer ciphertext is read into, kept from read to read.
    ciphertext: Cell<BytesMut>,
    session: Rc<Session>,
}

impl Reader<'_> {
    async fn read_requests(
        &self,
        sender: local_channel::LocalSender<Pending>,
        mut buffer: BytesMut,
    ) -> io::Result<()> {
        let shard = self.shard;
        let max = shard.config.socket_request_max_bytes;
        let read_timeout = Duration::from_millis(shard.config.socket_request_read_timeout_ms);
        let request_order = AppendOrder::new();
        // Frames are cut from one read buffer: a recv takes whatever the socket holds (several
        // pipelined requests at once), straight into uninitialized capacity. It starts with
        // what came with the TLS handshake, if anything.
        loop {
            // Shutdown: stop at a request boundary; what was read is answered by the writer.
            if shard.shutdown.is_draining() {
                return Ok(());
            }
            if buffer.is_empty() && !self.await_request(&mut buffer).await? {
                return Ok(()); // closed by the client, idle, or draining
            }
            let first_byte = Instant::now();
            // The request's first byte is here: the rest must follow within the read timeout.
            let mut deadline = Instant::now() + read_timeout;
            if !self.fill(&mut buffer, 4, Some(deadline)).await? {
                return Ok(());
            }
            let size_prefix = [buffer[0], buffer[1], buffer[2], buffer[3]];
            // Before SASL authentication a frame is at most `sasl.server.max.receive.size`
            // (Kafka's bound): an unauthenticated client cannot make the shard hold large ones.
            let limit = if self.session.unauthenticated() {
                max.min(shard.config.sasl.max_receive_size as u32)
            } else {
                max
            };
            let size = match check_frame_size(i32::from_be_bytes(size_prefix), limit) {
                Ok(size) => size,
                Err(error) => {
                    crate::warn_limited!("closing connection: {error}");
                    shutdown(self.link.fd);
                    return Ok(());
                }
            };
            // The shard's request-memory budget is taken before the frame is buffered and given
            // back when its handler finishes: a flood of large requests waits here, unread. A frame
            // keeps its read chunk alive (its own bytes plus the read-ahead read past it), so that
            // is what it is charged, within the budget's total.
            let charge = (size + self.read_ahead.get()) as u64;
            let waiting_since = Instant::now();
            let permit = shard
                .request_memory
                .acquire_static_permit(charge.min(shard.config.queued_max_request_bytes))
                .await
                .map_err(|_| io::Error::other("request memory budget closed"))?;
            // Our own backpressure is not the client's slowness.
            deadline += waiting_since.elapsed();
            // The buffer holds the size prefix, so this returns true or an error.
            self.fill(&mut buffer, 4 + size, Some(deadline)).await?;
            let _ = buffer.split_to(4);
            let frame = buffer.split_to(size);
            // The allocation a large request was read into is not reclaimed for the small ones
            // after it (`reserve` would, once the large frame is gone): a small frame cut from it
            // (a cached batch) would keep the whole allocation alive.
            if size > 2 * READ_AHEAD_BYTES && buffer.is_empty() {
                buffer = BytesMut::new();
            }
            // Every request takes its turn now, in arrival order (module header: who keeps it).
            let ticket = request_order.take();
            let api = if frame.len() >= 2 {
                i16::from_be_bytes([frame[0], frame[1]])
            } else {
                -1
            };
            let received = Instant::now();
            if api == PRODUCE_API_KEY {
                crate::metrics::produce_stage(
                    crate::metrics::ProduceStage::Read,
                    received.duration_since(first_byte),
                );
            }
            let handler =
                handlers::handle(shard.clone(), frame, ticket, self.session.clone(), received);
            let task = glommio::spawn_local(async move {
                let _permit = permit;
                let outcome = handler.await;
                (outcome, Instant::now())
            })
            .detach();
            self.in_flight.set(self.in_flight.get() + 1);
            let pending = Pending {
                task,
                api,
                received,
            };
            if sender.send(pending).await.is_err() {
                return Ok(()); // writer gone: connection is closing
            }
        }
    }

    /// Waits for the first byte of the next request. Ok(false): the client closed, the shard
    /// drains, or the connection sat with nothing in flight and no traffic for
    /// `connections.max.idle.ms`.
    async fn await_request(&self, buffer: &mut BytesMut) -> io::Result<bool> {
        let idle = Duration::from_millis(self.shard.config.connections_max_idle_ms);
        loop {
            let outcome = futures_lite::future::or(
                async { Some(self.fill(buffer, 1, None).await) },
                futures_lite::future::or(
                    async {
                        self.shard.shutdown.draining().await;
                        Some(Ok(false))
                    },
                    async {
                        glommio::timer::sleep(idle).await;
                        None
                    },
                ),
            )
            .await;
            match outcome {
                Some(result) => return result,
                // Idle only if nothing is in flight: a parked JoinGroup is not idleness.
                None if self.in_flight.get() == 0 => return Ok(false),
                None => {}
            }
        }
    }

    /// Reads until `buffer` holds at least `want` bytes, taking up to `READ_AHEAD_BYTES` more if the
    /// socket has them. Ok(false): the peer closed with `buffer` empty (between requests); closing
    /// in the middle of a frame is an `UnexpectedEof` error.
    async fn fill(
        &self,
        buffer: &mut BytesMut,
        want: usize,
        deadline: Option<Instant>,
    ) -> io::Result<bool> {
        if let Some(tls) = &self.link.tls {
            return self.fill_tls(tls, buffer, want, deadline).await;
        }
        while buffer.len() < want {
            let read_ahead = self.read_ahead.get();
            let room = want - buffer.len() + read_ahead;
            let needed = want - buffer.len();
            match self.link.read_raw(buffer, room, needed, deadline).await? {
                0 => return closed(buffer),
                received => {
                    if received == room && read_ahead < READ_AHEAD_BYTES {
                        self.read_ahead.set((read_ahead * 2).min(READ_AHEAD_BYTES));
                    }
                }
            }
        }
        Ok(true)
    }

    /// `fill` through a user-space TLS session: ciphertext is read into its own buffer, and
    /// rustls' plaintext is moved into `buffer` as it is decrypted (one copy, the price of
    /// user-space TLS; kTLS has none).
    async fn fill_tls(
        &self,
        tls: &RefCell<rustls::Connection>,
        buffer: &mut BytesMut,
        want: usize,
        deadline: Option<Instant>,
    ) -> io::Result<bool> {
        let mut ciphertext = self.ciphertext.take();
        let outcome = self
            .fill_tls_from(tls, buffer, want, deadline, &mut ciphertext)
            .await;
        self.ciphertext.set(ciphertext);
        outcome
    }

    async fn fill_tls_from(
        &self,
        tls: &RefCell<rustls::Connection>,
        buffer: &mut BytesMut,
        want: usize,
        deadline: Option<Instant>,
        ciphertext: &mut BytesMut,
    ) -> io::Result<bool> {
        while buffer.len() < want {
            let room = (want - buffer.len() + self.read_ahead.get())
                .clamp(TLS_READ_BYTES, TLS_READ_BYTES_MAX);
            // Each plaintext byte still missing takes at least one ciphertext byte not yet
            // read, except those of the incomplete record rustls holds.
            let needed = (want - buffer.len()).saturating_sub(self.link.records.get().incomplete());
            ciphertext.clear();
            if self
                .link
                .read_raw(ciphertext, room, needed, deadline)
                .await?
                == 0
                || self.link.decrypt(tls, ciphertext, buffer)?
            {
                // End of stream, or the client's close_notify (what it sent before is kept).
                return if buffer.len() >= want {
                    Ok(true)
                } else {
                    closed(buffer)
                };
            }
        }
        Ok(true)
    }
}

/// Ok(false) for a clean end between requests; an error in the middle of one.
fn closed(buffer: &BytesMut) -> io::Result<bool> {
    if buffer.is_empty() {
        Ok(false)
    } else {
        Err(io::ErrorKind::UnexpectedEof.into())
    }
}

impl Link {
    /// Reads what the socket holds, at most `room` bytes, into `buffer`'s spare capacity; waits
    /// (until `deadline`, if any) when there is nothing. `needed`: bytes the peer will surely
    /// send (the rest of a frame it started); a wait for many of them is one wake-up, not one
    /// per segment (`expect`). 0: end of stream.
    async fn read_raw(
        &self,
        buffer: &mut BytesMut,
        room: usize,
        needed: usize,
        deadline: Option<Instant>,
    ) -> io::Result<usize> {
        loop {
            buffer.reserve(room);
            let spare = &mut buffer.spare_capacity_mut()[..room];
            // SAFETY: recv writes at most `spare.len()` bytes into memory we own; MSG_DONTWAIT
            // never blocks the shard.
            let received = unsafe {
                libc::recv(
                    self.fd,
                    spare.as_mut_ptr().cast(),
                    spare.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if received >= 0 {
                // SAFETY: the kernel initialized `received` bytes after the current length.
                unsafe { buffer.set_len(buffer.len() + received as usize) };
                return Ok(received as usize);
            }
            let error = io::Error::last_os_error();
            match error.kind() {
                // Wait until readable (or closed: the next recv then returns 0).
                io::ErrorKind::WouldBlock => {
                    self.expect(needed);
                    let read = match deadline {
                        None => read_when_ready(self, buffer).await?,
                        Some(deadline) => {
                            let left = deadline.saturating_duration_since(Instant::now());
                            futures_lite::future::or(read_when_ready(self, buffer), async {
                                glommio::timer::sleep(left).await;
                                Err(io::Error::new(
                                    io::ErrorKind::TimedOut,
                                    "request not received within socket.request.read.timeout.ms",
                                ))
                            })
                            .await?
                        }
                    };
                    if read > 0 {
                        return Ok(read);
                    }
                    // End of stream: the next recv says so.
                }
                io::ErrorKind::Interrupted => {}
                _ => return Err(error),
            }
        }
    }

    /// Sets the socket's receive low-water mark before a wait, so readiness (and io_uring's
    /// wake-up) comes when `needed` bytes are there rather than at each segment: a client that
    /// sends a request in many small writes (librdkafka under TLS writes one record per
    /// message) costs one wake-up per request. Never more than the peer will surely send, or
    /// the wait would outlast it; small waits keep the mark at 1 (no call at all when it is
    /// already there). Non-blocking reads return what is there whatever the mark.
    fn expect(&self, needed: usize) {
        let mark = if needed >= LOW_WATER_MIN_BYTES {
            needed.min(i32::MAX as usize)
        } else {
            1
        };
        if mark == self.low_water.get() {
            return;
        }
        let value = mark as libc::c_int;
        // SAFETY: setting an int socket option on a socket fd we hold open.
        let result = unsafe {
            libc::setsockopt(
                self.fd,
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if result == 0 {
            self.low_water.set(mark);
        }
    }

    /// Feeds `ciphertext` to the TLS session and moves the plaintext it yields to `plaintext`.
    /// Ok(true): the peer sent close_notify. A record that fails to decrypt or parse is an
    /// error (the connection closes).
    fn decrypt(
        &self,
        tls: &RefCell<rustls::Connection>,
        ciphertext: &[u8],
        plaintext: &mut BytesMut,
    ) -> io::Result<bool> {
        self.records.set(self.records.get().advance(ciphertext));
        crate::security::tls::decrypt(&mut tls.borrow_mut(), ciphertext, plaintext)
    }
}

/// Runs the TLS handshake to its end: sends what rustls queues, reads the client's flights.
/// Application data that arrives with the client's last flight is left in `plaintext`. On a
/// failure the alert rustls queued is sent, best effort, before the error is returned.
async fn handshake(link: &Link, plaintext: &mut BytesMut, deadline: Instant) -> io::Result<()> {
    let Some(tls) = &link.tls else {
        return Ok(());
    };
    let mut ciphertext = BytesMut::new();
    loop {
        write_tls_records(link, tls).await?;
        if !tls.borrow().is_handshaking() {
            return Ok(());
        }
        ciphertext.clear();
        if link
            .read_raw(&mut ciphertext, TLS_READ_BYTES, 1, Some(deadline))
            .await?
            == 0
        {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed during the TLS handshake",
            ));
        }
        if let Err(error) = link.decrypt(tls, &ciphertext, plaintext) {
            let _ = write_tls_records(link, tls).await;
            return Err(error);
        }
    }
}

/// Waits until the socket is readable and reads what is there (at most `WAKE_READ_BYTES`) into
/// `buffer`; 0 at end of stream. The stream is borrowed only within each poll.
async fn read_when_ready(link: &Link, buffer: &mut BytesMut) -> io::Result<usize> {
    let mut chunk = [0u8; WAKE_READ_BYTES];
    let read = std::future::poll_fn(|context| {
        let mut stream = link.stream.borrow_mut();
        Pin::new(&mut *stream).poll_read(context, &mut chunk)
    })
    .await?;
    buffer.extend_from_slice(&chunk[..read]);
    Ok(read)
}

/// Writes all of `bytes` once the socket takes them (glommio's write timeout applies). The
/// stream is borrowed only within each poll.
async fn write_when_ready(link: &Link, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let written = std::future::poll_fn(|context| {
            let mut stream = link.stream.borrow_mut();
            Pin::new(&mut *stream).poll_write(context, bytes)
        })
        .await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[written..];
    }
    Ok(())
}

async fn write_responses(
    link: &Link,
    receiver: local_channel::LocalReceiver<Pending>,
    peer: &str,
    in_flight: &Cell<u32>,
) {
    while let Some(pending) = receiver.recv().await {
        let (outcome, ready) = match pending.task.await {
            Some(done) => done,
            None => (
                Err(FrameError::malformed("handler", "task cancelled")),
                Instant::now(),
            ),
        };
        in_flight.set(in_flight.get().saturating_sub(1));
        match outcome {
            Ok(Some(frame)) => {
                if let Err(error) = write_frame(link, &frame.chunks).await {
                    log::debug!("{peer}: write failed: {error}");
                    shutdown(link.fd);
                    return;
                }
                if frame.close_after {
                    shutdown(link.fd);
                    return;
                }
                if pending.api == PRODUCE_API_KEY {
                    crate::metrics::produce_stage(
                        crate::metrics::ProduceStage::Respond,
                        ready.elapsed(),
                    );
                }
                crate::metrics::request_done(pending.api, pending.received.elapsed());
            }
            // acks=0 produce: no response
            Ok(None) => crate::metrics::request_done(pending.api, pending.received.elapsed()),
            Err(error) => {
                crate::metrics::connection_closed_malformed();
                crate::warn_limited!("{peer}: closing connection: {error}");
                shutdown(link.fd);
                return;
            }
        }
    }
}

fn shutdown(fd: RawFd) {
    // SAFETY: shutting down a socket fd we hold open; errors are irrelevant when closing.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

/// Writes one response: straight to the socket, or through the user-space TLS session.
async fn write_frame(link: &Link, chunks: &[Bytes]) -> io::Result<()> {
    let Some(tls) = &link.tls else {
        return write_vectored(link, chunks).await;
    };
    let mut batched = 0;
    for chunk in chunks {
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let written = io::Write::write(&mut tls.borrow_mut().writer(), rest)?;
            rest = &rest[written..];
            batched += written;
            // rustls holds a bounded amount of unsent records: send them when it is full, and
            // every batch so a large Fetch response is not encrypted whole in memory.
            if written == 0 || batched >= TLS_WRITE_BATCH_BYTES {
                write_tls_records(link, tls).await?;
                batched = 0;
            }
        }
    }
    write_tls_records(link, tls).await
}

/// Sends every TLS record the session has queued.
async fn write_tls_records(link: &Link, tls: &RefCell<rustls::Connection>) -> io::Result<()> {
    loop {
        let records = crate::security::tls::pending_records(&mut tls.borrow_mut())?;
        if records.is_empty() {
            return Ok(());
        }
        write_vectored(link, &[Bytes::from(records)]).await?;
    }
}

/// Writes all chunks: non-blocking `sendmsg` over as many chunks as fit, and when the socket is
/// full, glommio's async write (which waits for writability) for the rest of the current chunk.
async fn write_vectored(link: &Link, chunks: &[Bytes]) -> io::Result<()> {
    let mut index = 0;
    let mut offset = 0;
    while index < chunks.len() {
        let sent = send_nonblocking(link.fd, &chunks[index..], offset)?;
        let (next_index, next_offset) = advance(chunks, index, offset, sent);
        index = next_index;
        offset = next_offset;
        if index < chunks.len() && sent == 0 {
            write_when_ready(link, &chunks[index][offset..]).await?;
            index += 1;
            offset = 0;
        }
    }
    Ok(())
}

/// Moves (index, offset) forward by `sent` bytes.
fn advance(
    chunks: &[Bytes],
    mut index: usize,
    mut offset: usize,
    mut sent: usize,
) -> (usize, usize) {
    while sent > 0 {
        let remaining = chunks[index].len() - offset;
        if sent >= remaining {
            sent -= remaining;
            index += 1;
            offset = 0;
        } else {
            offset += sent;
            sent = 0;
        }
    }
    (index, offset)
}

/// One `sendmsg(MSG_DONTWAIT)`; returns bytes sent, 0 if the socket buffer is full.
fn send_nonblocking(fd: RawFd, chunks: &[Bytes], first_offset: usize) -> io::Result<usize> {
    let mut iovecs: Vec<libc::iovec> = Vec::with_capacity(chunks.len().min(IOVECS_PER_SEND_MAX));
    for (position, chunk) in chunks.iter().take(IOVECS_PER_SEND_MAX).enumerate() {
        let slice = if position == 0 {
            &chunk[first_offset..]
        } else {
            &chunk[..]
        };
        iovecs.push(libc::iovec {
            iov_base: slice.as_ptr() as *mut libc::c_void,
            iov_len: slice.len(),
        });
    }
    // SAFETY: msghdr is plain data; zeroed is a valid empty header.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_iov = iovecs.as_mut_ptr();
    header.msg_iovlen = iovecs.len() as _;
    loop {
        // SAFETY: the iovecs point into `chunks`, alive for the duration of the call.
        let result = unsafe { libc::sendmsg(fd, &header, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if result >= 0 {
            return Ok(result as usize);
        }
        let error = io::Error::last_os_error();
        match error.kind() {
            io::ErrorKind::WouldBlock => return Ok(0),
            io::ErrorKind::Interrupted => continue,
            _ => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::advance;
    use bytes::Bytes;

    #[test]
    fn advance_crosses_chunks() {
        let chunks = vec![
            Bytes::from_static(b"abc"),
            Bytes::from_static(b"de"),
            Bytes::from_static(b"fghij"),
        ];
        assert_eq!(advance(&chunks, 0, 0, 0), (0, 0));
        assert_eq!(advance(&chunks, 0, 0, 2), (0, 2));
        assert_eq!(advance(&chunks, 0, 2, 1), (1, 0));
        assert_eq!(advance(&chunks, 0, 1, 5), (2, 1));
        assert_eq!(advance(&chunks, 1, 0, 7), (3, 0));
    }
}
