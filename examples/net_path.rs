//! The socket path measured outside the broker (issue 12, item 3): what io_uring's own socket
//! operations would save against what the shards do today, on this machine's loopback.
//!
//! Today a connection reads with `recv(MSG_DONTWAIT)` and, when the socket is empty, waits for
//! readiness through io_uring (a `POLL_ADD`, which glommio submits) and reads again; it writes
//! with `sendmsg(MSG_DONTWAIT)`. glommio 0.9 does not expose io_uring's socket operations
//! (`RECV`, provided buffers, `SEND`, `SEND_ZC`) on its public API, so trying them in the broker
//! needs a ring of Sluice's own per shard or a change to glommio. This program answers first
//! whether that is worth it: one server thread (pinned to CPU 0) on one io_uring, one client
//! thread (CPU 1) over loopback TCP, length-prefixed frames, one request in flight.
//!
//! - `small`: 1,100-byte requests (a 1 KiB record in a Produce), 64-byte responses.
//! - `batch`: 16 KiB requests (a full batch), 64-byte responses.
//! - `large`: 64-byte requests, 1 MiB responses (a Fetch).
//!
//! Read variants: `readiness` (today: recv, and on EAGAIN a POLL_ADD then recv), `recv`
//! (io_uring RECV into the connection's buffer), `provided` (io_uring RECV into a kernel-picked
//! provided buffer, copied out and handed back). Write variants: `sendmsg` (today), `send`
//! (io_uring SEND), `send_zc` (io_uring SEND_ZC; its notifications are reaped as they come).
//! Each line: server CPU per request (user + system of the server thread, getrusage) and the
//! client's round-trip percentiles.
//!
//! Usage: cargo run --release --example net_path [-- --requests N]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Instant;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

const PROVIDED_GROUP: u16 = 7;
const PROVIDED_COUNT: u16 = 16;
const PROVIDED_BYTES: usize = 64 << 10;

#[derive(Clone, Copy, Debug, PartialEq)]
enum ReadVia {
    Readiness,
    Recv,
    Provided,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum WriteVia {
    Sendmsg,
    Send,
    SendZc,
}

struct Server {
    ring: IoUring,
    fd: i32,
    /// Bytes read and not yet consumed as frames.
    buffer: Vec<u8>,
    provided: Vec<u8>,
    /// SEND_ZC notifications still to come.
    notifications: usize,
}

impl Server {
    fn new(fd: i32, read: ReadVia) -> Server {
        let ring = IoUring::new(64).expect("io_uring");
        let mut server = Server {
            ring,
            fd,
            buffer: Vec::with_capacity(1 << 20),
            provided: vec![0; PROVIDED_BYTES * PROVIDED_COUNT as usize],
            notifications: 0,
        };
        if read == ReadVia::Provided {
            let entry = opcode::ProvideBuffers::new(
                server.provided.as_mut_ptr(),
                PROVIDED_BYTES as i32,
                PROVIDED_COUNT,
                PROVIDED_GROUP,
                0,
            )
            .build()
            .user_data(u64::MAX);
            let result = server.submit_one(entry);
            assert!(result >= 0, "provide buffers: {result}");
        }
        server
    }

    /// Submits `entry`, waits for its completion (reaping SEND_ZC notifications on the way).
    fn submit_one(&mut self, entry: squeue::Entry) -> i32 {
        self.submit_one_flags(entry).0
    }

    fn submit_one_flags(&mut self, entry: squeue::Entry) -> (i32, u32) {
        let tag = entry.get_user_data();
        // SAFETY: every buffer an entry points to outlives its completion (we wait for it,
        // and SEND_ZC's buffer is static for the run).
        unsafe {
            self.ring
                .submission()
                .push(&entry)
                .expect("submission queue full")
        };
        loop {
            self.ring.submit_and_wait(1).expect("io_uring_enter");
            let mut found = None;
            for completion in self.ring.completion() {
                if cqueue::notif(completion.flags()) {
                    self.notifications -= 1;
                    continue;
                }
                if cqueue::more(completion.flags()) {
                    self.notifications += 1;
                }
                if completion.user_data() == tag {
                    found = Some((completion.result(), completion.flags()));
                }
            }
            if let Some(found) = found {
                return found;
            }
        }
    }

