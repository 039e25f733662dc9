//! The testkit's real servers: JIM's schema fixture in PostgreSQL 15, the throwaway slapd (binds over
//! every transport, certificate verification, the directory's shape), and cleanup: servers are gone
//! after a test drops them, after a test panics, and after a test process dies without unwinding.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use jim_export_testkit::process::pid_alive;
use jim_export_testkit::slapd::POST_READ_OID;
use jim_export_testkit::{Postgres, PostgresOptions, Slapd, SlapdOptions, TestCa};
use ldap3::exop::{WhoAmI, WhoAmIResp};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Mod};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Selects the helper test that starts servers and then fails (`panic`) or dies (`abort`).
const CRASH_HELPER_ENV: &str = "JIM_TESTKIT_CRASH_HELPER";

// ---------------------------------------------------------------------------------------------
// PostgreSQL

#[tokio::test]
async fn jim_fixture_loads_into_postgres_15() -> TestResult {
    let pg = Postgres::shared().await?;
    let db = pg.jim_database().await?;

    if pg.pid().is_some() {
        let version: String = sqlx::query_scalar("SHOW server_version_num")
            .fetch_one(&db.pool)
            .await?;
        assert!(version.starts_with("15"), "server_version_num {version}");
    }

    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' \
           AND table_name <> '__EFMigrationsHistory' ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await?;
    assert_eq!(tables.len(), 24, "JIM tables: {tables:?}");
    for name in [
        "PendingExports",
        "PendingExportAttributeValueChanges",
        "ConnectedSystemObjects",
        "ConnectedSystemObjectAttributeValues",
        "ConnectedSystemAttributes",
        "Activities",
        "ActivityRunProfileExecutionItems",
    ] {
        assert!(tables.iter().any(|t| t == name), "table {name} is missing");
    }

    for (table, column, expected) in [
        ("PendingExports", "NextRetryAt", "timestamp with time zone"),
        ("PendingExports", "Id", "uuid"),
        ("PendingExports", "Status", "integer"),
        (
            "ConnectedSystemObjectAttributeValues",
            "StringValue",
            "text",
        ),
    ] {
        let data_type: String = sqlx::query_scalar(
            "SELECT data_type::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = $1 AND column_name = $2",
        )
        .bind(table)
        .bind(column)
        .fetch_one(&db.pool)
        .await
        .map_err(|e| format!("{table}.{column}: {e}"))?;
        assert_eq!(data_type, expected, "{table}.{column}");
    }

    let migrations: Vec<String> =
        sqlx::query_scalar("SELECT \"MigrationId\" FROM \"__EFMigrationsHistory\"")
            .fetch_all(&db.pool)
            .await?;
    assert!(
        migrations
            .iter()
            .any(|m| m == "20260821115123_AddSchemaRefreshRemovalWorkerTask"),
        "migrations: {migrations:?}"
    );
    assert!(
        migrations
            .iter()
            .any(|m| m == jim_export::schema::EXPECTED_MIGRATION)
    );

    let track: String = sqlx::query_scalar("SELECT current_setting('pg_stat_statements.track')")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(track, "all");
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_statements")
        .fetch_one(&db.pool)
        .await?;
    assert!(seen > 0, "pg_stat_statements records nothing");
    db.pool.close().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// slapd: transports and certificates

async fn whoami(ldap: &mut Ldap) -> Result<String, ldap3::LdapError> {
    let (exop, _) = ldap.extended(WhoAmI).await?.success()?;
    Ok(exop.parse::<WhoAmIResp>().authzid)
}

async fn bind_and_whoami(slapd: &Slapd, url: &str, settings: LdapConnSettings) -> TestResult {
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, url).await?;
    ldap3::drive!(conn);
    ldap.simple_bind(slapd.admin_dn(), slapd.admin_password())
        .await?
        .success()?;
    assert_eq!(whoami(&mut ldap).await?, format!("dn:{}", slapd.admin_dn()));
    ldap.unbind().await?;
    Ok(())
}

