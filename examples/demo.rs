//! The export demo: throwaway PostgreSQL (with JIM's schema) and slapd, JIM's Medium template staged
//! exactly as JIM stages it, an export with a live progress display and a summary, then a round of
//! follow-up changes (attribute updates, renames, moves, membership changes, deletes) exported again.
//!
//! With `--samba` (or `--target samba-ad`) the target is a throwaway Samba Active Directory domain
//! controller instead (the testkit's `SambaAd`, LDAPS verified against its CA), seeded in the shape
//! of JIM's Scenario 8 Samba target (`user`/`group`, `objectGUID` anchors; Small by default), followed
//! by a round of attribute updates, member additions and deletes.
//!
//! With `--389` (or `--target 389`) the target is a throwaway 389 Directory Server (the testkit's
//! `Ds389`, with the memberOf, referential-integrity and entryUUID plugins on, StartTLS verified
//! against its CA), seeded and exported exactly as for slapd.
//!
//! Run it with `bash scripts/demo.sh [--samba | --389] [Template]` (or `cargo run --release --example
//! demo -- [--samba | --389] [Template]`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use jim_export::config::{
    DatabaseConfig, DirectoryConfig, DirectoryTlsMode, ExportRequest, ExportSettings, RunOptions,
};
use jim_export::engine::{CancellationToken, Engine, LogLevel, LogRecord, RunListener};
use jim_export::model::PendingExportAttributeChangeType as AvcType;
use jim_export::report::{BatchReport, ItemStatus, ProgressEvent, RunResult};
use jim_export_testkit::ds389::{Ds389, Ds389Options};
use jim_export_testkit::samba::SambaAd;
use jim_export_testkit::seed::{
    self, AdExport, AdValue, FollowUps, SeedObject, SeedOptions, SeededAdSystem, Template,
};
use jim_export_testkit::slapd::{Slapd, SlapdOptions};
use jim_export_testkit::{Postgres, PostgresOptions};

const USAGE: &str = "usage: demo [--samba | --389 | --target openldap|samba-ad|389] [Template]";

/// Drives an indicatif bar from the engine's progress events.
struct Display {
    bar: ProgressBar,
}

impl RunListener for Display {
    fn on_progress(&self, e: &ProgressEvent) {
        self.bar.set_length(e.total.max(1));
        self.bar.set_position(e.processed);
        self.bar.set_message(format!(
            "{:?}: {} ok, {} failed, {} deferred, {:.0} obj/s, {} in flight",
            e.phase, e.succeeded, e.failed, e.deferred, e.rate, e.in_flight
        ));
    }

    fn on_batch(&self, report: &BatchReport) {
        for item in report
            .items
            .iter()
            .filter(|i| i.status == ItemStatus::Failed)
        {
            self.bar.println(format!(
                "  failed {}: {}",
                item.pending_export_id,
                item.error_message.as_deref().unwrap_or("?")
            ));
        }
    }

    fn on_log(&self, record: &LogRecord) {
        if record.level >= LogLevel::Warn {
            self.bar
                .println(format!("  {:?}: {}", record.level, record.message));
        }
    }
}

/// The directory the demo exports to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    OpenLdap,
    SambaAd,
    Ds389,
}

fn parse_args() -> Result<(Target, Option<Template>), Box<dyn std::error::Error>> {
    let mut target = Target::OpenLdap;
    let mut template = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let target_name = match arg.as_str() {
            "--samba" => Some("samba-ad".to_string()),
            "--389" => Some("389".to_string()),
            "--target" => Some(args.next().ok_or(USAGE)?),
            a if a.starts_with("--target=") => Some(a["--target=".len()..].to_string()),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            a if a.starts_with('-') => return Err(format!("unknown option {a}; {USAGE}").into()),
            a => {
                template = Some(a.parse()?);
                None
            }
        };
        if let Some(name) = target_name {
            target = match name.as_str() {
                "openldap" | "slapd" => Target::OpenLdap,
                "samba-ad" | "samba" => Target::SambaAd,
                "389" | "389ds" | "ds389" => Target::Ds389,
                other => return Err(format!("unknown target {other}; {USAGE}").into()),
            };
        }
    }
    Ok((target, template))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (target, template) = parse_args()?;
    match target {
        Target::OpenLdap | Target::Ds389 => {
            ldap(target, template.unwrap_or(Template::Medium)).await
        }
        Target::SambaAd => samba_ad(template.unwrap_or(Template::Small)).await,
    }
}

/// The directory server of an LDAP demo, kept alive for the run.
enum Server {
    Slapd(Slapd),
    Ds389(Ds389),
}

