//! A TCP proxy that adds a fixed delay each way: the network between a Lambda function and its
//! database, where `tc netem` is not available.
//!
//! Each direction of each connection has a reader thread, which stamps every chunk it reads with
//! the time it is due, and a writer thread, which sleeps until then and writes it: chunks keep
//! their order and each is delayed by the same amount, however many are in flight. OS threads
//! rather than tokio tasks because tokio's timer counts whole milliseconds, and the delays here
//! are 0.25 and 0.5 ms: the writer sleeps to just before the chunk is due and spins the rest,
//! since a sleeping thread wakes 0.05-0.1 ms late. The hand-offs between the threads cost
//! time too, so `calibrate` sets the delay to what makes a round trip take the target longer.
//!
//! It also counts round trips: each time a client sends after its server last sent (or first),
//! the client has waited for an answer; requests it pipelines count once.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A running proxy; it lives as long as the benchmark.
pub struct DelayProxy {
    pub address: SocketAddr,
    /// The delay added each way, in nanoseconds; read at every chunk, so it can be tuned.
    one_way_nanos: Arc<AtomicU64>,
    /// When each connection was accepted: a function's first one ends its init's part before
    /// connecting.
    accepted: Arc<Mutex<Vec<Instant>>>,
    /// Round trips so far, over all connections.
    round_trips: Arc<AtomicU64>,
}

impl DelayProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`, adding
    /// `one_way` each way.
    pub fn start(upstream: SocketAddr, one_way: Duration) -> DelayProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let address = listener.local_addr().expect("proxy address");
        let one_way_nanos = Arc::new(AtomicU64::new(one_way.as_nanos() as u64));
        let delay = Arc::clone(&one_way_nanos);
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let accepts = Arc::clone(&accepted);
        let round_trips = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&round_trips);
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                accepts.lock().expect("not poisoned").push(Instant::now());
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                for stream in [&client, &server] {
                    stream.set_nodelay(true).ok();
                }
                let turns = Turns {
                    server_spoke_last: Arc::new(AtomicBool::new(true)),
                    round_trips: Arc::clone(&counted),
                };
                forward(
                    &client,
                    &server,
                    Arc::clone(&delay),
                    Side::Client(turns.clone()),
                );
                forward(&server, &client, Arc::clone(&delay), Side::Server(turns));
            }
        });
        DelayProxy {
            address,
            one_way_nanos,
            accepted,
            round_trips,
        }
    }

    pub fn one_way(&self) -> Duration {
        Duration::from_nanos(self.one_way_nanos.load(Ordering::Relaxed))
    }

    pub fn set_one_way(&self, one_way: Duration) {
        self.one_way_nanos
            .store(one_way.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Round trips counted so far, over all connections: read before and after a batch.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// The first connection accepted at or after `since`.
    pub fn first_connection_since(&self, since: Instant) -> Option<Instant> {
        let accepted = self.accepted.lock().expect("not poisoned");
        accepted.iter().copied().find(|&at| at >= since)
    }
}

/// The last stretch of a delay is spun, not slept.
const SPIN: Duration = Duration::from_micros(150);

/// Who spoke last on one connection, and the proxy's round-trip count.
#[derive(Clone)]
struct Turns {
    server_spoke_last: Arc<AtomicBool>,
    round_trips: Arc<AtomicU64>,
}

/// Which way a forwarding thread copies.
enum Side {
    Client(Turns),
    Server(Turns),
}

impl Side {
    /// A chunk arrived from this side.
    fn spoke(&self) {
        match self {
            Side::Client(turns) => {
                if turns.server_spoke_last.swap(false, Ordering::Relaxed) {
                    turns.round_trips.fetch_add(1, Ordering::Relaxed);
                }
            }
            Side::Server(turns) => turns.server_spoke_last.store(true, Ordering::Relaxed),
        }
    }
}

/// Copies `from` to `to`, each chunk `delay` (in nanoseconds) after it was read.
fn forward(from: &TcpStream, to: &TcpStream, delay: Arc<AtomicU64>, side: Side) {
    let (mut from, mut to) = (
        from.try_clone().expect("clone"),
        to.try_clone().expect("clone"),
    );
    let (chunks, due_chunks) = mpsc::channel::<(Instant, Vec<u8>)>();
    thread::spawn(move || {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buffer) {
                Ok(0) | Err(_) => return, // dropping `chunks` tells the writer
                Ok(n) => {
                    side.spoke();
                    let due = Instant::now() + Duration::from_nanos(delay.load(Ordering::Relaxed));
                    if chunks.send((due, buffer[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    thread::spawn(move || {
        for (due, chunk) in due_chunks {
            let now = Instant::now();
            if due > now + SPIN {
                thread::sleep(due - now - SPIN);
            }
            while Instant::now() < due {
                std::hint::spin_loop();
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        // The other side closed (or broke): pass the end on.
        to.shutdown(Shutdown::Write).ok();
    });
}
