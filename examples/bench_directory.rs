//! Directory throughput: planned exports run through [`Directory`] at several connection counts and
//! in-flight levels against a throwaway slapd (`dbnosync` unless `--durable`), next to the OpenLDAP
//! command-line tools applying the same entries sequentially.
//!
//! ```text
//! cargo run --release --example bench_directory -- [--entries 5000] [--durable]
//! ```
//!
//! Each configuration creates `--entries` users in its own OU (an Add each, the anchor read back by
//! post-read; the last row reads it by a base search instead, as on AD),
//! then updates every one of them (a Modify each). `ldapadd` and `ldapmodify` (the real binaries from
//! ldap-utils) apply the same LDIF sequentially over one connection. Figures are printed, never
//! asserted.

use std::io::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use jim_export::config::{Dialect, DirectoryConfig, ExportSettings};
use jim_export::directory::{Directory, DirectoryTuning, ExportJob};
use jim_export::model::{ObjectType, PendingExportAttributeChangeType as C};
use jim_export::plan::{PlanInput, Planner};
use jim_export_testkit::support::directory::person::{CN, DESCRIPTION, DN, MAIL, SN, UID};
use jim_export_testkit::support::directory::{Export, cso, person_type};
use jim_export_testkit::{Slapd, SlapdOptions};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn user_dn(ou: &str, i: usize) -> String {
    format!("uid=u{i:07},{ou}")
}

fn create_jobs(planner: &Planner, ot: &ObjectType, ou: &str, n: usize) -> Vec<ExportJob> {
    (0..n)
        .map(|i| {
            let dn = user_dn(ou, i);
            let uid = format!("u{i:07}");
            let mail = format!("{uid}@example.org");
            let pe = Export::create()
                .text(DN, C::Add, &dn)
                .text(UID, C::Add, &uid)
                .text(CN, C::Add, "Bench User")
                .text(SN, C::Add, "User")
                .text(MAIL, C::Add, &mail)
                .0;
            ExportJob::new(pe.id, planner.plan(&PlanInput::new(&pe, ot, None)))
        })
        .collect()
}

fn update_jobs(planner: &Planner, ot: &ObjectType, ou: &str, n: usize) -> Vec<ExportJob> {
    (0..n)
        .map(|i| {
            let c = cso(ot, &user_dn(ou, i), &[]);
            let pe = Export::update()
                .text(DESCRIPTION, C::Update, "updated by the benchmark")
                .0;
            ExportJob::new(pe.id, planner.plan(&PlanInput::new(&pe, ot, Some(&c))))
        })
        .collect()
}