#[tokio::test]
async fn slapd_accepts_a_simple_bind_over_plain_ldap() -> TestResult {
    let slapd = Slapd::shared().await?;
    assert!(slapd.ldap_url().starts_with("ldap"));
    bind_and_whoami(slapd, slapd.ldap_url(), LdapConnSettings::new()).await?;

    // A wrong password is refused with invalidCredentials (49).
    let (conn, mut ldap) = LdapConnAsync::new(slapd.ldap_url()).await?;
    ldap3::drive!(conn);
    let res = ldap.simple_bind(slapd.admin_dn(), "wrong").await?;
    assert_eq!(res.rc, 49);
    Ok(())
}

#[tokio::test]
async fn slapd_starttls_and_ldaps_verify_against_the_generated_ca() -> TestResult {
    let slapd = Slapd::shared().await?;
    if !slapd.is_local() && slapd.ca_pem().is_none() {
        eprintln!("skipped: JIM_TEST_LDAP_CA_FILE is not set for the existing server");
        return Ok(());
    }
    let config = slapd.tls_client_config()?;
    if slapd.ldap_url().starts_with("ldap://") {
        let settings = LdapConnSettings::new()
            .set_starttls(true)
            .set_config(config.clone());
        bind_and_whoami(slapd, slapd.ldap_url(), settings).await?;
    }
    match slapd.ldaps_url() {
        Some(url) => {
            let settings = LdapConnSettings::new().set_config(config);
            bind_and_whoami(slapd, url, settings).await?;
        }
        None => eprintln!("skipped LDAPS: the existing server has no ldaps:// URL"),
    }
    Ok(())
}

#[tokio::test]
async fn slapd_refuses_clients_that_trust_only_an_unrelated_ca() -> TestResult {
    let slapd = Slapd::shared().await?;
    if !slapd.is_local() {
        eprintln!("skipped: needs the throwaway slapd");
        return Ok(());
    }
    let unrelated = TestCa::unrelated()?.client_config()?;
    let starttls = LdapConnSettings::new()
        .set_starttls(true)
        .set_config(unrelated.clone());
    let err = LdapConnAsync::with_settings(starttls, slapd.ldap_url())
        .await
        .err()
        .ok_or("StartTLS with an unrelated CA was accepted")?;
    assert!(
        err.to_string().contains("certificate"),
        "StartTLS: not a certificate error: {err}"
    );

    let url = slapd.ldaps_url().ok_or("no ldaps URL")?;
    let ldaps = LdapConnSettings::new().set_config(unrelated);
    let err = LdapConnAsync::with_settings(ldaps, url)
        .await
        .err()
        .ok_or("LDAPS with an unrelated CA was accepted")?;
    assert!(
        err.to_string().contains("certificate"),
        "LDAPS: not a certificate error: {err}"
    );
    Ok(())
}

