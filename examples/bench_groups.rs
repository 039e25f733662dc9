//! Membership changes on large groups, through the store, against a directory that does nothing:
//! `--groups` groups of `--members` members each (the same users in every group), one Update per
//! group with `--changes` member changes (half Removes of members, half Adds of users outside the
//! group), the even groups' changes stored resolved (the plain pass), the odd groups' naming MVOs
//! (the reference pass). Prints what the claim loaded per export against the member list's size,
//! and the time of the claims, resolutions and persists, then checks each group's member rows.
//!
//! The claim reads a member list whole only while it is small (`store::sql`, `SAMPLE_ROWS`), so
//! the loaded values and the times should stay flat as `--members` grows.
//!
//! ```text
//! cargo run --release --example bench_groups [-- --groups 10 --members 100000 --changes 20]
//! ```

use std::time::{Duration, Instant};

use jim_export::model::ValueSlots;
use jim_export::outcome::ExportOutcome;
use jim_export::store::Pass;
use jim_export_testkit::support::store::*;
use sqlx::Row;
use uuid::Uuid;

/// The command line (`--help` prints it with every default).
#[derive(clap::Parser)]
#[command(about = "Membership changes on large groups through the store")]
struct Cli {
    /// Groups, one Update each.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(2..))]
    groups: u64,
    /// Members of every group.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(2..))]
    members: u64,
    /// Member changes per Update (half Removes, half Adds).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(2..))]
    changes: u64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = <Cli as clap::Parser>::parse();
    let (groups, members, changes) = (
        cli.groups as usize,
        cli.members as usize,
        cli.changes as usize,
    );
    let (removes, adds) = (changes / 2, changes - changes / 2);
    eprintln!("seeding {groups} groups of {members} members ...");
    let fx = Fixture::new().await;
    let member = fx.attrs.member;

