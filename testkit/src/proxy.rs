//! A TCP proxy that puts a configurable round-trip time and network faults between a client (the
//! engine, a CLI, a benchmark strategy) and a real server (slapd, PostgreSQL).
//!
//! [`LatencyProxy::start`] listens on a free port of 127.0.0.1 and forwards every accepted
//! connection to one upstream address. Each direction of each connection is a timestamped queue: a
//! chunk of bytes is read as soon as it arrives, stamped, and written to the other side half the
//! round-trip time after it was read, in order. Pipelined traffic is therefore delayed, not
//! serialised: N requests sent back to back all arrive about RTT/2 later, not N × RTT/2 later.
//! Delays are measured with a `timerfd` (sub-millisecond precision) rather than tokio's
//! millisecond timer, so a 2 ms RTT is 2 ms and not 3 to 4.
//!
//! Everything is controlled while connections are open through a cheap cloneable [`ProxyHandle`]
//! (a [`LatencyProxy`] dereferences to one): the RTT, pausing all traffic, dropping every open
//! connection, refusing new ones, capping how many may be open, and counters.
//!
//! The proxy runs on its own thread (`latency-proxy`) with its own single-threaded tokio runtime, so
//! it keeps forwarding while the test's runtime is busy or blocked, and a benchmark can take its CPU
//! time apart ([`LatencyProxy::cpu_time`]). Memory is bounded per connection: at most
//! [`QUEUE_BYTES`] wait in each direction; beyond that the proxy stops reading from that side, and
//! TCP's flow control pushes back on the sender.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener, ToSocketAddrs};
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::error::{IoContext, Result, TestkitError};

/// Bytes that may wait in one direction of one connection before the proxy stops reading that side.
///
/// At 1 MiB the proxy itself never limits throughput below 200 MB/s at a 10 ms RTT (the queue only
/// has to hold RTT/2 worth of traffic), while a thousand open connections stay within a few GiB in the
/// worst case and use nothing when idle.
pub const QUEUE_BYTES: usize = 1024 * 1024;

/// The largest single read, and so the largest chunk one timestamp covers.
const READ_CHUNK: usize = 64 * 1024;

/// Chunks that may wait in one direction. Only a backstop: [`QUEUE_BYTES`] is the real bound, and
/// tokio's channel allocates its slots as they fill, so this costs nothing up front. It must exceed
/// the number of small reads (one LDAP request each) that arrive in RTT/2 at full speed.
const QUEUE_CHUNKS: usize = 64 * 1024;

/// How long to wait for the upstream server to accept a connection.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// After a failed `accept` (out of file descriptors, say), wait this long before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(10);

/// The settings every connection watches; any change wakes the connections' waits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Control {
    rtt: Duration,
    paused: bool,
    /// Bumped by [`ProxyHandle::drop_connections`]; a connection accepted under an older epoch closes.
    drop_epoch: u64,
    stopping: bool,
}

#[derive(Debug)]
struct Shared {
    addr: SocketAddr,
    upstream: SocketAddr,
    control: watch::Sender<Control>,
    refuse_new: AtomicBool,
    /// `usize::MAX` means no limit.
    max_connections: AtomicUsize,
    accepted: AtomicU64,
    rejected: AtomicU64,
    dropped: AtomicU64,
    upstream_failures: AtomicU64,
    open: AtomicUsize,
    bytes_to_upstream: AtomicU64,
    bytes_to_client: AtomicU64,
}

/// Counters of a [`LatencyProxy`], read with [`ProxyHandle::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections the listener accepted, including those closed at once (refused or over the cap).
    pub accepted: u64,
    /// Connections closed at once because of [`ProxyHandle::refuse_new`] or
    /// [`ProxyHandle::set_max_connections`].
    pub rejected: u64,
    /// Connections closed by [`ProxyHandle::drop_connections`].
    pub dropped: u64,
    /// Connections closed because the upstream server could not be reached.
    pub upstream_failures: u64,
    /// Connections open now (admitted and not yet closed, including those waiting for a resume).
    pub open: usize,
    /// Bytes delivered to the upstream server.
    pub bytes_to_upstream: u64,
    /// Bytes delivered back to clients.
    pub bytes_to_client: u64,
}

