//! The latency proxy against a real echo server (and slapd): latency is injected per direction
//! without serialising pipelined traffic, and every control (RTT, pause, drop, refuse, cap, stop)
//! acts on live connections.
//!
//! Timed assertions use physical lower bounds (a round trip through a proxy adding RTT takes at least
//! RTT) and wide upper bounds, so a loaded 2-core machine cannot make them fail.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use jim_export_testkit::proxy::{LatencyProxy, ProxyHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Long enough that "it never happened" is not a race, short enough to keep the tests fast.
const QUIET: Duration = Duration::from_millis(300);
/// How long anything that should happen may take on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(10);

/// An echo server on the test's runtime that counts what it sees.
struct Echo {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    received: Arc<AtomicU64>,
}

async fn echo_server() -> Echo {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo = Echo {
        addr: listener.local_addr().unwrap(),
        accepted: Arc::default(),
        open: Arc::default(),
        received: Arc::default(),
    };
    let (accepted, open, received) = (
        echo.accepted.clone(),
        echo.open.clone(),
        echo.received.clone(),
    );
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            open.fetch_add(1, Ordering::SeqCst);
            let (open, received) = (open.clone(), received.clone());
            tokio::spawn(async move {
                stream.set_nodelay(true).unwrap();
                let mut buffer = vec![0u8; 64 * 1024];
                loop {
                    match stream.read(&mut buffer).await {
                        Ok(0) => {
                            let _ = stream.shutdown().await;
                            break;
                        }
                        Ok(n) => {
                            received.fetch_add(n as u64, Ordering::SeqCst);
                            if stream.write_all(&buffer[..n]).await.is_err() {
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                }
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    echo
}

async fn connect(proxy: &ProxyHandle) -> TcpStream {
    let stream = TcpStream::connect(proxy.addr()).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Sends `message` and reads its echo; returns how long that took.
async fn round_trip(stream: &mut TcpStream, message: &[u8]) -> Duration {
    let started = Instant::now();
    stream.write_all(message).await.unwrap();
    let mut echoed = vec![0u8; message.len()];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut echoed))
        .await
        .expect("the echo never came back")
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(echoed, message);
    elapsed
}

/// Asserts that the peer has closed or reset the connection, and sent nothing before.
async fn assert_closed(stream: &mut TcpStream) {
    let mut buffer = [0u8; 64];
    match tokio::time::timeout(PATIENCE, stream.read(&mut buffer)).await {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("expected a closed connection, read {n} bytes"),
        Err(_) => panic!("the connection is still open after {PATIENCE:?}"),
    }
}

/// Asserts that nothing arrives on `stream` for [`QUIET`].
async fn assert_quiet(stream: &mut TcpStream) {
    let mut buffer = [0u8; 64];
    if let Ok(read) = tokio::time::timeout(QUIET, stream.read(&mut buffer)).await {
        panic!("expected nothing while paused, got {read:?}");
    }
}

/// Waits until `condition` holds, failing after [`PATIENCE`].
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_request_round_trips_at_zero_rtt() {
    let echo = echo_server().await;
    let proxy = LatencyProxy::start(echo.addr).unwrap();
    assert_eq!(proxy.rtt(), Duration::ZERO);
    assert_eq!(proxy.upstream(), echo.addr);
    assert_eq!(proxy.url("ldap"), format!("ldap://{}", proxy.addr()));
    assert!(proxy.addr().ip().is_loopback());

    let mut stream = connect(&proxy).await;
    round_trip(&mut stream, b"hello through the proxy").await;

    let stats = proxy.stats();
    assert_eq!(stats.accepted, 1);
    assert_eq!(stats.open, 1);
    assert_eq!(stats.bytes_to_upstream, 23);
    eventually("the echo to be counted", || {
        proxy.stats().bytes_to_client == 23
    })
    .await;
    assert_eq!(echo.accepted.load(Ordering::SeqCst), 1);

    // A client's orderly close travels through to the server, and the proxy forgets the connection.
    drop(stream);
    eventually("the upstream side to close", || {
        echo.open.load(Ordering::SeqCst) == 0
    })
    .await;
    eventually("the connection to be closed", || proxy.stats().open == 0).await;
}

#[tokio::test]
async fn one_request_takes_at_least_the_rtt() {
    let echo = echo_server().await;
    let rtt = Duration::from_millis(20);
    let proxy = LatencyProxy::start_with_rtt(echo.addr, rtt).unwrap();
    let mut stream = connect(&proxy).await;
    for _ in 0..3 {
        let elapsed = round_trip(&mut stream, b"ping").await;
        assert!(elapsed >= rtt, "a round trip took {elapsed:?} < {rtt:?}");
        assert!(elapsed < PATIENCE);
    }
    assert!(proxy.cpu_time().is_some());
}

#[tokio::test]
async fn pipelined_requests_are_not_serialised() {
    const REQUESTS: usize = 50;
    const SIZE: usize = 64;
    let echo = echo_server().await;
    let rtt = Duration::from_millis(20);
    let proxy = LatencyProxy::start_with_rtt(echo.addr, rtt).unwrap();
    let mut stream = connect(&proxy).await;
    // Connect upstream first, so the timing below is of the requests alone.
    round_trip(&mut stream, b"warm up").await;

    let requests: Vec<Vec<u8>> = (0..REQUESTS)
        .map(|i| vec![u8::try_from(i).unwrap(); SIZE])
        .collect();
    let (mut reader, mut writer) = stream.split();
    let started = Instant::now();
    let send = async {
        for request in &requests {
            writer.write_all(request).await.unwrap();
        }
    };
    let receive = async {
        let mut responses = vec![0u8; REQUESTS * SIZE];
        reader.read_exact(&mut responses).await.unwrap();
        responses
    };
    let ((), responses) = tokio::time::timeout(PATIENCE, async { tokio::join!(send, receive) })
        .await
        .expect("the responses never came back");
    let elapsed = started.elapsed();

    assert_eq!(responses, requests.concat(), "responses out of order");
    assert!(
        elapsed >= rtt,
        "{REQUESTS} requests took {elapsed:?} < {rtt:?}"
    );
    // Serialised, they would take REQUESTS × RTT/2 or more; pipelined, about one RTT.
    assert!(
        elapsed < rtt * 10,
        "{REQUESTS} pipelined requests took {elapsed:?}, serialised by the proxy?"
    );
}

#[tokio::test]
async fn changing_the_rtt_mid_connection_takes_effect() {
    let echo = echo_server().await;
    let proxy = LatencyProxy::start(echo.addr).unwrap();
    let mut stream = connect(&proxy).await;
    round_trip(&mut stream, b"fast").await;

    let slow = Duration::from_millis(200);
    proxy.set_rtt(slow);
    assert_eq!(proxy.rtt(), slow);
    let elapsed = round_trip(&mut stream, b"slow").await;
    assert!(elapsed >= slow, "took {elapsed:?} at an RTT of {slow:?}");

    proxy.set_rtt(Duration::ZERO);
    let elapsed = round_trip(&mut stream, b"fast again").await;
    assert!(
        elapsed < slow,
        "took {elapsed:?} after the RTT went back to 0"
    );

    // Bytes already waiting are re-timed: a request held for a minute goes at once when the RTT drops.
    proxy.set_rtt(Duration::from_secs(60));
    let started = Instant::now();
    stream.write_all(b"held").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    proxy.set_rtt(Duration::ZERO);
    let mut echoed = [0u8; 4];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut echoed))
        .await
        .expect("a held request was not re-timed")
        .unwrap();
    assert_eq!(&echoed, b"held");
    assert!(started.elapsed() < PATIENCE);
}

#[tokio::test]
async fn pause_holds_bytes_and_resume_delivers_them_in_order() {
    let echo = echo_server().await;
    let proxy = LatencyProxy::start(echo.addr).unwrap();
    let mut live = connect(&proxy).await;
    round_trip(&mut live, b"before").await;
    let received_before = echo.received.load(Ordering::SeqCst);

    proxy.pause();
    assert!(proxy.is_paused());
    for part in [&b"one,"[..], b"two,", b"three"] {
        live.write_all(part).await.unwrap();
        tokio::task::yield_now().await;
    }
    // A connection opened while paused is accepted but not forwarded.
    let mut late = connect(&proxy).await;
    late.write_all(b"late").await.unwrap();
    assert_quiet(&mut live).await;
    assert_quiet(&mut late).await;
    assert_eq!(echo.received.load(Ordering::SeqCst), received_before);
    assert_eq!(echo.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(proxy.stats().accepted, 2);

    proxy.resume();
    assert!(!proxy.is_paused());
    let mut echoed = [0u8; 13];
    tokio::time::timeout(PATIENCE, live.read_exact(&mut echoed))
        .await
        .expect("held bytes were not delivered")
        .unwrap();
    assert_eq!(&echoed, b"one,two,three");
    let mut echoed = [0u8; 4];
    tokio::time::timeout(PATIENCE, late.read_exact(&mut echoed))
        .await
        .expect("the late connection was not forwarded")
        .unwrap();
    assert_eq!(&echoed, b"late");
    assert_eq!(echo.accepted.load(Ordering::SeqCst), 2);
    round_trip(&mut live, b"after").await;
}

#[tokio::test]
async fn drop_connections_closes_live_connections_and_keeps_accepting() {
    let echo = echo_server().await;
    let proxy = LatencyProxy::start(echo.addr).unwrap();
    let mut first = connect(&proxy).await;
    let mut second = connect(&proxy).await;
    round_trip(&mut first, b"first").await;
    round_trip(&mut second, b"second").await;
    let received = echo.received.load(Ordering::SeqCst);

    // Bytes the proxy holds when the connection drops are lost, as on a broken network.
    proxy.pause();
    first.write_all(b"lost").await.unwrap();
    // Usually in the proxy's queue by now, else still in its socket buffer: lost either way.
    tokio::time::sleep(Duration::from_millis(20)).await;
    proxy.drop_connections();
    assert_closed(&mut first).await;
    assert_closed(&mut second).await;
    eventually("the server's side to close", || {
        echo.open.load(Ordering::SeqCst) == 0
    })
    .await;
    eventually("the proxy to forget them", || proxy.stats().open == 0).await;
    assert_eq!(proxy.stats().dropped, 2);
    proxy.resume();

    let mut third = connect(&proxy).await;
    round_trip(&mut third, b"third").await;
    assert_eq!(
        echo.received.load(Ordering::SeqCst),
        received + 5,
        "the held bytes reached the server"
    );
    assert_eq!(proxy.stats().open, 1);
}

#[tokio::test]
async fn refuse_new_makes_new_connections_fail_and_leaves_open_ones() {
    let echo = echo_server().await;
    let proxy = LatencyProxy::start(echo.addr).unwrap();
    let mut open = connect(&proxy).await;
    round_trip(&mut open, b"open").await;

    proxy.refuse_new(true);
    if let Ok(mut refused) = TcpStream::connect(proxy.addr()).await {
        // The kernel completes the handshake before the proxy can refuse; the reset follows at once.
        let _ = refused.write_all(b"refused").await;
        assert_closed(&mut refused).await;
    }
    round_trip(&mut open, b"still open").await;
    assert_eq!(echo.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(proxy.stats().rejected, 1);

    proxy.refuse_new(false);
    let mut again = connect(&proxy).await;
    round_trip(&mut again, b"again").await;
    assert_eq!(echo.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn max_connections_closes_excess_connections() {
    let echo = echo_server().await;
    let proxy = LatencyProxy::start(echo.addr).unwrap();
    proxy.set_max_connections(Some(1));
    assert_eq!(proxy.max_connections(), Some(1));

    let mut first = connect(&proxy).await;
    round_trip(&mut first, b"first").await;
    let mut excess = connect(&proxy).await;
    let _ = excess.write_all(b"excess").await;
    assert_closed(&mut excess).await;
    assert_eq!(proxy.stats().rejected, 1);
    round_trip(&mut first, b"first again").await;

    drop(first);
    eventually("the first connection to close", || proxy.stats().open == 0).await;
    let mut next = connect(&proxy).await;
    round_trip(&mut next, b"next").await;

    proxy.set_max_connections(None);
    let mut another = connect(&proxy).await;
    round_trip(&mut another, b"another").await;
    assert_eq!(proxy.stats().open, 2);
}

#[tokio::test]
async fn ten_megabytes_each_way_keep_their_order_and_content() {
    const TOTAL: usize = 10 * 1024 * 1024;
    let echo = echo_server().await;
    let proxy = LatencyProxy::start_with_rtt(echo.addr, Duration::from_millis(2)).unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    let data: Vec<u8> = std::iter::repeat_with(|| rng.u8(..)).take(TOTAL).collect();

    let mut stream = connect(&proxy).await;
    let (mut reader, mut writer) = stream.split();
    let send = async {
        // Uneven writes, so chunk boundaries fall anywhere.
        let mut sent = 0;
        let mut size = 1;
        while sent < TOTAL {
            let end = (sent + size).min(TOTAL);
            writer.write_all(&data[sent..end]).await.unwrap();
            sent = end;
            size = size * 7 % 100_003 + 1;
        }
        writer.shutdown().await.unwrap();
    };
    let receive = async {
        let mut echoed = Vec::with_capacity(TOTAL);
        reader.read_to_end(&mut echoed).await.unwrap();
        echoed
    };
    let ((), echoed) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(send, receive)
    })
    .await
    .expect("10 MB did not make it through in a minute");

    assert_eq!(echoed.len(), TOTAL);
    assert!(echoed == data, "the echoed bytes differ from those sent");
    let stats = proxy.stats();
    assert_eq!(stats.bytes_to_upstream, TOTAL as u64);
    assert_eq!(stats.bytes_to_client, TOTAL as u64);
    assert_eq!(echo.received.load(Ordering::SeqCst), TOTAL as u64);
}

#[tokio::test]
async fn stop_closes_everything() {
    let echo = echo_server().await;
    let mut proxy = LatencyProxy::start(echo.addr).unwrap();
    let handle = proxy.handle();
    let mut stream = connect(&proxy).await;
    round_trip(&mut stream, b"alive").await;

    proxy.stop();
    assert!(!handle.is_running());
    assert_closed(&mut stream).await;
    assert!(TcpStream::connect(handle.addr()).await.is_err());
    eventually("the server's side to close", || {
        echo.open.load(Ordering::SeqCst) == 0
    })
    .await;
    proxy.stop();
}

/// The proxy needs no runtime from its caller and keeps forwarding while the caller's thread blocks.
#[test]
fn works_from_blocking_code_without_a_runtime() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buffer = [0u8; 5];
        stream.read_exact(&mut buffer).unwrap();
        stream.write_all(&buffer).unwrap();
    });
    let rtt = Duration::from_millis(10);
    let proxy = LatencyProxy::start_with_rtt(upstream, rtt).unwrap();
    let mut stream = std::net::TcpStream::connect(proxy.addr()).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let started = Instant::now();
    stream.write_all(b"block").unwrap();
    let mut echoed = [0u8; 5];
    stream.read_exact(&mut echoed).unwrap();
    assert!(started.elapsed() >= rtt);
    assert_eq!(&echoed, b"block");
    server.join().unwrap();
}

/// With a real directory: LDAP through the proxy pays the RTT, pipelined searches share it, and a
/// dropped connection surfaces as an error on the client.
#[tokio::test]
async fn slapd_through_the_proxy() {
    use jim_export_testkit::Slapd;
    use ldap3::{LdapConnAsync, Scope};

    let slapd = match Slapd::shared().await {
        Ok(slapd) => slapd,
        Err(error) => {
            eprintln!("SKIPPED slapd_through_the_proxy: no slapd ({error})");
            return;
        }
    };
    let rtt = Duration::from_millis(20);
    let proxy = LatencyProxy::in_front_of(slapd.ldap_url(), rtt).unwrap();
    let (connection, mut ldap) = LdapConnAsync::new(&proxy.url("ldap")).await.unwrap();
    ldap3::drive!(connection);

    let started = Instant::now();
    ldap.simple_bind(slapd.admin_dn(), slapd.admin_password())
        .await
        .unwrap()
        .success()
        .unwrap();
    assert!(started.elapsed() >= rtt);

    const SEARCHES: usize = 50;
    let started = Instant::now();
    let mut searches = tokio::task::JoinSet::new();
    for _ in 0..SEARCHES {
        let mut ldap = ldap.clone();
        let base = slapd.suffix().to_owned();
        searches.spawn(async move {
            let (entries, _) = ldap
                .search(&base, Scope::Base, "(objectClass=*)", vec!["1.1"])
                .await
                .unwrap()
                .success()
                .unwrap();
            entries.len()
        });
    }
    while let Some(found) = searches.join_next().await {
        assert_eq!(found.unwrap(), 1);
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= rtt);
    // Serialised, they would take SEARCHES × RTT; pipelined, about one RTT.
    assert!(
        elapsed < rtt * 10,
        "{SEARCHES} concurrent searches took {elapsed:?}"
    );

    proxy.drop_connections();
    let after = tokio::time::timeout(
        PATIENCE,
        ldap.search(slapd.suffix(), Scope::Base, "(objectClass=*)", vec!["1.1"]),
    )
    .await
    .expect("the dropped connection went unnoticed");
    assert!(after.is_err(), "a search succeeded on a dropped connection");
}
