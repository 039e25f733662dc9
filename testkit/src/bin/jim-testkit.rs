//! `jim-testkit`: throwaway test servers for tests written in other languages (the Python and Kotlin
//! binding tests, the Python example tool).
//!
//! ```text
//! jim-testkit serve [--template Small] [--seed N] [--json-out FILE]
//! ```
//!
//! starts a throwaway PostgreSQL 15 cluster (a database with JIM's schema) and a throwaway slapd, seeds
//! one connected system with the template's objects staged for their initial provisioning, and prints
//! one line of JSON on stdout (also written to `FILE`, atomically): the database URL, the LDAP URL, the
//! bind DN and password, the suffix, the test CA, the connected system id, the seed's counts, a
//! ready-to-use export request (the JSON the C ABI and `parse_export_request` take) and, for templates
//! up to 10,000 objects, the directory content a correct export produces. The servers stay up until
//! stdin closes or the process gets SIGTERM, SIGINT or SIGHUP; then they are stopped and their folders
//! removed. If the process is killed outright, the testkit's watchdogs stop the servers.
//!
//! Diagnostics go to stderr; stdout carries only the JSON line.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use jim_export_testkit::seed::{self, SeedOptions, SeededSystem, Template};
use jim_export_testkit::slapd::{Slapd, SlapdOptions};
use jim_export_testkit::{JimDatabase, Postgres, PostgresOptions};
use serde_json::{Value, json};

/// Largest template (users + groups) whose expected directory is included in the JSON.
const EXPECTED_DIRECTORY_LIMIT: usize = 10_000;

const USAGE: &str = "usage: jim-testkit serve [--template NAME] [--seed N] [--json-out FILE]

Starts throwaway PostgreSQL and slapd servers, seeds one connected system with JIM's template
(default Small), prints a JSON description on stdout and keeps the servers until stdin closes
or a SIGTERM/SIGINT arrives.";

struct Args {
    template: Template,
    seed: u64,
    json_out: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("serve") => {}
        Some("-h" | "--help") => return Err(String::new()),
        Some(other) => return Err(format!("unknown command {other:?}")),
        None => return Err("no command given".into()),
    }
    let mut parsed = Args {
        template: Template::Small,
        seed: 1,
        json_out: None,
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--template" => {
                parsed.template = value("--template")?.parse().map_err(|e| format!("{e}"))?;
            }
            "--seed" => {
                parsed.seed = value("--seed")?
                    .parse()
                    .map_err(|e| format!("--seed: {e}"))?;
            }
            "--json-out" => parsed.json_out = Some(PathBuf::from(value("--json-out")?)),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(parsed)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("jim-testkit: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    catch_stop_signals();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("jim-testkit: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let servers = match runtime.block_on(start(&args)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("jim-testkit: {e}");
            return ExitCode::FAILURE;
        }
    };
    let line = servers.description.to_string();
    if let Some(path) = &args.json_out
        && let Err(e) = write_atomically(path, &line)
    {
        eprintln!("jim-testkit: writing {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    {
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            eprintln!("jim-testkit: stdout is closed; stopping");
        }
    }
    eprintln!(
        "jim-testkit: serving (PostgreSQL {}, slapd {}); close stdin or send SIGTERM to stop",
        servers.database.url,
        servers.slapd.ldap_url()
    );

    let why = wait_for_stop();
    eprintln!("jim-testkit: {why}; stopping the servers");
    let Servers {
        postgres,
        slapd,
        database,
        ..
    } = servers;
    runtime.block_on(database.pool.close());
    drop(database);
    drop(slapd);
    drop(postgres);
    if let Some(path) = &args.json_out {
        let _ = std::fs::remove_file(path);
    }
    ExitCode::SUCCESS
}

/// The running servers and their JSON description.
struct Servers {
    postgres: Postgres,
    slapd: Slapd,
    database: JimDatabase,
    description: Value,
}