/// A cheap cloneable control for a running [`LatencyProxy`]. Every control takes effect at once, on
/// open connections too, and may be used from any thread or runtime without blocking.
#[derive(Clone)]
pub struct ProxyHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for ProxyHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let control = *self.shared.control.borrow();
        f.debug_struct("ProxyHandle")
            .field("addr", &self.shared.addr)
            .field("upstream", &self.shared.upstream)
            .field("rtt", &control.rtt)
            .field("paused", &control.paused)
            .finish_non_exhaustive()
    }
}

impl ProxyHandle {
    /// The address clients connect to (127.0.0.1 and the proxy's port).
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The server every connection is forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// A URL for the proxy with this scheme, e.g. `url("ldap")` is `ldap://127.0.0.1:<port>`.
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.shared.addr)
    }

    /// Sets the injected round-trip time: each direction delays every chunk by half of it, measured
    /// from when the proxy read the chunk. Bytes already waiting are re-timed against the new value
    /// (a chunk read 3 ms ago is sent at once when the RTT drops to 2 ms), and order is kept.
    pub fn set_rtt(&self, rtt: Duration) {
        self.shared.control.send_if_modified(|control| {
            let changed = control.rtt != rtt;
            control.rtt = rtt;
            changed
        });
    }

    /// The injected round-trip time.
    pub fn rtt(&self) -> Duration {
        self.shared.control.borrow().rtt
    }

    /// Holds all bytes in both directions of every connection (a network that stops delivering
    /// without closing anything). New connections are still accepted, but are not connected
    /// upstream until [`resume`](Self::resume). Each direction still reads up to [`QUEUE_BYTES`].
    pub fn pause(&self) {
        self.set_paused(true);
    }

    /// Delivers everything held since [`pause`](Self::pause), in order, and forwards normally again.
    pub fn resume(&self) {
        self.set_paused(false);
    }

    /// True between [`pause`](Self::pause) and [`resume`](Self::resume).
    pub fn is_paused(&self) -> bool {
        self.shared.control.borrow().paused
    }

    fn set_paused(&self, paused: bool) {
        self.shared.control.send_if_modified(|control| {
            let changed = control.paused != paused;
            control.paused = paused;
            changed
        });
    }

    /// Closes every connection open now, both sides at once, with a TCP reset, discarding bytes not
    /// yet delivered: a network failure as the client and the server see it. Connections accepted
    /// afterwards are forwarded normally. Returns without waiting for the proxy's thread to act;
    /// [`ProxyStats::open`] shows when it has.
    pub fn drop_connections(&self) {
        self.shared
            .control
            .send_modify(|control| control.drop_epoch += 1);
    }

    /// While `true`, every new connection is reset as soon as it is accepted, before anything is
    /// forwarded (a directory that is down: the client's first read or write fails). Open
    /// connections are not affected.
    pub fn refuse_new(&self, refuse: bool) {
        self.shared.refuse_new.store(refuse, Ordering::SeqCst);
    }

    /// Caps the number of open connections (connection throttling): a connection accepted while
    /// the cap is reached is closed at once (a plain close: the client reads end-of-stream). `None`
    /// removes the cap. Lowering the cap closes no open connection.
    pub fn set_max_connections(&self, max: Option<usize>) {
        self.shared
            .max_connections
            .store(max.unwrap_or(usize::MAX), Ordering::SeqCst);
    }

    /// The connection cap, if any.
    pub fn max_connections(&self) -> Option<usize> {
        match self.shared.max_connections.load(Ordering::SeqCst) {
            usize::MAX => None,
            max => Some(max),
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ProxyStats {
        let shared = &self.shared;
        ProxyStats {
            accepted: shared.accepted.load(Ordering::SeqCst),
            rejected: shared.rejected.load(Ordering::SeqCst),
            dropped: shared.dropped.load(Ordering::SeqCst),
            upstream_failures: shared.upstream_failures.load(Ordering::SeqCst),
            open: shared.open.load(Ordering::SeqCst),
            bytes_to_upstream: shared.bytes_to_upstream.load(Ordering::SeqCst),
            bytes_to_client: shared.bytes_to_client.load(Ordering::SeqCst),
        }
    }

    /// True until the proxy is stopped.
    pub fn is_running(&self) -> bool {
        !self.shared.control.borrow().stopping
    }
}

/// A latency- and fault-injecting TCP proxy in front of one server, running on its own thread.
///
/// It dereferences to its [`ProxyHandle`], which has all the controls; [`handle`](Self::handle)
/// gives a clone to move elsewhere. Dropping it (or [`stop`](Self::stop)) closes the listener and
/// every connection.
pub struct LatencyProxy {
    handle: ProxyHandle,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for LatencyProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LatencyProxy").field(&self.handle).finish()
    }
}

