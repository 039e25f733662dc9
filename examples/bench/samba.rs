//! The Samba AD rows: limit, jim-today and the engine against the testkit's throwaway Samba AD
//! domain controller (LDAPS verified against the test CA, simple bind by UPN, dialect detected, no
//! injected latency) on the AD seed, the initial provisioning and a follow-up round reported
//! separately, as for slapd.
//!
//! Each strategy gets a DC of its own, fresh from the testkit's provisioned template, so no strategy
//! pays for another's writes; each also works under its own OU (`OU=BL`, `OU=BJ`, `OU=BE`). ldapmodify is left out: its
//! LDIF would need the AD shape and the DC's CA, and the issue asks for engine vs limit vs JIM today.

use jim_export::model::PendingExportAttributeChangeType as AvcType;
use jim_export::plan::build_rdn;
use jim_export_testkit::samba::SambaAd;
use jim_export_testkit::seed::{AdExport, AdValue, SeedObject, SeededAdSystem};

use super::{
    Args, ChildSpec, Machine, Measured, Postgres, PostgresOptions, Result, SeedOptions, Session,
    Template, measured, seed, table,
};

/// JIM's Export Concurrency for Samba AD (the AD seed's setting): the jim-today emulation's
/// in-flight limit against the DC.
const JIM_SAMBA_IN_FLIGHT: u32 = 4;
/// Marks the Samba AD section in `results.md`; a Samba-only run replaces it.
pub(crate) const SECTION: &str = "### Samba AD";
/// The key of the Samba AD rows in `results.json`.
pub(crate) const KEY: &str = "samba_ad";

/// Runs the Samba AD rows of every chosen strategy but ldapmodify, on a durable PostgreSQL of
/// their own.
pub(crate) async fn rows(args: &Args) -> Result<Vec<Measured>> {
    eprintln!(
        "samba-ad: template {} (AD shape), follow-ups ~{} per kind; starting the DC ...",
        args.samba_template, args.samba_follow_ups
    );
    let pg = Postgres::start(PostgresOptions {
        durable: true,
        ..PostgresOptions::default()
    })
    .await?;
    let mut rows = Vec::new();
    for strategy in args.strategies.iter().filter(|s| *s != "ldapmodify") {
        // A fresh DC per strategy: on a shared one, whichever strategy ran later paid for the
        // earlier ones' writes (Samba's CPU for the same operations rose by half, up to 2x slower).
        let dc = SambaAd::start()
            .await
            .map_err(|e| format!("the Samba AD domain controller cannot run here: {e}"))?;
        rows.extend(one_strategy(args, &pg, &dc, strategy).await?);
    }
    Ok(rows)
}

async fn one_strategy(
    args: &Args,
    pg: &Postgres,
    dc: &SambaAd,
    strategy: &str,
) -> Result<Vec<Measured>> {
    // The OU's name prefixes every sAMAccountName, which AD caps at 20 characters: two letters.
    let tag = match strategy {
        "limit" => "BL",
        "jim-today" => "BJ",
        _ => "BE",
    };
    let root = format!("OU={tag},{}", dc.base_dn());
    dc.delete_tree(&root).await?;
    let db = pg.jim_database().await?;
    let seeded = seed::seed_ad(
        &db.pool,
        &SeedOptions::active_directory(args.samba_template, &root).with_directory("127.0.0.1", 636),
    )
    .await?;
    // The seed's containers exist, as they would in a domain JIM exports to.
    dc.ensure_ou(&seeded.users_ou()).await?;
    dc.ensure_ou(&seeded.groups_ou()).await?;
    let spec = ChildSpec {
        strategy: strategy.to_string(),
        database_url: db.url.clone(),
        connected_system_id: seeded.connected_system_id(),
        ldap_url: dc.ldaps_url().to_string(),
        bind_dn: dc.admin_upn().to_string(),
        password: dc.admin_password().to_string(),
        cancel_after_s: None,
        tls: Some(dc.directory_config().tls),
        detect_dialect: true,
        jim_in_flight: JIM_SAMBA_IN_FLIGHT,
        postgres_pid: pg.pid(),
    };
    let mut rows = Vec::new();
    let mut session = Session::start(&spec)?;
    for phase in ["initial", "follow-ups"] {
        if phase == "follow-ups" {
            super::retry_failed(&db.pool, spec.connected_system_id, &mut session).await?;
            if strategy == "limit" {
                // Nothing was written back: take the directory as holding what was sent.
                seed::confirm_all_ad_as_exported(&db.pool, &seeded).await?;
            } else {
                seed::confirm_ad_exported(&db.pool, &seeded).await?;
            }
            let mut exports = follow_ups(&seeded, args.samba_follow_ups);
            // An object whose export failed still has it pending; JIM's unique index allows one.
            let pending: std::collections::HashSet<uuid::Uuid> = sqlx::query_scalar(
                r#"SELECT "ConnectedSystemObjectId" FROM "PendingExports" WHERE "ConnectedSystemId" = $1 AND "ConnectedSystemObjectId" IS NOT NULL"#,
            )
            .bind(seeded.connected_system_id())
            .fetch_all(&db.pool)
            .await?
            .into_iter()
            .collect();
            exports.retain(|e| !pending.contains(&seeded.object_ids(e.object).cso));
            seed::stage_ad_exports(&db.pool, &seeded, &exports, None).await?;
        }
        let sample = measured(pg, dc.pid(), &db.pool, &mut session).await?;
        rows.push(Measured::new(
            "samba-ad", "durable", 0, phase, strategy, sample,
        ));
    }
    session.finish().await?;
    dc.delete_tree(&root).await?;
    Ok(rows)
}

