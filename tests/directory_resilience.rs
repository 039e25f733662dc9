//! A directory killed in the middle of a run: operations lost with the connection are retried after
//! the reconnect (reading or converging first, since their outcome is unknown), later operations
//! succeed, and nothing is reported done that the directory does not hold.

use std::collections::HashMap;
use std::time::Duration;

use jim_export::config::{DirectoryConfig, ExportSettings};
use jim_export::directory::{Directory, DirectoryTuning, ExportJob};
use jim_export_testkit::support::directory::*;
use jim_export_testkit::{Slapd, SlapdOptions};
use tokio::sync::mpsc;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_mid_run_loses_nothing() -> TestResult {
    let mut slapd = Slapd::start(SlapdOptions::default()).await?;
    if !slapd.is_local() {
        eprintln!("skipped: an existing server (JIM_TEST_LDAP_URL) cannot be killed");
        return Ok(());
    }
    let base = format!("ou=People,{}", slapd.suffix());
    let groups_base = format!("ou=Groups,{}", slapd.suffix());
    let config =
        DirectoryConfig::simple(slapd.ldap_url(), slapd.admin_dn(), slapd.admin_password())
            .allowing_password_without_tls();
    let directory = Directory::connect_with(
        &config,
        DirectoryTuning {
            connections: Some(2),
            in_flight_per_connection: Some(8),
            // Slow enough that the kill lands in the middle of the run.
            ops_per_second: Some(400),
            max_operation_retries: 8,
            retry_backoff: Duration::from_millis(200),
            ..DirectoryTuning::default()
        },
    )
    .await?;
    let pt = person_type();
    let gt = group_type();
    let settings = ExportSettings {
        modify_batch_size: 10,
        ..ExportSettings::default()
    };

    // Groups that the run will fill, 10 values per Modify, so modifies are cut by the kill too.
    let groups: Vec<String> = (0..10).map(|g| format!("cn=g{g},{groups_base}")).collect();
    for (g, dn) in groups.iter().enumerate() {
        let e = Export::create()
            .text(group::DN, C::Add, dn)
            .text(group::CN, C::Add, &format!("g{g}"))
            .text(group::MEMBER, C::Add, &member(0));
        run_ok(&directory, job(&settings, &e, &gt, None)).await;
    }

    let mut jobs: Vec<ExportJob> = Vec::new();
    let mut people: HashMap<Uuid, String> = HashMap::new();
    let mut fills: HashMap<Uuid, usize> = HashMap::new();
    for i in 0..400 {
        let dn = format!("uid=k{i},{base}");
        let e = Export::create()
            .text(person::DN, C::Add, &dn)
            .text(person::UID, C::Add, &format!("k{i}"))
            .text(person::CN, C::Add, "K")
            .text(person::SN, C::Add, "K");
        people.insert(e.0.id, dn);
        jobs.push(job(&settings, &e, &pt, None));
        if i % 40 == 20 {
            let g = i / 40;
            let mut fill = Export::update();
            for m in 1..=60 {
                fill = fill.text(group::MEMBER, C::Add, &member(m));
            }
            let m0 = member(0);
            let c = cso(&gt, &groups[g], &[(group::MEMBER, &m0)]);
            fills.insert(fill.0.id, g);
            jobs.push(job(&settings, &fill, &gt, Some(&c)));
        }
    }
    let total = jobs.len();

    let (job_tx, job_rx) = mpsc::channel::<ExportJob>(32);
    let (result_tx, mut result_rx) = mpsc::channel(32);
    let runner = {
        let d = directory.clone();
        tokio::spawn(async move { d.run(job_rx, result_tx).await })
    };
    let feeder = tokio::spawn(async move {
        for j in jobs {
            if job_tx.send(j).await.is_err() {
                break;
            }
        }
    });

    let mut results = Vec::new();
    let mut killed_after = None;
    while let Some(r) = tokio::time::timeout(Duration::from_secs(120), result_rx.recv()).await? {
        results.push(r);
        if results.len() == 120 && killed_after.is_none() {
            slapd.kill();
            killed_after = Some(results.len());
            tokio::time::sleep(Duration::from_millis(300)).await;
            slapd.restart().await?;
        }
    }
    feeder.await?;
    runner.await?;
    assert!(killed_after.is_some(), "the server was killed mid-run");
    assert_eq!(results.len(), total, "one result per export");

    let stats = directory.stats();
    eprintln!("{stats:?}");
    assert!(
        stats.lost_connections >= 1,
        "the kill was noticed: {stats:?}"
    );
    assert!(
        stats.retries >= 1,
        "lost operations were retried: {stats:?}"
    );

    let mut failures = Vec::new();
    for r in &results {
        if let Some(dn) = people.get(&r.export_id) {
            let exists = slapd.read_entry(dn, &["cn"]).await?.is_some();
            if r.is_success() || r.entry_created {
                assert!(exists, "{dn} reported created but is not in the directory");
                assert!(r.external_id.is_some(), "{dn} has no anchor");
            }
        } else if let Some(&g) = fills.get(&r.export_id) {
            let members = slapd
                .read_entry(&groups[g], &["member"])
                .await?
                .map(|e| e.attrs.get("member").cloned().unwrap_or_default())
                .unwrap_or_default();
            if r.is_success() {
                assert_eq!(members.len(), 61, "{}: every member written", groups[g]);
            }
        }
        if !r.is_success() {
            let message = r.error_message().unwrap_or_default().to_string();
            assert!(!message.is_empty());
            failures.push(message);
        }
    }
    // The retry budget (8 attempts, up to ~20 s) outlasts the restart, so everything gets through.
    assert!(failures.is_empty(), "{failures:#?}");
    Ok(())
}