impl Deref for LatencyProxy {
    type Target = ProxyHandle;

    fn deref(&self) -> &ProxyHandle {
        &self.handle
    }
}

impl LatencyProxy {
    /// Starts a proxy to `upstream` with no injected latency. Works from inside or outside a tokio
    /// runtime; the proxy does not use the caller's.
    pub fn start(upstream: SocketAddr) -> Result<Self> {
        Self::start_with_rtt(upstream, Duration::ZERO)
    }

    /// Starts a proxy to `upstream` with round-trip time `rtt`.
    pub fn start_with_rtt(upstream: SocketAddr, rtt: Duration) -> Result<Self> {
        let listener = StdTcpListener::bind(("127.0.0.1", 0))
            .io_context(|| "latency proxy: binding 127.0.0.1".to_owned())?;
        let addr = listener
            .local_addr()
            .io_context(|| "latency proxy: reading the bound address".to_owned())?;
        listener
            .set_nonblocking(true)
            .io_context(|| "latency proxy: making the listener non-blocking".to_owned())?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .io_context(|| "latency proxy: building its runtime".to_owned())?;
        // Registering the listener here rather than on the thread makes a failure an error of start.
        let listener = {
            let _entered = runtime.enter();
            TcpListener::from_std(listener)
                .io_context(|| "latency proxy: registering the listener".to_owned())?
        };
        let (control, _) = watch::channel(Control {
            rtt,
            ..Control::default()
        });
        let shared = Arc::new(Shared {
            addr,
            upstream,
            control,
            refuse_new: AtomicBool::new(false),
            max_connections: AtomicUsize::new(usize::MAX),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            upstream_failures: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            bytes_to_upstream: AtomicU64::new(0),
            bytes_to_client: AtomicU64::new(0),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("latency-proxy".to_owned())
            .spawn(move || {
                runtime.block_on(accept_loop(listener, thread_shared));
                // Dropping the runtime here, off any async context, drops every connection task and
                // so closes every socket.
                drop(runtime);
            })
            .io_context(|| "latency proxy: spawning its thread".to_owned())?;
        tracing::debug!(%addr, %upstream, ?rtt, "latency proxy started");
        Ok(Self {
            handle: ProxyHandle { shared },
            thread: Some(thread),
        })
    }

    /// Starts a proxy in front of the server named by `url` (`scheme://host:port/...`, e.g. a
    /// slapd's `ldap://` URL), with round-trip time `rtt`. Use [`url`](ProxyHandle::url) for the
    /// address clients should use instead.
    pub fn in_front_of(url: &str, rtt: Duration) -> Result<Self> {
        Self::start_with_rtt(socket_addr_of_url(url)?, rtt)
    }

    /// A clone of the control handle.
    pub fn handle(&self) -> ProxyHandle {
        self.handle.clone()
    }

    /// CPU time (user and system) the proxy's thread has used so far, so a benchmark can leave it
    /// out of the client's figures. `None` once stopped or where the platform cannot tell.
    pub fn cpu_time(&self) -> Option<Duration> {
        let thread = self.thread.as_ref()?;
        thread_cpu_time(thread)
    }

    /// Stops the proxy: closes the listener (new connections are refused by the OS) and every open
    /// connection, and waits for its thread to finish. Idempotent.
    pub fn stop(&mut self) {
        self.handle
            .shared
            .control
            .send_modify(|control| control.stopping = true);
        if let Some(thread) = self.thread.take() {
            // A panic on the proxy's thread has already been reported there; nothing to add.
            let _ = thread.join();
            tracing::debug!(addr = %self.handle.shared.addr, "latency proxy stopped");
        }
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The socket address of the server a URL names: `scheme://[user@]host:port[/...]`. The host may be
/// a name, an IPv4 address or a bracketed IPv6 address; the port is required.
pub fn socket_addr_of_url(url: &str) -> Result<SocketAddr> {
    let invalid = |why: &str| TestkitError::Io {
        context: format!("latency proxy: upstream URL {url:?}"),
        source: io::Error::new(io::ErrorKind::InvalidInput, why.to_owned()),
    };
    let rest = url.split_once("://").map_or(url, |(_scheme, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_user, host_port)| host_port);
    if host_port.is_empty() {
        return Err(invalid("no host"));
    }
    host_port
        .to_socket_addrs()
        .io_context(|| format!("latency proxy: resolving the upstream URL {url:?}"))?
        .next()
        .ok_or_else(|| invalid("the host resolves to no address"))
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut control = shared.control.subscribe();
    let mut connections = JoinSet::new();
    loop {
        if control.borrow_and_update().stopping {
            break;
        }
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _peer)) => admit(client, &shared, &mut connections),
                Err(error) => {
                    tracing::debug!(%error, "latency proxy: accept failed");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            },
            changed = control.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            // Reap finished connections so the set only holds open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

fn admit(client: TcpStream, shared: &Arc<Shared>, connections: &mut JoinSet<()>) {
    shared.accepted.fetch_add(1, Ordering::SeqCst);
    if shared.refuse_new.load(Ordering::SeqCst) {
        shared.rejected.fetch_add(1, Ordering::SeqCst);
        reset(&client);
        return;
    }
    let max = shared.max_connections.load(Ordering::SeqCst);
    let admitted = shared
        .open
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |open| {
            (open < max).then_some(open + 1)
        })
        .is_ok();
    if !admitted {
        shared.rejected.fetch_add(1, Ordering::SeqCst);
        return;
    }
    let guard = OpenGuard(Arc::clone(shared));
    // Taken now, so a drop_connections that comes before the task first runs still closes it.
    let epoch = shared.control.borrow().drop_epoch;
    connections.spawn(async move {
        serve(client, &guard.0, epoch).await;
        drop(guard);
    });
}

/// Counts a connection as open for as long as its task lives, however the task ends.
struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Makes the next close of `stream` a reset that discards unsent bytes, as a broken network would.
fn reset(stream: &TcpStream) {
    // If this fails the close is an orderly one instead, which still closes the connection.
    let _ = stream.set_zero_linger();
}

async fn serve(mut client: TcpStream, shared: &Shared, epoch: u64) {
    let upstream = tokio::select! {
        () = dropped(shared, epoch) => {
            shared.dropped.fetch_add(1, Ordering::SeqCst);
            reset(&client);
            return;
        }
        upstream = connect_when_resumed(shared) => upstream,
    };
    let mut upstream = match upstream {
        Ok(upstream) => upstream,
        Err(error) => {
            tracing::debug!(%error, upstream = %shared.upstream, "latency proxy: upstream unreachable");
            shared.upstream_failures.fetch_add(1, Ordering::SeqCst);
            reset(&client);
            return;
        }
    };
    // Without TCP_NODELAY small requests would wait for Nagle on top of the injected delay.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);

    let clean = {
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = upstream.split();
        tokio::select! {
            () = dropped(shared, epoch) => {
                shared.dropped.fetch_add(1, Ordering::SeqCst);
                false
            }
            relayed = async {
                tokio::try_join!(
                    pipe(client_read, upstream_write, shared, &shared.bytes_to_upstream),
                    pipe(upstream_read, client_write, shared, &shared.bytes_to_client),
                )
            } => match relayed {
                Ok(_) => true,
                Err(error) => {
                    tracing::trace!(%error, "latency proxy: connection failed");
                    false
                }
            },
        }
    };
    if !clean {
        // One side failed or the connection was dropped: the other side sees a reset too, as it
        // would if the network between them had broken.
        reset(&client);
        reset(&upstream);
    }
}

/// Completes once [`ProxyHandle::drop_connections`] has been called after the connection was
/// accepted under `epoch`.
async fn dropped(shared: &Shared, epoch: u64) {
    let mut control = shared.control.subscribe();
    // An error means the proxy is going away, which closes the connection anyway.
    let _ = control
        .wait_for(|control| control.drop_epoch != epoch)
        .await;
}

async fn connect_when_resumed(shared: &Shared) -> io::Result<TcpStream> {
    let mut control = shared.control.subscribe();
    control
        .wait_for(|control| !control.paused)
        .await
        .map_err(|_| io::Error::other("the proxy is stopping"))?;
    match tokio::time::timeout(
        UPSTREAM_CONNECT_TIMEOUT,
        TcpStream::connect(shared.upstream),
    )
    .await
    {
        Ok(connected) => connected,
        Err(_elapsed) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "connecting upstream timed out",
        )),
    }
}

/// Bytes read from one side, waiting to be written to the other.
enum Chunk {
    Data {
        read_at: Instant,
        bytes: Vec<u8>,
        /// Holds `bytes.len()` of the direction's byte budget until the chunk is written.
        _budget: OwnedSemaphorePermit,
    },
    /// The side closed its writing half; passed on in order, after the data before it.
    End { read_at: Instant },
}

/// One direction of a connection: a reader that stamps and queues chunks as fast as they come (up
/// to the byte budget), and a writer that sends each chunk once it is due. The two run concurrently,
/// which is what keeps pipelined traffic from being serialised.
async fn pipe(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    shared: &Shared,
    delivered: &AtomicU64,
) -> io::Result<()> {
    let (queue, mut due) = mpsc::channel::<Chunk>(QUEUE_CHUNKS);
    let budget = Arc::new(Semaphore::new(QUEUE_BYTES));

    let read = async move {
        let mut buffer = vec![0u8; READ_CHUNK];
        loop {
            // Reserve room for a full read first, so a full queue stops reading (backpressure).
            let mut reserved = Arc::clone(&budget)
                .acquire_many_owned(READ_CHUNK as u32)
                .await
                .map_err(|_| io::Error::other("byte budget closed"))?;
            let n = from.read(&mut buffer).await?;
            let read_at = Instant::now();
            let chunk = match reserved.split(n) {
                Some(permit) if n > 0 => Chunk::Data {
                    read_at,
                    bytes: buffer[..n].to_vec(),
                    _budget: permit,
                },
                _ => Chunk::End { read_at },
            };
            drop(reserved);
            let end = matches!(chunk, Chunk::End { .. });
            if queue.send(chunk).await.is_err() {
                // The writer has stopped, and its error is the one to report.
                return Ok(());
            }
            if end {
                return Ok(());
            }
        }
    };

    let write = async move {
        let mut control = shared.control.subscribe();
        let mut timer = Timer::default();
        while let Some(chunk) = due.recv().await {
            match chunk {
                Chunk::Data {
                    read_at,
                    bytes,
                    _budget,
                } => {
                    wait_until_due(read_at, &mut control, &mut timer).await?;
                    to.write_all(&bytes).await?;
                    delivered.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                }
                Chunk::End { read_at } => {
                    wait_until_due(read_at, &mut control, &mut timer).await?;
                    to.shutdown().await?;
                    return Ok(());
                }
            }
        }
        Ok(())
    };

    tokio::try_join!(read, write).map(|_| ())
}

/// Waits until a chunk read at `read_at` is due (RTT/2 later) and the proxy is not paused,
/// re-reading the settings whenever they change.
async fn wait_until_due(
    read_at: Instant,
    control: &mut watch::Receiver<Control>,
    timer: &mut Timer,
) -> io::Result<()> {
    loop {
        let Control { rtt, paused, .. } = *control.borrow_and_update();
        if !paused {
            let due_at = read_at + rtt / 2;
            let now = Instant::now();
            if due_at <= now {
                return Ok(());
            }
            tokio::select! {
                slept = timer.sleep(due_at - now) => slept?,
                changed = control.changed() => changed.map_err(|_| stopping())?,
            }
        } else {
            control.changed().await.map_err(|_| stopping())?;
        }
    }
}

fn stopping() -> io::Error {
    io::Error::other("the proxy is stopping")
}

/// A sleep with sub-millisecond precision where the platform offers it.
///
/// tokio's timer rounds every deadline up to the next millisecond tick, which would turn a 1 ms half
/// round trip into 1 to 2 ms and inflate a 2 ms RTT by up to 100 %. A `timerfd` wakes the runtime
/// within microseconds of its deadline. It is created on first use, so connections at RTT 0 cost no
/// extra descriptors.
#[derive(Default)]
struct Timer {
    #[cfg(target_os = "linux")]
    fd: Option<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>>,
    /// Set once a timerfd could not be created or armed: tokio's timer serves from then on.
    coarse: bool,
}

impl Timer {
    /// Sleeps at least `duration` (never less: the deadlines it serves are lower bounds).
    async fn sleep(&mut self, duration: Duration) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        if !self.coarse {
            if self.fd.is_none() {
                self.fd = timerfd::create().ok();
            }
            if let Some(fd) = &self.fd
                && timerfd::arm(fd.get_ref(), duration).is_ok()
            {
                loop {
                    let mut ready = fd.readable().await?;
                    match ready.try_io(|fd| timerfd::consume(fd.get_ref())) {
                        Ok(fired) => return fired,
                        Err(_would_block) => continue,
                    }
                }
            }
            self.coarse = true;
        }
        tokio::time::sleep(duration).await;
        Ok(())
    }
}