    /// Reads at least once more into `buffer`; false at end of stream.
    fn read_more(&mut self, via: ReadVia) -> bool {
        let start = self.buffer.len();
        let room = 256 << 10;
        self.buffer.reserve(room);
        let spare = self.buffer.spare_capacity_mut().as_mut_ptr().cast::<u8>();
        let read = match via {
            ReadVia::Readiness => loop {
                // SAFETY: recv writes at most `room` bytes into reserved memory.
                let read = unsafe { libc::recv(self.fd, spare.cast(), room, libc::MSG_DONTWAIT) };
                if read >= 0 {
                    break read as i32;
                }
                let error = std::io::Error::last_os_error();
                assert_eq!(error.kind(), std::io::ErrorKind::WouldBlock, "{error}");
                let poll = opcode::PollAdd::new(types::Fd(self.fd), libc::POLLIN as u32)
                    .build()
                    .user_data(1);
                self.submit_one(poll);
            },
            ReadVia::Recv => {
                let entry = opcode::Recv::new(types::Fd(self.fd), spare, room as u32)
                    .build()
                    .user_data(2);
                self.submit_one(entry)
            }
            ReadVia::Provided => {
                let entry = opcode::Recv::new(types::Fd(self.fd), std::ptr::null_mut(), 0)
                    .buf_group(PROVIDED_GROUP)
                    .build()
                    .flags(squeue::Flags::BUFFER_SELECT)
                    .user_data(3);
                let (read, flags) = self.submit_one_flags(entry);
                if read > 0 {
                    let id = cqueue::buffer_select(flags).expect("a provided buffer");
                    let at = id as usize * PROVIDED_BYTES;
                    // SAFETY: the kernel wrote `read` bytes into buffer `id`; `spare` has room.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            self.provided[at..].as_ptr(),
                            spare,
                            read as usize,
                        )
                    };
                    // Hand the buffer back; it goes in with the next submission.
                    let back = opcode::ProvideBuffers::new(
                        self.provided[at..].as_mut_ptr(),
                        PROVIDED_BYTES as i32,
                        1,
                        PROVIDED_GROUP,
                        id,
                    )
                    .build()
                    .user_data(u64::MAX - 1);
                    // SAFETY: the provided region lives as long as the ring.
                    unsafe { self.ring.submission().push(&back).expect("submission") };
                }
                read
            }
        };
        assert!(
            read >= 0,
            "read: {}",
            std::io::Error::from_raw_os_error(-read)
        );
        // SAFETY: the kernel (or the copy) initialized `read` bytes after `start`.
        unsafe { self.buffer.set_len(start + read as usize) };
        read > 0
    }

    fn write_all(&mut self, via: WriteVia, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let written = match via {
                WriteVia::Sendmsg => {
                    let mut iov = libc::iovec {
                        iov_base: bytes.as_ptr() as *mut _,
                        iov_len: bytes.len(),
                    };
                    // SAFETY: a zeroed msghdr with one iovec over live memory.
                    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
                    header.msg_iov = &mut iov;
                    header.msg_iovlen = 1;
                    let sent = unsafe {
                        libc::sendmsg(self.fd, &header, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
                    };
                    if sent < 0 {
                        let error = std::io::Error::last_os_error();
                        assert_eq!(error.kind(), std::io::ErrorKind::WouldBlock, "{error}");
                        let poll = opcode::PollAdd::new(types::Fd(self.fd), libc::POLLOUT as u32)
                            .build()
                            .user_data(4);
                        self.submit_one(poll);
                        0
                    } else {
                        sent as i32
                    }
                }
                WriteVia::Send => {
                    let entry =
                        opcode::Send::new(types::Fd(self.fd), bytes.as_ptr(), bytes.len() as u32)
                            .build()
                            .user_data(5);
                    self.submit_one(entry)
                }
                WriteVia::SendZc => {
                    let entry =
                        opcode::SendZc::new(types::Fd(self.fd), bytes.as_ptr(), bytes.len() as u32)
                            .build()
                            .user_data(6);
                    self.submit_one(entry)
                }
            };
            assert!(
                written >= 0,
                "write: {}",
                std::io::Error::from_raw_os_error(-written)
            );
            bytes = &bytes[written as usize..];
        }
    }
}

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set, applied to the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn thread_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct for the calling thread.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Serves `requests` frames on `stream`; returns server CPU seconds.
fn serve(
    stream: TcpStream,
    read: ReadVia,
    write: WriteVia,
    response_bytes: usize,
    requests: usize,
) -> f64 {
    pin(0);
    stream.set_nodelay(true).expect("nodelay");
    let mut server = Server::new(stream.as_raw_fd(), read);
    let mut response = vec![0x5au8; response_bytes];
    response[..4].copy_from_slice(&(response_bytes as u32 - 4).to_be_bytes());
    let started = thread_cpu_seconds();
    for _ in 0..requests {
        loop {
            if server.buffer.len() >= 4 {
                let length = u32::from_be_bytes(server.buffer[..4].try_into().unwrap()) as usize;
                if server.buffer.len() >= 4 + length {
                    server.buffer.drain(..4 + length);
                    break;
                }
            }
            assert!(server.read_more(read), "client closed early");
        }
        server.write_all(write, &response);
    }
    // Reap the last zero-copy notifications before the buffer goes.
    while server.notifications > 0 {
        server.ring.submit_and_wait(1).expect("io_uring_enter");
        let done = server
            .ring
            .completion()
            .filter(|c| cqueue::notif(c.flags()))
            .count();
        server.notifications -= done;
    }
    let cpu = thread_cpu_seconds() - started;
    drop(stream);
    cpu
}

