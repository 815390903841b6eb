//! One client connection, on the shard that accepted it. A reader task reads size-prefixed
//! frames and starts a handler task per request (pipelining, at most
//! `connection.requests.in.flight.max` in flight); a writer task awaits the handlers in request
//! order and writes their responses with vectored `sendmsg`, so record bytes go from the log
//! buffers to the socket without being concatenated. The socket fd is dup'ed so reader and
//! writer each own a glommio stream: no shared mutable state, no lock.
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

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use futures_lite::AsyncWriteExt;
use glommio::channels::local_channel;
use glommio::net::TcpStream;
use glommio::task::JoinHandle;

use crate::partition::append_order::AppendOrder;
use crate::protocol::frame::{check_frame_size, FrameError, ResponseFrame};
use crate::server::handlers;
use crate::shard::Shard;

/// iovecs per sendmsg call (Linux IOV_MAX is 1024).
const IOVECS_PER_SEND_MAX: usize = 1024;

type Pending = JoinHandle<Result<Option<ResponseFrame>, FrameError>>;

pub async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    let peer = stream
        .peer_addr()
        .map(|address| address.to_string())
        .unwrap_or_else(|_| "?".to_string());
    if let Err(error) = stream.set_nodelay(true) {
        log::debug!("{peer}: TCP_NODELAY: {error}");
    }
    // SAFETY: dup returns a new fd owned by the writer stream below (or -1 on failure).
    let writer_fd = unsafe { libc::dup(stream.as_raw_fd()) };
    if writer_fd < 0 {
        log::warn!("{peer}: dup failed: {}", io::Error::last_os_error());
        return;
    }
    // SAFETY: writer_fd is a fresh, valid socket fd that nothing else owns.
    let writer_stream = unsafe { TcpStream::from_raw_fd(writer_fd) };
    let _open = shard.shutdown.connection_opened();
    let in_flight_max = shard.config.connection_requests_in_flight_max as usize;
    let (sender, receiver) = local_channel::new_bounded::<Pending>(in_flight_max);
    let writer_peer = peer.clone();
    let writer = glommio::spawn_local(async move {
        write_responses(writer_stream, receiver, &writer_peer).await
    });
    let outcome = read_requests(&shard, stream, sender).await;
    if let Err(error) = outcome {
        log::debug!("{peer}: connection closed: {error}");
    }
    writer.await;
}

async fn read_requests(
    shard: &Rc<Shard>,
    stream: TcpStream,
    sender: local_channel::LocalSender<Pending>,
) -> io::Result<()> {
    let max = shard.config.socket_request_max_bytes;
    let fd = stream.as_raw_fd();
    let request_order = AppendOrder::new();
    let client_host: Rc<str> = stream
        .peer_addr()
        .map(|address| format!("/{}", address.ip()))
        .unwrap_or_default()
        .into();
    // Frames are cut from one read buffer: a recv takes whatever the socket holds (several
    // pipelined requests at once), straight into uninitialized capacity.
    let mut buffer = BytesMut::new();
    loop {
        // Shutdown: stop at a request boundary; what was read is answered by the writer.
        if shard.shutdown.is_draining() {
            return Ok(());
        }
        let more = futures_lite::future::or(fill(&stream, fd, &mut buffer, 4), async {
            shard.shutdown.draining().await;
            Ok(false)
        })
        .await?;
        if !more || buffer.len() < 4 {
            return Ok(()); // closed (or draining) between requests
        }
        let size_prefix = [buffer[0], buffer[1], buffer[2], buffer[3]];
        let size = match check_frame_size(i32::from_be_bytes(size_prefix), max) {
            Ok(size) => size,
            Err(error) => {
                log::warn!("closing connection: {error}");
                shutdown(fd);
                return Ok(());
            }
        };
        // The shard's request-memory budget is taken before the frame is buffered and given
        // back when its handler finishes: a flood of large requests waits here, unread. A frame
        // keeps its read chunk alive (its own bytes plus up to READ_AHEAD_BYTES read past it),
        // so that is what it is charged, within the budget's total.
        let charge = (size + READ_AHEAD_BYTES) as u64;
        let permit = shard
            .request_memory
            .acquire_static_permit(charge.min(shard.config.queued_max_request_bytes))
            .await
            .map_err(|_| io::Error::other("request memory budget closed"))?;
        // The buffer holds the size prefix, so this returns true or an error.
        fill(&stream, fd, &mut buffer, 4 + size).await?;
        let _ = buffer.split_to(4);
        let frame = buffer.split_to(size);
        // Every request takes its turn now, in arrival order (module header: who keeps it).
        let ticket = request_order.take();
        let handler = handlers::handle(shard.clone(), frame, ticket, client_host.clone());
        let task = glommio::spawn_local(async move {
            let _permit = permit;
            handler.await
        })
        .detach();
        if sender.send(task).await.is_err() {
            return Ok(()); // writer gone: connection is closing
        }
    }
}