impl Server {
    fn ldap_url(&self) -> &str {
        match self {
            Server::Slapd(s) => s.ldap_url(),
            Server::Ds389(s) => s.ldap_url(),
        }
    }
    fn suffix(&self) -> &str {
        match self {
            Server::Slapd(s) => s.suffix(),
            Server::Ds389(s) => s.suffix(),
        }
    }
    fn admin_dn(&self) -> &str {
        match self {
            Server::Slapd(s) => s.admin_dn(),
            Server::Ds389(s) => s.admin_dn(),
        }
    }
    fn admin_password(&self) -> &str {
        match self {
            Server::Slapd(s) => s.admin_password(),
            Server::Ds389(s) => s.admin_password(),
        }
    }
    fn ca_pem(&self) -> Option<&str> {
        match self {
            Server::Slapd(s) => s.ca_pem(),
            Server::Ds389(s) => Some(s.ca_pem()),
        }
    }
    fn name(&self) -> &'static str {
        match self {
            Server::Slapd(_) => "slapd",
            Server::Ds389(_) => "389 Directory Server",
        }
    }
}

async fn ldap(target: Target, template: Template) -> Result<(), Box<dyn std::error::Error>> {
    let name = if target == Target::Ds389 {
        "389 Directory Server"
    } else {
        "slapd"
    };
    println!("Starting throwaway PostgreSQL 15 and {name} ...");
    let started = Instant::now();
    let pg = Postgres::start(PostgresOptions::default()).await?;
    let server = match target {
        Target::Ds389 => {
            Server::Ds389(Ds389::start(Ds389Options::default()).await.map_err(|e| {
                format!("the 389 Directory Server cannot run here (it runs as root): {e}")
            })?)
        }
        _ => Server::Slapd(Slapd::start(SlapdOptions::default()).await?),
    };
    let db = pg.jim_database().await?;
    println!(
        "  PostgreSQL on 127.0.0.1:{} (database {}), {} at {} ({}), in {:.1} s",
        pg.port(),
        db.name,
        server.name(),
        server.ldap_url(),
        server.suffix(),
        started.elapsed().as_secs_f64()
    );

    println!("Seeding JIM's {template:?} template, staged as JIM stages it ...");
    let (host, port) = host_and_port(server.ldap_url());
    let options = SeedOptions::new(template)
        .with_suffix(server.suffix())
        .with_directory(host, port);
    let seeded = seed::seed(&db.pool, &options).await?;
    println!(
        "  {} users, {} groups, {} memberships: {} pending exports, {} attribute changes ({:.1} s)",
        seeded.counts.users,
        seeded.counts.groups,
        seeded.counts.memberships,
        seeded.counts.pending_exports,
        seeded.counts.attribute_changes,
        seeded.timings.total.as_secs_f64()
    );

    let engine = Engine::new();
    // Follow-up moves go to ou=Alumni, which the directory does not have yet.
    let settings = ExportSettings {
        create_containers_as_needed: true,
        ..ExportSettings::default()
    };
    // StartTLS, verified against the throwaway servers' CA: the password never crosses in clear.
    let mut directory = DirectoryConfig::simple(
        server.ldap_url(),
        server.admin_dn(),
        server.admin_password(),
    );
    match server.ca_pem() {
        Some(ca) => {
            directory.tls.mode = Some(DirectoryTlsMode::StartTls);
            directory.tls.ca_pem = Some(ca.to_string());
        }
        // An existing directory given without a CA: the demo says so and sends the password as is.
        None => directory = directory.allowing_password_without_tls(),
    }
    let request = ExportRequest {
        database: DatabaseConfig::new(db.url.clone()),
        connected_system_id: seeded.connected_system_id(),
        directory,
        settings,
        options: RunOptions {
            progress_interval_ms: 100,
            ..RunOptions::default()
        },
    };

    println!("\nInitial provisioning (users, then groups with their members):");
    let first = export(&engine, &request).await?;
    summary(&first);

    println!("\nJIM's confirming import, then a round of follow-up changes ...");
    seed::confirm_exported(&db.pool, &seeded).await?;
    // Sized for Medium's 1,000 users and 118 groups; smaller templates get a proportional round
    // (a kind whose share rounds to nothing is left out, but there is always an update).
    let users = (seeded.users() as f64 / 1000.0).min(1.0);
    let groups = (seeded.groups() as f64 / 118.0).min(1.0);
    let scaled = |n: usize, share: f64| (n as f64 * share).round() as usize;
    let follow_ups = FollowUps {
        seed: 2,
        attribute_updates: scaled(50, users).max(1),
        renames: scaled(20, users),
        moves: scaled(10, users),
        manager_changes: scaled(20, users),
        member_add_groups: scaled(10, groups),
        member_remove_groups: scaled(10, groups),
        members_per_group: 5,
        user_deletes: scaled(10, users),
        group_deletes: scaled(2, groups),
        ..FollowUps::default()
    };
    let staged = seed::stage_follow_ups(&db.pool, &seeded, &follow_ups).await?;
    println!("  {} follow-up exports staged", staged.pending_exports());
    let second = export(&engine, &request).await?;
    summary(&second);
    Ok(())
}