#[cfg(target_os = "linux")]
mod timerfd {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::time::Duration;

    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;

    pub(super) fn create() -> io::Result<AsyncFd<OwnedFd>> {
        #[allow(unsafe_code)]
        // SAFETY: timerfd_create takes no pointers; it returns a new descriptor or -1.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        #[allow(unsafe_code)]
        // SAFETY: `raw` is a descriptor we just created and nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        #[allow(unsafe_code)]
        // SAFETY: the OwnedFd is moved into the AsyncFd, so the descriptor stays open and the same
        // until the AsyncFd is dropped.
        let registered = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) };
        registered.map_err(io::Error::from)
    }

    /// Arms the timer to fire once, `duration` from now (which also clears an unread expiry).
    pub(super) fn arm(fd: &OwnedFd, duration: Duration) -> io::Result<()> {
        // A zero it_value would disarm the timer instead of firing it at once.
        let duration = duration.max(Duration::from_nanos(1));
        let value = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: libc::time_t::try_from(duration.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: duration.subsec_nanos() as libc::c_long,
            },
        };
        #[allow(unsafe_code)]
        // SAFETY: `fd` is an open timerfd; `value` is a valid itimerspec that outlives the call, and a
        // null old_value is allowed.
        let rc = unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &value, std::ptr::null_mut()) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads the expiry count, so the descriptor stops being readable. `WouldBlock` when the timer has
    /// not fired yet (tokio's readiness can be stale after re-arming).
    pub(super) fn consume(fd: &OwnedFd) -> io::Result<()> {
        let mut expirations = [0u8; 8];
        #[allow(unsafe_code)]
        // SAFETY: the buffer is 8 writable bytes, the size a timerfd read requires.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                expirations.as_mut_ptr().cast::<libc::c_void>(),
                expirations.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(target_os = "linux")]