/// A mixed round of about `n` objects per kind, one export per object (JIM's unique index): title
/// updates, renames (a DN and displayName that need escaping), moves to `OU=Leavers` (which the
/// strategies create), manager changes, member adds and removes, and user deletes. Members added or
/// removed and managers named are only users that this round leaves in place.
fn follow_ups(seeded: &SeededAdSystem, n: usize) -> Vec<AdExport> {
    let users = seeded.users.len();
    let n = n.min(users / 6).max(1);
    let (updated, renamed, moved, managed, deleted) =
        (0..n, n..2 * n, 2 * n..3 * n, 3 * n..4 * n, 4 * n..5 * n);
    let stays = |u: usize| u < n || u >= 5 * n;
    let mut out = Vec::new();
    for i in updated.clone() {
        out.push(AdExport::update(SeedObject::User(i)).with(
            "title",
            AvcType::Update,
            AdValue::Text(format!("{} (promoted)", seeded.users[i].title)),
        ));
    }
    for i in renamed {
        let display = format!("Renamed, {} #{i}", seeded.users[i].given_name);
        let dn = format!("{},{}", build_rdn("CN", &display), seeded.users_ou());
        out.push(
            AdExport::update(SeedObject::User(i))
                .with("distinguishedName", AvcType::Update, AdValue::Text(dn))
                .with("displayName", AvcType::Update, AdValue::Text(display)),
        );
    }
    for i in moved {
        let rdn = seeded.users[i]
            .dn
            .strip_suffix(&format!(",{}", seeded.users_ou()))
            .unwrap_or_default()
            .to_string();
        if rdn.is_empty() {
            continue;
        }
        let dn = format!("{rdn},{}", seeded.leavers_ou());
        out.push(AdExport::update(SeedObject::User(i)).with(
            "distinguishedName",
            AvcType::Update,
            AdValue::Text(dn),
        ));
    }
    for (k, i) in managed.enumerate() {
        out.push(AdExport::update(SeedObject::User(i)).with(
            "manager",
            AvcType::Update,
            AdValue::User(k % n),
        ));
    }
    // Membership changes: half the groups (at most n / 2) gain a user and lose one.
    for group in seeded
        .groups
        .iter()
        .take((n / 2).min(seeded.groups.len() / 2).max(1))
    {
        let mut export = AdExport::update(SeedObject::Group(group.index));
        if let Some(u) = updated.clone().find(|u| !group.members.contains(u)) {
            export = export.with("member", AvcType::Add, AdValue::User(u));
        }
        if let Some(&u) = group.members.iter().find(|&&u| stays(u)) {
            export = export.with("member", AvcType::Remove, AdValue::User(u));
        }
        if !export.changes.is_empty() {
            out.push(export);
        }
    }
    for i in deleted {
        out.push(AdExport::delete(SeedObject::User(i)));
    }
    out
}

/// The Samba AD section of `results.json`.
pub(crate) fn json(args: &Args, m: &Machine, rows: &[Measured]) -> serde_json::Value {
    serde_json::json!({
        "machine": m,
        "template": args.samba_template.to_string(),
        "follow_ups_per_kind": args.samba_follow_ups,
        "jim_today_in_flight": JIM_SAMBA_IN_FLIGHT,
        "rows": rows,
    })
}

/// The Samba AD section of `results.md`.
pub(crate) fn markdown(args: &Args, m: &Machine, rows: &[Measured]) -> String {
    let template: Template = args.samba_template;
    format!(
        "\n{SECTION}\n\nMachine: {} ({} cores, {} GB), Linux {}. Samba AD domain controller (the testkit's, Samba's own ldb store), LDAPS verified against the test CA with a simple bind, no injected latency, PostgreSQL durable. Template {template} in the AD shape (`user`/`group`, `objectGUID` anchors, members and managers), follow-ups: a mixed round of ~{} objects per kind (title updates, renames, moves to a new OU, manager changes, member adds and removes, deletes). jim-today runs {JIM_SAMBA_IN_FLIGHT} in flight (JIM's Export Concurrency for Samba); the engine uses its Samba defaults.\n\n{}\n{}\n",
        m.cpu_model,
        m.cores,
        m.memory_gb,
        m.kernel,
        args.samba_follow_ups,
        table("directory", "samba", rows),
        super::LATENCY_NOTE,
    )
}