    // Users: the members, then those the Adds bring in.
    let users = members + adds;
    let mvos: Vec<Uuid> = (0..users).map(|_| Uuid::new_v4()).collect();
    let csos: Vec<Uuid> = (0..users).map(|_| Uuid::new_v4()).collect();
    let dns: Vec<String> = (0..users)
        .map(|i| format!("uid=u{i},ou=People,dc=example,dc=org"))
        .collect();
    sqlx::query(
        r#"INSERT INTO "MetaverseObjects" ("Id", "Created", "TypeId", "Status", "DeletionInitiatedByType",
             "Origin", "ScopeReviewPending") SELECT m, now(), 1, 0, 0, 0, false FROM unnest($1::uuid[]) m"#,
    )
    .bind(&mvos)
    .execute(&fx.pool)
    .await?;
    sqlx::query(
        r#"INSERT INTO "ConnectedSystemObjects" ("Id", "Created", "TypeId", "ConnectedSystemId",
             "ExternalIdAttributeId", "SecondaryExternalIdAttributeId", "Status", "MetaverseObjectId",
             "JoinType", "ScopeReviewPending")
           SELECT c, now(), $3, $4, $5, $6, 0, m, 2, false FROM unnest($1::uuid[], $2::uuid[]) AS u(c, m)"#,
    )
    .bind(&csos)
    .bind(&mvos)
    .bind(fx.user_type)
    .bind(fx.cs)
    .bind(fx.attrs.guid)
    .bind(fx.attrs.dn)
    .execute(&fx.pool)
    .await?;
    sqlx::query(
        r#"INSERT INTO "ConnectedSystemObjectAttributeValues" ("Id", "AttributeId", "ConnectedSystemObjectId", "StringValue")
           SELECT gen_random_uuid(), $3, c, d FROM unnest($1::uuid[], $2::text[]) AS u(c, d)"#,
    )
    .bind(&csos)
    .bind(&dns)
    .bind(fx.attrs.dn)
    .execute(&fx.pool)
    .await?;

    let mut group_ids = Vec::with_capacity(groups);
    for g in 0..groups {
        let group = fx
            .cso(
                true,
                Some(&format!("cn=g{g},ou=Groups,dc=example,dc=org")),
                None,
                0,
            )
            .await;
        sqlx::query(
            r#"INSERT INTO "ConnectedSystemObjectAttributeValues" ("Id", "AttributeId", "ConnectedSystemObjectId",
                 "ReferenceValueId", "UnresolvedReferenceValue")
               SELECT gen_random_uuid(), $1, $2, c, d FROM unnest($3::uuid[], $4::text[]) AS u(c, d)"#,
        )
        .bind(member)
        .bind(group)
        .bind(&csos[..members])
        .bind(&dns[..members])
        .execute(&fx.pool)
        .await?;
        let by_mvo = g % 2 == 1;
        let mut pe = fx.pe(UPDATE, Some(group));
        if by_mvo {
            pe = pe.unresolved();
        }
        let pe = pe.insert(&fx).await;
        // Removes spread over the list, Adds of the users outside it.
        let chosen = (0..removes)
            .map(|i| (REMOVE, i * (members / removes.max(1))))
            .chain((0..adds).map(|i| (ADD, members + i)));
        for (kind, u) in chosen {
            if by_mvo {
                fx.avc_ref(pe, member, kind, &mvos[u].to_string()).await;
            } else {
                let id = fx
                    .avc(pe, member, kind, AVC_PENDING, ValueSlots::text(&dns[u]))
                    .await;
                sqlx::query(
                    r#"UPDATE "PendingExportAttributeValueChanges" SET "ResolvedReferenceCsoId" = $2 WHERE "Id" = $1"#,
                )
                .bind(id)
                .bind(csos[u])
                .execute(&fx.pool)
                .await?;
            }
        }
        group_ids.push(group);
    }
    sqlx::query("ANALYZE").execute(&fx.pool).await?;

    let q = fx.queue().await;
    let (mut claim, mut resolve, mut persist) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let statements = q.statements();
    let (mut exports, mut loaded) = (0usize, 0usize);
    for pass in [Pass::Plain, Pass::References] {
        let started = Instant::now();
        let mut page = q.claim(pass, None, 100).await?;
        claim += started.elapsed();
        let started = Instant::now();
        q.resolve_references(&mut page.exports).await?;
        resolve += started.elapsed();
        exports += page.exports.len();
        loaded += page
            .exports
            .iter()
            .filter_map(|e| e.cso.as_ref())
            .map(|c| c.values.len())
            .sum::<usize>();
        let outcomes: Vec<ExportOutcome> = page
            .exports
            .into_iter()
            .map(ExportOutcome::succeeded)
            .collect();
        let started = Instant::now();
        q.persist(&outcomes).await?;
        persist += started.elapsed();
    }

    let statements = q.statements() - statements;
    let want = (members - removes + adds) as i64;
    for group in &group_ids {
        let n: i64 = sqlx::query(
            r#"SELECT count(*) FROM "ConnectedSystemObjectAttributeValues"
               WHERE "ConnectedSystemObjectId" = $1 AND "AttributeId" = $2"#,
        )
        .bind(group)
        .bind(member)
        .fetch_one(&fx.pool)
        .await?
        .get(0);
        if n != want {
            return Err(
                format!("group {group}: {n} member rows after the run, expected {want}").into(),
            );
        }
    }
    println!(
        "{groups} groups of {members} members, {changes} member changes per Update ({exports} exports):"
    );
    println!(
        "  values loaded per export: {:.0} (a member list holds {members})",
        loaded as f64 / exports.max(1) as f64
    );
    println!(
        "  claim {:.1} ms (with its lookups), resolution {:.1} ms, persist {:.1} ms (both passes, one page each)",
        ms(claim),
        ms(resolve),
        ms(persist)
    );
    println!("  {statements} statements in all");
    // PostgreSQL's own execution time, without the round trips and the first statement's parse on
    // a cold connection, which dominate the wall times at small sizes.
    let exec = |pattern: &'static str| {
        let pool = fx.pool.clone();
        async move {
            sqlx::query(
                "SELECT COALESCE(sum(total_exec_time), 0)::float8 FROM pg_stat_statements WHERE query LIKE $1",
            )
            .bind(pattern)
            .fetch_one(&pool)
            .await
            .map(|r| r.get::<f64, _>(0))
        }
    };
    println!(
        "  PostgreSQL execution: claims {:.1} ms, lookups of resolved members {:.1} ms, resolutions {:.1} ms, persists {:.1} ms",
        exec("WITH cand AS%").await?,
        exec("%AS w(owner, attr, target, dn)%").await?,
        exec("%unnest($2::uuid[]) AS m(id)%").await?,
        exec("WITH pe_in AS%").await?
    );
    println!("  every group holds {want} member rows afterwards");
    Ok(())
}
