//! Watch-mode latency: from a pending export's commit to its entry being readable in the directory,
//! with the notifying trigger and with polling.
//!
//! A JIM database (Template::Medium, its exports moved aside) and a slapd (`dbnosync`); one watch per
//! mode. Each of N user Creates is staged alone, in its own transaction, after a pause drawn from
//! 0-300 ms (so the watch is sometimes busy, sometimes idle and, when polling, backed off); the bench
//! then reads the entry's DN every millisecond until it exists. Prints p50/p90/p99/max per mode.
//!
//! `cargo run --release --example bench_watch [-- --exports 200]`.

use std::sync::Arc;
use std::time::Duration;

use jim_export::config::{
    DatabaseConfig, DirectoryConfig, ExportRequest, ExportSettings, RunOptions, WakeUpMode,
    WatchOptions, WatchRequest,
};
use jim_export::engine::{CancellationToken, Engine, NoListener};
use jim_export_testkit::Postgres;
use jim_export_testkit::seed::{self, SeedOptions, Template};
use jim_export_testkit::slapd::{Slapd, SlapdOptions};
use jim_export_testkit::support;
use ldap3::{Ldap, Scope};

/// The command line (`--help` prints it with every default).
#[derive(clap::Parser)]
#[command(
    about = "Watch-mode latency, from a pending export's commit to its entry in the directory"
)]
struct Cli {
    /// User Creates staged per mode (each alone, 0-300 ms apart).
    #[arg(long, default_value_t = 200)]
    exports: usize,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Cli { exports: n } = clap::Parser::parse();
    let pg = Postgres::shared().await?;
    let db = pg.jim_database().await?;
    let slapd = Slapd::start(SlapdOptions::default()).await?;
    let url = slapd.ldap_url().to_string();
    let authority = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or("no port in the slapd URL")?;
    let options = SeedOptions::new(Template::Medium)
        .with_suffix(slapd.suffix())
        .with_directory(host, port.parse()?);
    let seeded = seed::seed(&db.pool, &options).await?;
    support::watch::park_all(&db.pool, seeded.connected_system_id()).await;
    let users = support::watch::user_exports(&seeded);
    if users.len() < 2 * n {
        return Err(format!(
            "the template has {} users, fewer than {}",
            users.len(),
            2 * n
        )
        .into());
    }
    let database = DatabaseConfig::new(db.url.clone());
    let request = ExportRequest {
        database: database.clone(),
        connected_system_id: seeded.connected_system_id(),
        directory: DirectoryConfig::simple(
            slapd.ldap_url(),
            slapd.admin_dn(),
            slapd.admin_password(),
        )
        .allowing_password_without_tls(),
        settings: ExportSettings::default(),
        options: RunOptions::default(),
    };
    let mut ldap = slapd.admin_ldap().await?;
    let engine = Arc::new(Engine::new());
    println!(
        "watch latency, commit -> entry readable in slapd (dbnosync), {n} exports staged one at a time, \
         0-300 ms apart ({} build)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    for (label, trigger, users) in [
        ("trigger (LISTEN/NOTIFY)", true, &users[0..n]),
        ("polling (100 ms .. 3 s)", false, &users[n..2 * n]),
    ] {
        if trigger {
            engine.install_notify_trigger(&database).await?;
        } else {
            engine.remove_notify_trigger(&database).await?;
        }
        let watch = WatchRequest {
            requests: vec![request.clone()],
            watch: WatchOptions {
                wake_up: Some(if trigger {
                    WakeUpMode::Auto
                } else {
                    WakeUpMode::Poll
                }),
                ..WatchOptions::default()
            },
        };
        let cancel = CancellationToken::new();
        let task = {
            let (engine, cancel) = (engine.clone(), cancel.clone());
            tokio::spawn(async move { engine.watch(&watch, Arc::new(NoListener), cancel).await })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut latencies = Vec::with_capacity(n);
        for (id, dn) in users {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            tokio::time::sleep(Duration::from_millis(rng % 300)).await;
            let committed = support::watch::stage(&db.pool, &[*id], None).await;
            loop {
                if exists(&mut ldap, dn).await? {
                    break;
                }
                if committed.elapsed() > Duration::from_secs(30) {
                    return Err(format!("{dn} did not appear within 30 s").into());
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            latencies.push(committed.elapsed());
        }
        cancel.cancel();
        let result = task.await??;
        latencies.sort();
        let at = |q: f64| {
            latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1]
        };
        println!(
            "{label:<26} mode={:?} p50={:>7.1} ms  p90={:>7.1} ms  p99={:>7.1} ms  max={:>7.1} ms  \
             passes={} wake-ups: notification={} poll={} retry_due={}",
            result.mode,
            ms(at(0.50)),
            ms(at(0.90)),
            ms(at(0.99)),
            ms(*latencies.last().unwrap_or(&Duration::ZERO)),
            result.passes,
            result.wake_ups.notification,
            result.wake_ups.poll,
            result.wake_ups.retry_due,
        );
    }
    engine.remove_notify_trigger(&database).await?;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Whether the entry exists (a base search; "no such object" means not yet).
async fn exists(ldap: &mut Ldap, dn: &str) -> Result<bool, Box<dyn std::error::Error>> {
    let result = ldap
        .search(dn, Scope::Base, "(objectClass=*)", vec!["1.1"])
        .await?;
    match result.1.rc {
        0 => Ok(!result.0.is_empty()),
        32 => Ok(false),
        rc => Err(format!("searching {dn}: result code {rc}").into()),
    }
}