/// One run: (server CPU µs per request, p50, p99, p99.9 round trip in µs).
fn run(
    request_bytes: usize,
    response_bytes: usize,
    requests: usize,
    read: ReadVia,
    write: WriteVia,
) -> [f64; 4] {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        serve(stream, read, write, response_bytes, requests)
    });
    pin(1);
    let mut client = TcpStream::connect(address).expect("connect");
    client.set_nodelay(true).expect("nodelay");
    let mut request = vec![0xa5u8; request_bytes];
    request[..4].copy_from_slice(&(request_bytes as u32 - 4).to_be_bytes());
    let mut response = vec![0u8; response_bytes];
    let mut histogram = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
    let warmup = requests / 10;
    for index in 0..requests {
        let started = Instant::now();
        client.write_all(&request).expect("send");
        client.read_exact(&mut response).expect("receive");
        if index >= warmup {
            histogram
                .record(started.elapsed().as_nanos() as u64)
                .expect("record");
        }
    }
    let cpu = server.join().expect("server");
    let us = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    [cpu / requests as f64 * 1e6, us(0.5), us(0.99), us(0.999)]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut requests = 20_000usize;
    let mut rounds = 3usize;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|value| value.parse().ok())
                    .expect("--rounds N")
            }
            "--requests" => {
                requests = args
                    .next()
                    .and_then(|value| value.parse().ok())
                    .expect("--requests N")
            }
            other => panic!("unknown argument {other}"),
        }
    }
    println!(
        "kernel {}",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap()
            .trim()
    );
    // (scenario, request bytes, response bytes, requests, read, write)
    let mut cases = Vec::new();
    for read in [ReadVia::Readiness, ReadVia::Recv, ReadVia::Provided] {
        for write in [WriteVia::Sendmsg, WriteVia::Send] {
            cases.push(("small", 1100, 64, requests, read, write));
            cases.push(("batch", 16 << 10, 64, requests, read, write));
        }
    }
    for write in [WriteVia::Sendmsg, WriteVia::Send, WriteVia::SendZc] {
        let large = (requests / 40).max(100);
        cases.push(("large", 64, 1 << 20, large, ReadVia::Readiness, write));
    }
    // Rounds interleave the variants, so a noisy minute of the machine spreads over all of
    // them; each figure printed is the median over the rounds.
    let mut results = vec![Vec::new(); cases.len()];
    for _ in 0..rounds {
        for (case, result) in cases.iter().zip(&mut results) {
            let (_, request_bytes, response_bytes, count, read, write) = *case;
            result.push(run(request_bytes, response_bytes, count, read, write));
        }
    }
    println!("medians of {rounds} rounds");
    println!("what   read       write    requests  cpu_us   p50_us   p99_us   p99.9_us");
    for (case, result) in cases.iter().zip(&results) {
        let (scenario, _, _, count, read, write) = *case;
        let median = |column: usize| {
            let mut values: Vec<f64> = result.iter().map(|row| row[column]).collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        println!(
            "{scenario:<6} {:<10} {:<8} {count:>7} {:>8.2} {:>8.1} {:>8.1} {:>8.1}",
            format!("{read:?}").to_lowercase(),
            format!("{write:?}").to_lowercase(),
            median(0),
            median(1),
            median(2),
            median(3),
        );
    }
}