#[tokio::test]
async fn slapd_maps_sasl_external_over_ldapi_to_the_admin() -> TestResult {
    let slapd = Slapd::shared().await?;
    let Some(url) = slapd.ldapi_url() else {
        eprintln!("skipped: the existing server has no ldapi:// URL");
        return Ok(());
    };
    let (conn, mut ldap) = LdapConnAsync::new(url).await?;
    ldap3::drive!(conn);
    ldap.sasl_external_bind().await?.success()?;
    assert_eq!(whoami(&mut ldap).await?, format!("dn:{}", slapd.admin_dn()));
    ldap.unbind().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// slapd: the directory's shape

#[tokio::test]
async fn slapd_root_dse_advertises_post_read_and_the_suffix() -> TestResult {
    let slapd = Slapd::shared().await?;
    let root = slapd
        .read_entry("", &["supportedControl", "namingContexts"])
        .await?
        .ok_or("no root DSE")?;
    let controls = root
        .attrs
        .get("supportedControl")
        .ok_or("no supportedControl")?;
    assert!(controls.iter().any(|c| c == POST_READ_OID), "{controls:?}");
    let contexts = root
        .attrs
        .get("namingContexts")
        .ok_or("no namingContexts")?;
    assert!(contexts.iter().any(|c| c == slapd.suffix()), "{contexts:?}");

    for dn in [
        slapd.suffix().to_string(),
        format!("ou=People,{}", slapd.suffix()),
        format!("ou=Groups,{}", slapd.suffix()),
    ] {
        let entry = slapd.read_entry(&dn, &["entryUUID"]).await?;
        let entry = entry.ok_or_else(|| format!("{dn} is missing"))?;
        assert!(
            entry.attrs.contains_key("entryUUID"),
            "{dn}: {:?}",
            entry.attrs
        );
    }
    let missing = format!("ou=nowhere,{}", slapd.suffix());
    assert!(slapd.read_entry(&missing, &[]).await?.is_none());
    assert_eq!(slapd.count_entries(&missing, "(objectClass=*)").await?, 0);
    Ok(())
}

/// An entry's attributes for ldap3's `add`.
fn attrs(pairs: &[(&str, &[&str])]) -> Vec<(String, HashSet<String>)> {
    pairs
        .iter()
        .map(|(name, values)| {
            (
                name.to_string(),
                values.iter().map(|v| v.to_string()).collect(),
            )
        })
        .collect()
}

fn person(uid: &str) -> Vec<(String, HashSet<String>)> {
    let cn = format!("User {uid}");
    attrs(&[
        ("objectClass", &["inetOrgPerson"]),
        ("uid", &[uid]),
        ("cn", &[&cn]),
        ("sn", &[uid]),
    ])
}

#[tokio::test]
async fn slapd_sorts_member_values_and_has_no_memberof_or_refint() -> TestResult {
    let slapd = Slapd::shared().await?;
    let suffix = slapd.suffix();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let people = format!("ou=run-{run},ou=People,{suffix}");
    let mut ldap = slapd.admin_ldap().await?;
    let ou = format!("run-{run}");
    ldap.add(
        &people,
        attrs(&[("objectClass", &["organizationalUnit"]), ("ou", &[&ou])]),
    )
    .await?
    .success()?;
    let dn = |uid: &str| format!("uid={uid},{people}");
    for uid in ["u3", "u1", "u2"] {
        ldap.add(&dn(uid), person(uid)).await?.success()?;
    }
    assert_eq!(
        slapd
            .count_entries(&people, "(objectClass=inetOrgPerson)")
            .await?,
        3
    );

    // Members go in out of order; sortvals keeps them sorted by normalised value.
    let group = format!("cn=g-{run},ou=Groups,{suffix}");
    let cn = format!("g-{run}");
    let (u3, u1, u2) = (dn("u3"), dn("u1"), dn("u2"));
    ldap.add(
        &group,
        attrs(&[
            ("objectClass", &["groupOfNames"]),
            ("cn", &[&cn]),
            ("member", &[&u3, &u1, &u2]),
        ]),
    )
    .await?
    .success()?;
    ldap.modify(
        &group,
        vec![Mod::Add("member".to_string(), HashSet::from([dn("u0")]))],
    )
    .await?
    .success()?;
    let members = |entry: Option<ldap3::SearchEntry>| -> Vec<String> {
        entry
            .and_then(|mut e| e.attrs.remove("member"))
            .unwrap_or_default()
            .into_iter()
            .map(|m| m.to_ascii_lowercase())
            .collect()
    };
    let lower = |uid: &str| dn(uid).to_ascii_lowercase();
    assert_eq!(
        members(slapd.read_entry(&group, &["member"]).await?),
        vec![lower("u0"), lower("u1"), lower("u2"), lower("u3")]
    );
    // A duplicate member is refused (attributeOrValueExists), as JIM's connector expects.
    let dup = ldap
        .modify(
            &group,
            vec![Mod::Add("member".to_string(), HashSet::from([dn("u1")]))],
        )
        .await?;
    assert_eq!(dup.rc, 20);

    // No memberof overlay: members carry no memberOf.
    let user = slapd
        .read_entry(&dn("u1"), &["*", "+", "memberOf"])
        .await?
        .ok_or("u1 is missing")?;
    assert!(
        !user
            .attrs
            .keys()
            .any(|k| k.eq_ignore_ascii_case("memberOf")),
        "memberOf appeared: {:?}",
        user.attrs.keys()
    );
    // No refint overlay: deleting a member leaves the stale value for the engine to remove.
    ldap.delete(&dn("u2")).await?.success()?;
    assert!(
        members(slapd.read_entry(&group, &["member"]).await?).contains(&lower("u2")),
        "the deleted member vanished from the group: refint is active"
    );
    ldap.unbind().await?;
    Ok(())
}

#[tokio::test]
async fn slapd_serves_several_suffixes_and_survives_kill_and_restart() -> TestResult {
    if std::env::var_os("JIM_TEST_LDAP_URL").is_some() {
        eprintln!("skipped: needs the throwaway slapd");
        return Ok(());
    }
    let mut slapd = Slapd::start(SlapdOptions {
        suffixes: vec![
            "dc=yellowstone,dc=local".into(),
            "dc=glitterband,dc=local".into(),
        ],
        threads: Some(4),
        durable: true,
        ..SlapdOptions::default()
    })
    .await?;
    assert_eq!(slapd.suffixes().len(), 2);
    let second = "dc=glitterband,dc=local";
    assert_eq!(
        slapd.admin_dn_for(second),
        Some("cn=admin,dc=glitterband,dc=local")
    );
    assert!(
        slapd
            .read_entry(&format!("ou=Groups,{second}"), &[])
            .await?
            .is_some()
    );

    // The second suffix's own admin writes there.
    let mut ldap = slapd.admin_ldap_for(second).await?;
    let alice = format!("uid=alice,ou=People,{second}");
    ldap.add(&alice, person("alice")).await?.success()?;
    ldap.unbind().await?;

    let url = slapd.ldap_url().to_string();
    let pid = slapd.pid().ok_or("no pid")?;
    slapd.kill();
    assert!(!pid_alive(pid), "slapd survived kill");
    assert!(!slapd.is_running());
    assert!(
        LdapConnAsync::new(&url).await.is_err(),
        "a killed slapd still answers"
    );

    slapd.restart().await?;
    assert_eq!(slapd.ldap_url(), url);
    assert!(slapd.is_running());
    assert_ne!(slapd.pid(), Some(pid));
    assert!(
        slapd.read_entry(&alice, &[]).await?.is_some(),
        "data lost in the crash"
    );

    slapd.stop();
    assert!(!slapd.is_running());
    slapd.restart().await?;
    assert_eq!(slapd.count_entries(second, "(objectClass=*)").await?, 4);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Cleanup

fn wait_until(deadline: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn dropped_servers_are_gone() -> TestResult {
    if std::env::var_os("JIM_TEST_LDAP_URL").is_some()
        || std::env::var_os("JIM_TEST_DATABASE_URL").is_some()
    {
        eprintln!("skipped: needs throwaway servers");
        return Ok(());
    }
    let slapd = Slapd::start(SlapdOptions::default()).await?;
    let pg = Postgres::start(PostgresOptions::default()).await?;
    let servers = [
        (
            slapd.pid().ok_or("no slapd pid")?,
            slapd.dir().ok_or("no dir")?.to_path_buf(),
        ),
        (
            pg.pid().ok_or("no postgres pid")?,
            pg.dir().ok_or("no dir")?.to_path_buf(),
        ),
    ];
    for (pid, dir) in &servers {
        assert!(pid_alive(*pid) && dir.exists());
    }
    drop(slapd);
    drop(pg);
    for (pid, dir) in &servers {
        assert!(!pid_alive(*pid), "pid {pid} outlived its handle");
        assert!(!dir.exists(), "{} outlived its handle", dir.display());
    }
    Ok(())
}

/// Not a test on its own: run as a child process by the cleanup tests below. It starts PostgreSQL and
/// slapd, prints their PIDs and folders, then panics (Drop runs while unwinding) or aborts (no
/// destructor runs; only the watchdog can clean up).
#[test]
#[ignore = "a helper that the cleanup tests run in a child process"]
fn crash_helper() {
    let Ok(mode) = std::env::var(CRASH_HELPER_ENV) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (slapd, pg) = rt.block_on(async {
        (
            Slapd::start(SlapdOptions::default()).await.expect("slapd"),
            Postgres::start(PostgresOptions::default())
                .await
                .expect("postgres"),
        )
    });
    for (name, pid, dir) in [
        ("slapd", slapd.pid(), slapd.dir()),
        ("postgres", pg.pid(), pg.dir()),
    ] {
        println!(
            "SERVER {name} {} {}",
            pid.unwrap_or(0),
            dir.map(|d| d.display().to_string()).unwrap_or_default()
        );
    }
    use std::io::Write;
    std::io::stdout().flush().ok();
    if mode == "abort" {
        std::process::abort();
    }
    panic!("the crash helper fails on purpose");
}

/// A server the crash helper started: its name, PID and folder.
struct Reported {
    name: String,
    pid: i32,
    dir: PathBuf,
}

/// Runs the crash helper in `mode` and returns the servers it reported.
fn run_crash_helper(mode: &str) -> Result<Vec<Reported>, Box<dyn std::error::Error>> {
    let output = Command::new(std::env::current_exe()?)
        .args([
            "crash_helper",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_HELPER_ENV, mode)
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !output.status.success(),
        "the helper should fail:\n{stdout}"
    );
    let servers: Vec<Reported> = stdout
        .lines()
        .filter_map(|l| l.find("SERVER ").map(|i| &l[i + "SERVER ".len()..]))
        .filter_map(|l| {
            let mut parts = l.splitn(3, ' ');
            let name = parts.next()?.to_string();
            let pid = parts.next()?.parse().ok()?;
            let dir = PathBuf::from(parts.next()?);
            Some(Reported { name, pid, dir })
        })
        .collect();
    assert_eq!(
        servers.len(),
        2,
        "the helper did not report its servers:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for Reported { name, pid, dir } in &servers {
        assert!(
            *pid > 0 && dir.is_absolute(),
            "{name} was not started locally"
        );
    }
    Ok(servers)
}

fn external_servers() -> bool {
    std::env::var_os("JIM_TEST_LDAP_URL").is_some()
        || std::env::var_os("JIM_TEST_DATABASE_URL").is_some()
}

#[test]
fn servers_are_gone_after_a_failing_test() -> TestResult {
    if external_servers() {
        eprintln!("skipped: needs throwaway servers");
        return Ok(());
    }
    for Reported { name, pid, dir } in run_crash_helper("panic")? {
        assert!(
            wait_until(Duration::from_secs(10), || !pid_alive(pid) && !dir.exists()),
            "{name} (pid {pid}, {}) outlived a panicking test",
            dir.display()
        );
    }
    Ok(())
}

#[test]
fn servers_are_gone_after_a_test_process_dies() -> TestResult {
    if external_servers() {
        eprintln!("skipped: needs throwaway servers");
        return Ok(());
    }
    // abort() runs no destructor: the watchdog notices the dead test process, stops the servers and
    // removes their folders.
    for Reported { name, pid, dir } in run_crash_helper("abort")? {
        assert!(
            wait_until(Duration::from_secs(15), || !pid_alive(pid) && !dir.exists()),
            "{name} (pid {pid}, {}) outlived an aborted test process",
            dir.display()
        );
    }
    Ok(())
}