/// A TCP proxy in front of slapd that can swallow the next response and drop the connection: the
/// server has applied the request, the client never hears back (outcome unknown).
struct Proxy {
    url: String,
    drop_next_response: std::sync::Arc<std::sync::atomic::AtomicBool>,
    swallow_next_response: std::sync::Arc<std::sync::atomic::AtomicBool>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Proxy {
    async fn start(target_url: &str) -> Result<Proxy, Box<dyn std::error::Error>> {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let target = target_url
            .strip_prefix("ldap://")
            .ok_or("a plain ldap:// URL")?
            .trim_end_matches('/')
            .to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("ldap://{}", listener.local_addr()?);
        let drop_next_response = Arc::new(AtomicBool::new(false));
        let swallow_next_response = Arc::new(AtomicBool::new(false));
        let flag = drop_next_response.clone();
        let swallow = swallow_next_response.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                    continue;
                };
                let flag = flag.clone();
                let swallow = swallow.clone();
                tokio::spawn(async move {
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let upstream = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                    });
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match server_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if flag.swap(false, Ordering::SeqCst) {
                            // The response is lost with the connection.
                            break;
                        }
                        if swallow.swap(false, Ordering::SeqCst) {
                            // The response never comes; the connection stays open.
                            continue;
                        }
                        if client_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    upstream.abort();
                });
            }
        });
        Ok(Proxy {
            url,
            drop_next_response,
            swallow_next_response,
            accept,
        })
    }

    fn swallow_next_response(&self) {
        self.swallow_next_response
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn lose_next_response(&self) {
        self.drop_next_response
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test]
async fn operations_whose_response_was_lost_are_read_back_not_repeated_blindly() -> TestResult {
    let fx = Fixture::new("lost-responses").await?;
    let proxy = Proxy::start(fx.slapd.ldap_url()).await?;
    let mut config = fx.config();
    config.urls = vec![proxy.url.clone()];
    // The operation timeout is separate from the (default, 10 s) connect timeout (§11.8).
    config.operation_timeout_ms = 400;
    let directory = Directory::connect_with(
        &config,
        DirectoryTuning {
            connections: Some(1),
            in_flight_per_connection: Some(1),
            retry_backoff: Duration::from_millis(50),
            ..DirectoryTuning::default()
        },
    )
    .await?;
    let pt = person_type();
    let gt = group_type();
    let settings = ExportSettings::default();

    // An Add applied by the server whose response never came: adopted on the retry, not failed
    // with entryAlreadyExists, and anchored.
    let dn = fx.dn("uid=lost-add");
    let e = Export::create()
        .text(person::DN, C::Add, &dn)
        .text(person::UID, C::Add, "lost-add")
        .text(person::CN, C::Add, "Lost")
        .text(person::SN, C::Add, "Add");
    proxy.lose_next_response();
    let r = run_ok(&directory, job(&settings, &e, &pt, None)).await;
    assert!(r.retries >= 1 && r.adopted, "{r:?}");
    assert_eq!(r.external_id, fx.entry_uuid(&dn).await?);

    // An Add applied whose response never comes on a live connection: the per-operation timeout
    // fires, the outcome is unknown, and the retry adopts the entry.
    let slow = fx.dn("uid=timed-out-add");
    let e = Export::create()
        .text(person::DN, C::Add, &slow)
        .text(person::UID, C::Add, "timed-out-add")
        .text(person::CN, C::Add, "Slow")
        .text(person::SN, C::Add, "Add");
    proxy.swallow_next_response();
    let r = run_ok(&directory, job(&settings, &e, &pt, None)).await;
    assert!(r.retries >= 1 && r.adopted, "{r:?}");
    assert_eq!(r.external_id, fx.entry_uuid(&slow).await?);

    // A Modify adding members, applied but unanswered: the retry meets "value exists" and converges.
    let gdn = fx.dn("cn=lost-modify");
    let g = Export::create()
        .text(group::DN, C::Add, &gdn)
        .text(group::CN, C::Add, "lost-modify")
        .text(group::MEMBER, C::Add, &member(0));
    run_ok(&directory, job(&settings, &g, &gt, None)).await;
    let mut add = Export::update();
    for i in 1..=5 {
        add = add.text(group::MEMBER, C::Add, &member(i));
    }
    let m0 = member(0);
    let c = cso(&gt, &gdn, &[(group::MEMBER, &m0)]);
    proxy.lose_next_response();
    let r = run_ok(&directory, job(&settings, &add, &gt, Some(&c))).await;
    assert!(r.retries >= 1, "{r:?}");
    assert_eq!(
        fx.values(&gdn, "member").await?,
        Some(set((0..=5).map(member)))
    );

    // A ModifyDN applied but unanswered: the retry finds the entry already at its new DN.
    let renamed = fx.dn("uid=lost-rename");
    let mv = Export::update().text(person::DN, C::Update, &renamed);
    proxy.lose_next_response();
    let r = run_ok(
        &directory,
        job(&settings, &mv, &pt, Some(&cso(&pt, &dn, &[]))),
    )
    .await;
    assert!(r.retries >= 1, "{r:?}");
    assert_eq!(r.secondary_external_id.as_deref(), Some(renamed.as_str()));
    assert!(fx.exists(&renamed).await? && !fx.exists(&dn).await?);

    // A Delete applied but unanswered: the retry's "no such object" is success.
    proxy.lose_next_response();
    let r = run_ok(
        &directory,
        job(
            &settings,
            &Export::delete(),
            &pt,
            Some(&cso(&pt, &renamed, &[])),
        ),
    )
    .await;
    assert!(r.retries >= 1, "{r:?}");
    assert!(!fx.exists(&renamed).await?);

    // A first-attempt Add meeting an entry that really is someone else's still fails.
    let taken = fx.dn("uid=taken");
    fx.seed(
        &taken,
        vec![
            ("objectClass", vec!["inetOrgPerson"]),
            ("uid", vec!["taken"]),
            ("cn", vec!["Other"]),
            ("sn", vec!["Other"]),
        ],
    )
    .await?;
    let e = Export::create()
        .text(person::DN, C::Add, &taken)
        .text(person::UID, C::Add, "taken")
        .text(person::CN, C::Add, "Mine")
        .text(person::SN, C::Add, "Mine");
    let r = directory.execute(job(&settings, &e, &pt, None)).await;
    assert!(!r.is_success() && !r.adopted);
    assert_eq!(
        fx.values(&taken, "cn").await?,
        Some(set(["Other".to_string()]))
    );
    Ok(())
}