async fn samba_ad(template: Template) -> Result<(), Box<dyn std::error::Error>> {
    println!("Starting throwaway PostgreSQL 15 and a Samba AD domain controller ...");
    let started = Instant::now();
    let pg = Postgres::start(PostgresOptions::default()).await?;
    let dc = SambaAd::try_shared()
        .await
        .map_err(|e| format!("the Samba AD domain controller cannot run here: {e}"))?;
    let db = pg.jim_database().await?;
    println!(
        "  PostgreSQL on 127.0.0.1:{} (database {}), Samba AD {} at {} ({}), in {:.1} s",
        pg.port(),
        db.name,
        dc.realm(),
        dc.ldaps_url(),
        dc.base_dn(),
        started.elapsed().as_secs_f64()
    );

    let root = format!("OU=JimDemo,{}", dc.base_dn());
    dc.delete_tree(&root).await?;
    println!("Seeding JIM's {template:?} template in Scenario 8's Samba AD shape under {root} ...");
    let options = SeedOptions::active_directory(template, &root).with_directory("127.0.0.1", 636);
    let seeded = seed::seed_ad(&db.pool, &options).await?;
    println!(
        "  {} users, {} groups, {} memberships: {} pending exports, {} attribute changes",
        seeded.counts.users,
        seeded.counts.groups,
        seeded.counts.memberships,
        seeded.counts.pending_exports,
        seeded.counts.attribute_changes,
    );

    let engine = Engine::new();
    let request = ExportRequest {
        database: DatabaseConfig::new(db.url.clone()),
        connected_system_id: seeded.connected_system_id(),
        // LDAPS verified against the DC's CA, simple bind by UPN; the dialect is detected.
        directory: dc.directory_config(),
        settings: ExportSettings {
            create_containers_as_needed: true,
            ..ExportSettings::default()
        },
        options: RunOptions {
            progress_interval_ms: 100,
            ..RunOptions::default()
        },
    };

    println!("\nInitial provisioning (users, then groups with their members and managers):");
    let first = export(&engine, &request).await?;
    summary(&first);

    println!("\nJIM's confirming import, then a round of follow-up changes ...");
    seed::confirm_ad_exported(&db.pool, &seeded).await?;
    let follow_ups = ad_follow_ups(&seeded);
    seed::stage_ad_exports(&db.pool, &seeded, &follow_ups, None).await?;
    println!("  {} follow-up exports staged", follow_ups.len());
    let second = export(&engine, &request).await?;
    summary(&second);
    Ok(())
}

/// Title updates on the first users, new members for the first groups (from those users) and the
/// last few users deleted: one export per object, as JIM's unique index allows.
fn ad_follow_ups(seeded: &SeededAdSystem) -> Vec<AdExport> {
    let users = seeded.users.len();
    let deletes = (users / 20).clamp(1, 10).min(users);
    let updated = (users - deletes).min(50);
    let mut out = Vec::new();
    for i in 0..updated {
        out.push(AdExport::update(SeedObject::User(i)).with(
            "title",
            AvcType::Update,
            AdValue::Text(format!("{} (promoted)", seeded.users[i].title)),
        ));
    }
    for group in seeded.groups.iter().take(10) {
        let mut export = AdExport::update(SeedObject::Group(group.index));
        for u in (0..updated).filter(|u| !group.members.contains(u)).take(3) {
            export = export.with("member", AvcType::Add, AdValue::User(u));
        }
        if !export.changes.is_empty() {
            out.push(export);
        }
    }
    for i in users - deletes..users {
        out.push(AdExport::delete(SeedObject::User(i)));
    }
    out
}

async fn export(
    engine: &Engine,
    request: &ExportRequest,
) -> Result<RunResult, Box<dyn std::error::Error>> {
    let bar = ProgressBar::new(1);
    bar.set_style(
        ProgressStyle::with_template("  [{bar:40.cyan/blue}] {pos}/{len} {msg}")?
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    let display = Arc::new(Display { bar: bar.clone() });
    let result = engine
        .run_export(request, display, CancellationToken::new())
        .await;
    bar.finish_and_clear();
    Ok(result?)
}

fn summary(r: &RunResult) {
    let m = &r.metrics;
    println!("  {}", r.message);
    println!(
        "  {:.0} objects/s; {} LDAP operations (add {}, modify {}, modifyDN {}, delete {}, search {}); {} SQL statements; \
         {} flushes; first directory write after {} ms; up to {} operations in flight",
        m.objects_per_second,
        m.operations.total(),
        m.operations.add,
        m.operations.modify,
        m.operations.modify_dn,
        m.operations.delete,
        m.operations.search,
        m.sql_statements,
        m.flushes,
        m.time_to_first_write_ms.unwrap_or(0),
        m.max_in_flight
    );
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
