//! The 389 Directory Server rows: limit, jim-today and the engine against the testkit's throwaway
//! 389 server (memberOf, referential integrity and entryUUID on; StartTLS verified against the
//! test CA, bound as the Directory Manager, dialect detected), on the same OpenLDAP-shaped seed and
//! follow-up round as slapd, at each `--rtt` behind a latency proxy, with PostgreSQL and 389 both
//! without fsync (the `nosync` mode of the slapd rows).
//!
//! Each strategy runs on a 389 server of its own, fresh from the testkit's template, and a fresh
//! JIM database. jim-today runs JIM's Export Concurrency for a directory it does not recognise
//! (JIM detects 389 as Generic: 4 in flight, no auto-tune); the engine uses its 389 defaults.

use jim_export::config::{DirectoryTls, DirectoryTlsMode};
use jim_export_testkit::ds389::{Ds389, Ds389Options};

use super::{
    Args, ChildSpec, LatencyProxy, Machine, Measured, Postgres, PostgresOptions, Result,
    SeedOptions, Session, host_port, measured, seed, stage_follow_up_round, table,
};

/// JIM's Export Concurrency for a Generic directory (389 is not one JIM recognises).
const JIM_GENERIC_IN_FLIGHT: u32 = 4;
/// Marks the 389 section in `results.md`; a 389-only run replaces it.
pub(crate) const SECTION: &str = "### 389 Directory Server";
/// The key of the 389 rows in `results.json`.
pub(crate) const KEY: &str = "ds389";

/// Runs the 389 rows of limit, jim-today and the engine (the strategies chosen among them).
pub(crate) async fn rows(args: &Args) -> Result<Vec<Measured>> {
    eprintln!(
        "389: template {}, follow-ups ~{} per kind, RTT {:?} ms",
        args.ds389_template, args.follow_ups, args.rtts
    );
    let pg = Postgres::start(PostgresOptions {
        durable: false,
        ..PostgresOptions::default()
    })
    .await?;
    let mut rows = Vec::new();
    for &rtt in &args.rtts {
        for strategy in args
            .strategies
            .iter()
            .filter(|s| matches!(s.as_str(), "limit" | "jim-today" | "engine"))
        {
            let ds = Ds389::start(Ds389Options::default())
                .await
                .map_err(|e| format!("the 389 Directory Server cannot run here: {e}"))?;
            rows.extend(one_strategy(args, &pg, &ds, rtt, strategy).await?);
        }
    }
    Ok(rows)
}

async fn one_strategy(
    args: &Args,
    pg: &Postgres,
    ds: &Ds389,
    rtt: u64,
    strategy: &str,
) -> Result<Vec<Measured>> {
    let proxy = LatencyProxy::in_front_of(ds.ldap_url(), std::time::Duration::from_millis(rtt))?;
    let ldap_url = proxy.url("ldap");
    let db = pg.jim_database().await?;
    let (host, port) = host_port(&ldap_url);
    let seeded = seed::seed(
        &db.pool,
        &SeedOptions::new(args.ds389_template)
            .with_suffix(ds.suffix())
            .with_directory(host, port),
    )
    .await?;
    let spec = ChildSpec {
        strategy: strategy.to_string(),
        database_url: db.url.clone(),
        connected_system_id: seeded.connected_system_id(),
        ldap_url,
        bind_dn: ds.admin_dn().to_string(),
        password: ds.admin_password().to_string(),
        cancel_after_s: None,
        tls: Some(DirectoryTls {
            mode: Some(DirectoryTlsMode::StartTls),
            ca_pem: Some(ds.ca_pem().to_string()),
            ..DirectoryTls::default()
        }),
        detect_dialect: true,
        jim_in_flight: JIM_GENERIC_IN_FLIGHT,
        postgres_pid: pg.pid(),
    };
    let mut rows = Vec::new();
    let mut session = Session::start(&spec)?;
    for phase in ["initial", "follow-ups"] {
        if phase == "follow-ups" {
            stage_follow_up_round(args, &db.pool, &seeded, &mut session).await?;
        }
        let sample = measured(pg, ds.pid(), &db.pool, &mut session).await?;
        rows.push(Measured::new("389", "nosync", rtt, phase, strategy, sample));
    }
    session.finish().await?;
    Ok(rows)
}

/// The 389 section of `results.json`.
pub(crate) fn json(args: &Args, m: &Machine, rows: &[Measured]) -> serde_json::Value {
    serde_json::json!({
        "machine": m,
        "template": args.ds389_template.to_string(),
        "follow_ups_per_kind": args.follow_ups,
        "jim_today_in_flight": JIM_GENERIC_IN_FLIGHT,
        "rows": rows,
    })
}

/// The 389 section of `results.md`.
pub(crate) fn markdown(args: &Args, m: &Machine, rows: &[Measured]) -> String {
    format!(
        "\n{SECTION}\n\nMachine: {} ({} cores, {} GB), Linux {}. 389 Directory Server 2.3 (the testkit's: Berkeley DB back end without a durable transaction log, memberOf, referential integrity and entryUUID on), StartTLS verified against the test CA, Directory Manager bind, behind the latency proxy; PostgreSQL `fsync = off`. Template {} in the OpenLDAP shape (`inetOrgPerson`/`groupOfNames`, `entryUUID` anchors), follow-ups: a mixed round of ~{} objects per kind. jim-today runs {JIM_GENERIC_IN_FLIGHT} in flight (JIM's Export Concurrency for a Generic directory); the engine uses its 389 defaults.\n\n{}\n{}\n",
        m.cpu_model,
        m.cores,
        m.memory_gb,
        m.kernel,
        args.ds389_template,
        args.follow_ups,
        table("directory", "389", rows),
        super::LATENCY_NOTE,
    )
}