fn thread_cpu_time(thread: &JoinHandle<()>) -> Option<Duration> {
    use std::os::unix::thread::JoinHandleExt;

    let mut clock: libc::clockid_t = 0;
    #[allow(unsafe_code)]
    // SAFETY: the thread has not been joined (we hold its JoinHandle), so its pthread_t is valid;
    // `clock` is a valid out-pointer.
    let rc = unsafe { libc::pthread_getcpuclockid(thread.as_pthread_t(), &mut clock) };
    if rc != 0 {
        return None;
    }
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    #[allow(unsafe_code)]
    // SAFETY: `now` is a valid out-pointer for the duration of the call.
    let rc = unsafe { libc::clock_gettime(clock, &mut now) };
    if rc != 0 {
        return None;
    }
    Some(Duration::new(
        u64::try_from(now.tv_sec).ok()?,
        u32::try_from(now.tv_nsec).ok()?,
    ))
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu_time(_thread: &JoinHandle<()>) -> Option<Duration> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls_name_host_and_port() {
        let expected: SocketAddr = "127.0.0.1:3890".parse().unwrap();
        for url in [
            "ldap://127.0.0.1:3890",
            "ldap://127.0.0.1:3890/",
            "ldaps://127.0.0.1:3890/dc=example,dc=org?cn",
            "postgres://jim:secret@127.0.0.1:3890/jim?sslmode=disable",
            "127.0.0.1:3890",
        ] {
            assert_eq!(socket_addr_of_url(url).unwrap(), expected, "{url}");
        }
        assert_eq!(
            socket_addr_of_url("ldap://[::1]:636").unwrap(),
            "[::1]:636".parse::<SocketAddr>().unwrap()
        );
        for bad in ["ldap://", "ldap://127.0.0.1", "ldap:///dc=example"] {
            assert!(socket_addr_of_url(bad).is_err(), "{bad}");
        }
    }
}