async fn start(args: &Args) -> Result<Servers, Box<dyn std::error::Error>> {
    let postgres = Postgres::start(PostgresOptions::default()).await?;
    let slapd = Slapd::start(SlapdOptions::default()).await?;
    let database = postgres.jim_database().await?;
    let (host, port) = host_and_port(slapd.ldap_url());
    let options = SeedOptions::new(args.template)
        .with_seed(args.seed)
        .with_suffix(slapd.suffix())
        .with_directory(host, port);
    let seeded = seed::seed(&database.pool, &options).await?;
    eprintln!(
        "jim-testkit: seeded connected system {} with {:?}: {} users, {} groups, {} pending exports ({:.1} s)",
        seeded.connected_system_id(),
        args.template,
        seeded.counts.users,
        seeded.counts.groups,
        seeded.counts.pending_exports,
        seeded.timings.total.as_secs_f64()
    );
    let description = describe(&postgres, &slapd, &database, &seeded)?;
    Ok(Servers {
        postgres,
        slapd,
        database,
        description,
    })
}

/// The JSON printed for the servers and the seed.
fn describe(
    postgres: &Postgres,
    slapd: &Slapd,
    database: &JimDatabase,
    seeded: &SeededSystem,
) -> Result<Value, Box<dyn std::error::Error>> {
    let tls = match slapd.ca_pem() {
        Some(ca) => json!({ "mode": "start_tls", "ca_pem": ca }),
        None => json!({ "mode": "none" }),
    };
    let request = json!({
        "database": { "connection": database.url },
        "connected_system_id": seeded.connected_system_id(),
        "directory": {
            "urls": [slapd.ldap_url()],
            "tls": tls,
            "bind": {
                "kind": "simple",
                "dn": slapd.admin_dn(),
                "password": slapd.admin_password(),
            },
        },
        "settings": {},
        "options": {},
    });
    let c = &seeded.counts;
    let objects = seeded.users() + seeded.groups();
    let expected = if objects <= EXPECTED_DIRECTORY_LIMIT {
        let state = seeded.expected_directory()?;
        let entries: serde_json::Map<String, Value> = state
            .entries
            .iter()
            .map(|(dn, entry)| (dn.clone(), json!(entry)))
            .collect();
        Value::Object(entries)
    } else {
        Value::Null
    };
    Ok(json!({
        "pid": std::process::id(),
        "database_url": database.url,
        "database_name": database.name,
        "postgres_port": postgres.port(),
        "ldap_url": slapd.ldap_url(),
        "ldaps_url": slapd.ldaps_url(),
        "bind_dn": slapd.admin_dn(),
        "bind_password": slapd.admin_password(),
        "suffix": slapd.suffix(),
        "ca_pem": slapd.ca_pem(),
        "template": seeded.template().name(),
        "connected_system_id": seeded.connected_system_id(),
        "containers": seeded.containers(),
        "counts": {
            "users": c.users,
            "groups": c.groups,
            "memberships": c.memberships,
            "managers": c.managers,
            "pending_exports": c.pending_exports,
            "attribute_changes": c.attribute_changes,
            "reference_bearing_exports": c.reference_bearing_exports,
        },
        "request": request,
        "expected_directory": expected,
    }))
}

/// `ldap://127.0.0.1:389` -> ("127.0.0.1", 389).
fn host_and_port(url: &str) -> (String, u16) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().unwrap_or(389)),
        None => (authority.to_string(), 389),
    }
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, format!("{text}\n"))?;
    std::fs::rename(&tmp, path)
}

/// The stop signal received, or 0.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP_SIGNAL.store(sig, Ordering::SeqCst);
}

/// Catches SIGTERM, SIGINT and SIGHUP, so the servers are stopped and their folders removed. A
/// handler rather than a blocked mask: child processes inherit a mask (the servers would then ignore
/// the testkit's own SIGTERM), while caught signals return to their defaults at `exec`.
fn catch_stop_signals() {
    let handler: extern "C" fn(libc::c_int) = on_stop_signal;
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        #[allow(unsafe_code)]
        // SAFETY: the handler only performs an atomic store, which is async-signal-safe.
        unsafe {
            libc::signal(sig, handler as libc::sighandler_t);
        }
    }
}

/// Waits until stdin reaches its end or a stop signal arrives; says which.
fn wait_for_stop() -> String {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 1024];
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        let _ = tx.send(());
    });
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return "stdin closed".into(),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let sig = STOP_SIGNAL.load(Ordering::SeqCst);
                if sig != 0 {
                    return format!("got signal {sig}");
                }
            }
        }
    }
}