async fn make_ou(slapd: &Slapd, ou: &str) -> Result<()> {
    let mut ldap = slapd.admin_ldap().await?;
    let name = ou
        .split(',')
        .next()
        .and_then(|r| r.split_once('='))
        .map(|(_, v)| v.to_string())
        .unwrap_or_default();
    ldap.add(
        ou,
        vec![
            ("objectClass", ["organizationalUnit"].into()),
            ("ou", [name.as_str()].into()),
        ],
    )
    .await?
    .success()?;
    ldap.unbind().await.ok();
    Ok(())
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Runs `jobs` and returns the elapsed time, failing on any failed export.
async fn timed(directory: &Directory, jobs: Vec<ExportJob>) -> Result<Duration> {
    let start = Instant::now();
    let results = directory.execute_all(jobs).await;
    let elapsed = start.elapsed();
    if let Some(bad) = results.iter().find(|r| !r.is_success()) {
        return Err(format!("export failed: {:?}", bad.status).into());
    }
    Ok(elapsed)
}

fn cli_available() -> bool {
    Command::new("ldapadd")
        .arg("-VV")
        .output()
        .is_ok_and(|o| o.status.success() || !o.stderr.is_empty())
}

/// Applies an LDIF file with one of the OpenLDAP tools; returns the elapsed time.
fn run_cli(tool: &str, slapd: &Slapd, ldif: &std::path::Path) -> Result<Duration> {
    let start = Instant::now();
    let out = Command::new(tool)
        .args(["-x", "-H", slapd.ldap_url(), "-D", slapd.admin_dn(), "-w"])
        .arg(slapd.admin_password())
        .arg("-f")
        .arg(ldif)
        .output()?;
    let elapsed = start.elapsed();
    if !out.status.success() {
        return Err(format!("{tool} failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(elapsed)
}

/// The command line (`--help` prints it with every default).
#[derive(clap::Parser)]
#[command(about = "Directory throughput at several connection counts and in-flight levels")]
struct Cli {
    /// Users created (then modified) per configuration.
    #[arg(long, default_value_t = 5000)]
    entries: usize,
    /// slapd with fsync (else dbnosync).
    #[arg(long)]
    durable: bool,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let Cli { entries, durable } = clap::Parser::parse();
    let slapd = Slapd::start(SlapdOptions {
        durable,
        ..SlapdOptions::default()
    })
    .await?;
    let suffix = slapd.suffix().to_string();
    let ot = person_type();
    let planner = Planner::new(&ExportSettings::default(), Dialect::OpenLdap);
    println!(
        "slapd {} ({}), {entries} entries per configuration, {} cores",
        slapd.ldap_url(),
        if durable { "durable" } else { "dbnosync" },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!(
        "{:<32} {:>12} {:>12} {:>10}",
        "client", "adds/s", "modifies/s", "peak"
    );

    if cli_available() {
        let ou = format!("ou=cli,{suffix}");
        make_ou(&slapd, &ou).await?;
        let dir = tempfile_dir()?;
        let adds = dir.join("adds.ldif");
        let mods = dir.join("mods.ldif");
        {
            let mut f = std::io::BufWriter::new(std::fs::File::create(&adds)?);
            for i in 0..entries {
                let uid = format!("u{i:07}");
                writeln!(
                    f,
                    "dn: {}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: Bench User\nsn: User\nmail: {uid}@example.org\n",
                    user_dn(&ou, i)
                )?;
            }
            let mut f = std::io::BufWriter::new(std::fs::File::create(&mods)?);
            for i in 0..entries {
                writeln!(
                    f,
                    "dn: {}\nchangetype: modify\nreplace: description\ndescription: updated by the benchmark\n",
                    user_dn(&ou, i)
                )?;
            }
        }
        let a = run_cli("ldapadd", &slapd, &adds)?;
        let m = run_cli("ldapmodify", &slapd, &mods)?;
        println!(
            "{:<32} {:>12.0} {:>12.0} {:>10}",
            "ldapadd / ldapmodify (seq.)",
            rate(entries, a),
            rate(entries, m),
            1
        );
        std::fs::remove_dir_all(&dir).ok();
    } else {
        println!("(ldapadd/ldapmodify not found; install ldap-utils for the CLI baseline)");
    }

    let config =
        DirectoryConfig::simple(slapd.ldap_url(), slapd.admin_dn(), slapd.admin_password())
            .allowing_password_without_tls();
    let levels: [(u32, u32, bool); 9] = [
        (1, 1, true),
        (1, 8, true),
        (1, 32, true),
        (1, 128, true),
        (2, 8, true),
        (4, 8, true),
        (4, 32, true),
        (8, 16, true),
        (4, 32, false),
    ];
    for (i, (connections, per_connection, post_read)) in levels.into_iter().enumerate() {
        let ou = format!("ou=run{i},{suffix}");
        make_ou(&slapd, &ou).await?;
        let directory = Directory::connect_with(
            &config,
            DirectoryTuning {
                connections: Some(connections),
                in_flight_per_connection: Some(per_connection),
                max_active_exports: Some((connections * per_connection * 2) as usize),
                use_post_read: post_read,
                ..DirectoryTuning::default()
            },
        )
        .await?;
        let creates = create_jobs(&planner, &ot, &ou, entries);
        let add_time = timed(&directory, creates).await?;
        let updates = update_jobs(&planner, &ot, &ou, entries);
        let mod_time = timed(&directory, updates).await?;
        let stats = directory.stats();
        println!(
            "{:<32} {:>12.0} {:>12.0} {:>10}",
            format!(
                "jim-export {connections} conn x {per_connection}{}",
                if post_read { "" } else { " (search)" }
            ),
            rate(entries, add_time),
            rate(entries, mod_time),
            stats.peak_in_flight
        );
        directory.close().await;
    }
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("jim-export-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