/// Bytes read past the frame being completed, so one recv can take several pipelined requests.
const READ_AHEAD_BYTES: usize = 64 << 10;

/// Reads until `buffer` holds at least `want` bytes, taking up to `READ_AHEAD_BYTES` more if the
/// socket has them. Ok(false): the peer closed with `buffer` empty (between requests); closing
/// in the middle of a frame is an `UnexpectedEof` error.
async fn fill(
    stream: &TcpStream,
    fd: RawFd,
    buffer: &mut BytesMut,
    want: usize,
) -> io::Result<bool> {
    while buffer.len() < want {
        let room = want - buffer.len() + READ_AHEAD_BYTES;
        buffer.reserve(room);
        let spare = &mut buffer.spare_capacity_mut()[..room];
        // SAFETY: recv writes at most `spare.len()` bytes into memory we own; MSG_DONTWAIT
        // never blocks the shard.
        let received = unsafe {
            libc::recv(
                fd,
                spare.as_mut_ptr().cast(),
                spare.len(),
                libc::MSG_DONTWAIT,
            )
        };
        match received {
            0 if buffer.is_empty() => return Ok(false),
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            received if received > 0 => {
                // SAFETY: the kernel initialized `received` bytes after the current length.
                unsafe { buffer.set_len(buffer.len() + received as usize) };
            }
            _ => {
                let error = io::Error::last_os_error();
                match error.kind() {
                    // Wait until readable (or closed: the next recv then returns 0).
                    io::ErrorKind::WouldBlock => {
                        stream.peek(&mut [0u8; 1]).await?;
                    }
                    io::ErrorKind::Interrupted => {}
                    _ => return Err(error),
                }
            }
        }
    }
    Ok(true)
}

async fn write_responses(
    mut stream: TcpStream,
    receiver: local_channel::LocalReceiver<Pending>,
    peer: &str,
) {
    let fd = stream.as_raw_fd();
    while let Some(task) = receiver.recv().await {
        let outcome = match task.await {
            Some(outcome) => outcome,
            None => Err(FrameError::malformed("handler", "task cancelled")),
        };
        match outcome {
            Ok(Some(frame)) => {
                if let Err(error) = write_vectored(&mut stream, fd, &frame.chunks).await {
                    log::debug!("{peer}: write failed: {error}");
                    shutdown(fd);
                    return;
                }
            }
            Ok(None) => {} // acks=0 produce: no response
            Err(error) => {
                log::warn!("{peer}: closing connection: {error}");
                shutdown(fd);
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

/// Writes all chunks: non-blocking `sendmsg` over as many chunks as fit, and when the socket is
/// full, glommio's async write (which waits for writability) for the rest of the current chunk.
async fn write_vectored(stream: &mut TcpStream, fd: RawFd, chunks: &[Bytes]) -> io::Result<()> {
    let mut index = 0;
    let mut offset = 0;
    while index < chunks.len() {
        let sent = send_nonblocking(fd, &chunks[index..], offset)?;
        let (next_index, next_offset) = advance(chunks, index, offset, sent);
        index = next_index;
        offset = next_offset;
        if index < chunks.len() && sent == 0 {
            let rest = chunks[index].slice(offset..);
            stream.write_all(&rest).await?;
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
