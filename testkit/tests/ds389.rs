//! The throwaway 389 Directory Server: two at once, binds over plain LDAP, StartTLS, LDAPS (verified
//! against the generated CA) and ldapi, the memberOf and referential integrity plugins, stop, kill
//! and restart, and the facts the engine's `ds389` dialect relies on (anchors, post-read, result
//! codes, password policy, read-only back end; see the module docs of `ds389.rs`).
//!
//! Each test starts its own server (well under a second once the machine's template exists) and
//! skips with a message when 389 cannot run here and `CI` is unset (a failure under CI).

use std::collections::HashSet;
use std::time::Instant;

use jim_export_testkit::ds389::{ADMIN_DN, ASSERTION_OID, POST_READ_OID, WHO_AM_I_OID};
use jim_export_testkit::{Ds389, Ds389Options, TestCa};
use ldap3::controls::{Control, ControlType, PostRead, PostReadResp, RawControl};
use ldap3::exop::{WhoAmI, WhoAmIResp};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapResult, Mod};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// STARTTLS's extended operation OID.
const STARTTLS_OID: &str = "1.3.6.1.4.1.1466.20037";

async fn start() -> Option<Ds389> {
    Ds389::start_or_skip(Ds389Options::default()).await
}

async fn whoami(ldap: &mut Ldap) -> Result<String, ldap3::LdapError> {
    let (exop, _) = ldap.extended(WhoAmI).await?.success()?;
    Ok(exop.parse::<WhoAmIResp>().authzid)
}

/// Binds as the Directory Manager at `url` with `settings` and checks "Who am I?".
async fn bind_and_whoami(ds: &Ds389, url: &str, settings: LdapConnSettings) -> TestResult {
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, url).await?;
    ldap3::drive!(conn);
    ldap.simple_bind(ds.admin_dn(), ds.admin_password())
        .await?
        .success()?;
    // 389 puts a space after "dn:" and lower-cases the DN.
    assert_eq!(
        whoami(&mut ldap).await?,
        format!("dn: {}", ADMIN_DN.to_ascii_lowercase())
    );
    ldap.unbind().await?;
    Ok(())
}

fn attrs<'a>(pairs: &[(&'a str, &[&'a str])]) -> Vec<(&'a str, HashSet<&'a str>)> {
    pairs
        .iter()
        .map(|(k, v)| (*k, v.iter().copied().collect()))
        .collect()
}

async fn add_person(ldap: &mut Ldap, dn: &str, uid: &str) -> Result<LdapResult, ldap3::LdapError> {
    ldap.add(
        dn,
        attrs(&[
            ("objectClass", &["top", "inetOrgPerson"]),
            ("uid", &[uid]),
            ("cn", &[uid]),
            ("sn", &[uid]),
        ]),
    )
    .await
}

fn values(entry: &Option<ldap3::SearchEntry>, attr: &str) -> Vec<String> {
    entry
        .as_ref()
        .and_then(|e| {
            e.attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(attr))
                .map(|(_, v)| v.clone())
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn two_servers_run_side_by_side_over_ldap_starttls_ldaps_and_ldapi() -> TestResult {
    let began = Instant::now();
    let (a, b) = tokio::join!(start(), start());
    let (Some(a), Some(b)) = (a, b) else {
        return Ok(());
    };
    eprintln!(
        "two 389 servers started in {:?} (each: {:?} and {:?})",
        began.elapsed(),
        a.start_time(),
        b.start_time()
    );
    assert_ne!(a.ldap_url(), b.ldap_url());
    assert_ne!(a.ldaps_url(), b.ldaps_url());
    assert_ne!(a.pid(), b.pid());
    assert_ne!(a.ca_pem(), b.ca_pem());

    for ds in [&a, &b] {
        assert!(ds.ldap_url().starts_with("ldap://127.0.0.1:"));
        assert!(ds.ldaps_url().starts_with("ldaps://127.0.0.1:"));
        bind_and_whoami(ds, ds.ldap_url(), LdapConnSettings::new()).await?;
        let starttls = LdapConnSettings::new()
            .set_starttls(true)
            .set_config(ds.tls_client_config()?);
        bind_and_whoami(ds, ds.ldap_url(), starttls).await?;
        let ldaps = LdapConnSettings::new().set_config(ds.tls_client_config()?);
        bind_and_whoami(ds, ds.ldaps_url(), ldaps).await?;
        let mut over_ldaps = ds.admin_ldaps().await?;
        over_ldaps.unbind().await?;

        // ldapi: SASL EXTERNAL as root is the Directory Manager.
        let url = ds.ldapi_url().ok_or("ldapi is off")?;
        let (conn, mut ldap) = LdapConnAsync::new(url).await?;
        ldap3::drive!(conn);
        ldap.sasl_external_bind().await?.success()?;
        // Autobind keeps the configured DN's case.
        assert_eq!(
            whoami(&mut ldap).await?.to_ascii_lowercase(),
            "dn: cn=directory manager"
        );
        ldap.unbind().await?;

        // A client that trusts another CA is refused over both TLS transports.
        let other = TestCa::unrelated()?.client_config()?;
        let starttls = LdapConnSettings::new()
            .set_starttls(true)
            .set_config(other.clone());
        assert!(
            LdapConnAsync::with_settings(starttls, ds.ldap_url())
                .await
                .is_err()
        );
        let ldaps = LdapConnSettings::new().set_config(other);
        match LdapConnAsync::with_settings(ldaps, ds.ldaps_url()).await {
            Err(_) => {}
            Ok((conn, mut ldap)) => {
                // rustls may report the failure on first use rather than at connect.
                ldap3::drive!(conn);
                assert!(
                    ldap.simple_bind(ADMIN_DN, ds.admin_password())
                        .await
                        .is_err()
                );
            }
        }
    }

    // Each server holds its own data.
    let dn = format!("uid=only-a,ou=People,{}", a.suffix());
    let mut ldap = a.admin_ldap().await?;
    add_person(&mut ldap, &dn, "only-a").await?.success()?;
    ldap.unbind().await?;
    assert!(a.read_entry(&dn, &[]).await?.is_some());
    assert!(b.read_entry(&dn, &[]).await?.is_none());

    // Dropping one stops it (by PID) and leaves the other running.
    let pid = a.pid().ok_or("no pid")?;
    let dir = a.dir().to_path_buf();
    let url = a.ldap_url().to_string();
    let dropped = Instant::now();
    drop(a);
    eprintln!("389 server dropped (killed) in {:?}", dropped.elapsed());
    assert!(!jim_export_testkit::process::pid_alive(pid));
    assert!(!dir.exists());
    // Deterministic although tests run in parallel: `free_port` never hands A's port to another
    // server of this binary.
    assert!(LdapConnAsync::new(&url).await.is_err());
    assert!(b.is_running());
    assert_eq!(b.count_entries(b.suffix(), "(objectClass=*)").await?, 3);
    Ok(())
}

#[tokio::test]
async fn root_dse_schema_and_plugins() -> TestResult {
    let Some(ds) = start().await else {
        return Ok(());
    };
    let root = ds
        .read_entry(
            "",
            &[
                "vendorName",
                "vendorVersion",
                "supportedControl",
                "supportedExtension",
                "namingContexts",
            ],
        )
        .await?;
    let vendor = values(&root, "vendorName");
    let version = values(&root, "vendorVersion");
    let controls = values(&root, "supportedControl");
    let extensions = values(&root, "supportedExtension");
    eprintln!("root DSE: vendorName {vendor:?}, vendorVersion {version:?}");
    eprintln!("root DSE: supportedControl {controls:?}");
    eprintln!("root DSE: supportedExtension {extensions:?}");
    assert_eq!(vendor, ["389 Project"]);
    assert!(
        version.iter().any(|v| v.starts_with("389-Directory/")),
        "{version:?}"
    );
    assert!(controls.iter().any(|c| c == POST_READ_OID));
    assert!(!controls.iter().any(|c| c == ASSERTION_OID));
    assert!(extensions.iter().any(|e| e == WHO_AM_I_OID));
    assert!(extensions.iter().any(|e| e == STARTTLS_OID));
    assert!(
        values(&root, "namingContexts")
            .iter()
            .any(|c| c == ds.suffix())
    );

    // The default schema.
    for class in [
        "groupOfNames",
        "groupOfUniqueNames",
        "inetOrgPerson",
        "nsMemberOf",
    ] {
        assert!(ds.has_object_class(class).await?, "object class {class}");
    }
    for attribute in [
        "nsAccountLock",
        "memberOf",
        "entryUUID",
        "nsUniqueId",
        "member",
    ] {
        assert!(
            ds.has_attribute_type(attribute).await?,
            "attribute {attribute}"
        );
    }
    assert!(!ds.has_object_class("noSuchClassHere").await?);

    // The plugins.
    for plugin in [
        "MemberOf Plugin",
        "referential integrity postoperation",
        "entryuuid",
    ] {
        let entry = ds
            .read_entry(
                &format!("cn={plugin},cn=plugins,cn=config"),
                &["nsslapd-pluginEnabled"],
            )
            .await?;
        assert_eq!(values(&entry, "nsslapd-pluginEnabled"), ["on"], "{plugin}");
    }
    let lib = std::path::Path::new("/usr/lib/x86_64-linux-gnu/dirsrv/plugins");
    if lib.is_dir() {
        assert!(lib.join("libentryuuid-plugin.so").is_file());
    }

    // Base entries, each with both anchors.
    for dn in [
        ds.suffix().to_string(),
        format!("ou=People,{}", ds.suffix()),
        format!("ou=Groups,{}", ds.suffix()),
    ] {
        let entry = ds.read_entry(&dn, &["entryUUID", "nsUniqueId"]).await?;
        assert_eq!(values(&entry, "entryUUID").len(), 1, "{dn}");
        assert_eq!(values(&entry, "nsUniqueId").len(), 1, "{dn}");
    }
    Ok(())
}

#[tokio::test]
async fn memberof_and_referential_integrity_follow_membership() -> TestResult {
    let Some(ds) = start().await else {
        return Ok(());
    };
    let suffix = ds.suffix();
    let user = format!("uid=alice,ou=People,{suffix}");
    let other = format!("uid=bob,ou=People,{suffix}");
    let group = format!("cn=staff,ou=Groups,{suffix}");
    let unique = format!("cn=unique,ou=Groups,{suffix}");
    let mut ldap = ds.admin_ldap().await?;
    add_person(&mut ldap, &user, "alice").await?.success()?;
    add_person(&mut ldap, &other, "bob").await?.success()?;
    ldap.add(
        &group,
        attrs(&[
            ("objectClass", &["top", "groupOfNames"]),
            ("cn", &["staff"]),
            ("member", &[&user, &other]),
        ]),
    )
    .await?
    .success()?;
    ldap.add(
        &unique,
        attrs(&[
            ("objectClass", &["top", "groupOfUniqueNames"]),
            ("cn", &["unique"]),
            ("uniqueMember", &[&user]),
        ]),
    )
    .await?
    .success()?;

    // memberOf as soon as the group write returns, with nsMemberOf added to the user's classes.
    let entry = ds.read_entry(&user, &["memberOf", "objectClass"]).await?;
    let member_of: HashSet<String> = values(&entry, "memberOf")
        .iter()
        .map(|v| v.to_ascii_lowercase())
        .collect();
    assert_eq!(
        member_of,
        HashSet::from([group.to_ascii_lowercase(), unique.to_ascii_lowercase()])
    );
    assert!(
        values(&entry, "objectClass")
            .iter()
            .any(|c| c.eq_ignore_ascii_case("nsMemberOf")),
        "{entry:?}"
    );

    // Referential integrity: deleting the user removes it from both groups before Delete returns.
    ldap.delete(&user).await?.success()?;
    let members = values(&ds.read_entry(&group, &["member"]).await?, "member");
    assert_eq!(members.len(), 1, "{members:?}");
    assert!(members[0].eq_ignore_ascii_case(&other));
    let unique_members = ds.read_entry(&unique, &["uniqueMember"]).await?;
    assert!(unique_members.is_some(), "the emptied group stays");
    assert!(values(&unique_members, "uniqueMember").is_empty());

    // A rename follows into the groups too.
    ldap.modifydn(&other, "uid=robert", true, None)
        .await?
        .success()?;
    let renamed = format!("uid=robert,ou=People,{suffix}");
    let members = values(&ds.read_entry(&group, &["member"]).await?, "member");
    assert_eq!(members.len(), 1, "{members:?}");
    assert!(members[0].eq_ignore_ascii_case(&renamed), "{members:?}");
    let other = renamed;

    // Removing the last member leaves an empty groupOfNames (member is MAY in 389's schema).
    ldap.modify(&group, vec![Mod::Delete("member", HashSet::new())])
        .await?
        .success()?;
    assert!(values(&ds.read_entry(&other, &["memberOf"]).await?, "memberOf").is_empty());
    ldap.unbind().await?;
    Ok(())
}

#[tokio::test]
async fn stop_kill_and_restart_keep_ports_data_and_password() -> TestResult {
    // Another password and durable writes: both set per start on the shared template.
    let options = Ds389Options {
        admin_password: "another-secret".into(),
        durable: true,
        ..Ds389Options::default()
    };
    let Some(mut ds) = Ds389::start_or_skip(options).await else {
        return Ok(());
    };
    eprintln!("389 server started in {:?}", ds.start_time());
    assert_eq!(ds.admin_password(), "another-secret");
    let config = ds
        .read_entry(
            "cn=bdb,cn=config,cn=ldbm database,cn=plugins,cn=config",
            &["nsslapd-db-durable-transaction"],
        )
        .await?;
    assert_eq!(values(&config, "nsslapd-db-durable-transaction"), ["on"]);
    let (conn, mut ldap) = LdapConnAsync::new(ds.ldap_url()).await?;
    ldap3::drive!(conn);
    let old = ldap
        .simple_bind(ADMIN_DN, jim_export_testkit::ds389::DEFAULT_ADMIN_PASSWORD)
        .await?;
    assert_eq!(old.rc, 49, "the template's password no longer works");
    ldap.unbind().await?;
    let dn = format!("uid=durable,ou=People,{}", ds.suffix());
    let mut ldap = ds.admin_ldap().await?;
    add_person(&mut ldap, &dn, "durable").await?.success()?;
    ldap.unbind().await?;
    let url = ds.ldap_url().to_string();
    let pid = ds.pid().ok_or("no pid")?;

    let stopping = Instant::now();
    ds.stop();
    eprintln!("389 clean stop took {:?}", stopping.elapsed());
    assert!(!ds.is_running() && ds.pid().is_none());
    assert!(!jim_export_testkit::process::pid_alive(pid));
    assert!(LdapConnAsync::new(&url).await.is_err());
    let restarting = Instant::now();
    ds.restart().await?;
    eprintln!("389 restart took {:?}", restarting.elapsed());
    assert_eq!(ds.ldap_url(), url);
    assert!(ds.read_entry(&dn, &[]).await?.is_some());

    // A crash: the data written before it is still there after a restart.
    let dn2 = format!("uid=before-crash,ou=People,{}", ds.suffix());
    let mut ldap = ds.admin_ldap().await?;
    add_person(&mut ldap, &dn2, "before-crash")
        .await?
        .success()?;
    ldap.unbind().await?;
    let killing = Instant::now();
    ds.kill();
    eprintln!("389 kill took {:?}", killing.elapsed());
    assert!(!ds.is_running());
    ds.restart().await?;
    assert!(ds.read_entry(&dn2, &[]).await?.is_some());
    assert!(ds.is_running());
    Ok(())
}

/// The BER encoding of the equality filter `(attr=value)`, for the assertion control (short
/// strings only).
fn equality_filter(attr: &str, value: &str) -> Vec<u8> {
    let mut body = vec![0x04, attr.len() as u8];
    body.extend_from_slice(attr.as_bytes());
    body.extend_from_slice(&[0x04, value.len() as u8]);
    body.extend_from_slice(value.as_bytes());
    let mut out = vec![0xa3, body.len() as u8];
    out.extend(body);
    out
}

#[tokio::test]
async fn facts_for_the_ds389_dialect() -> TestResult {
    let Some(ds) = start().await else {
        return Ok(());
    };
    let suffix = ds.suffix().to_string();
    let people = format!("ou=People,{suffix}");
    let mut ldap = ds.admin_ldap().await?;

    // Post-read on Add: the anchors and the crash-recovery evidence of the new entry.
    let dn = format!("uid=anchor,{people}");
    let result = ldap
        .with_controls(PostRead::new(vec![
            "entryUUID",
            "nsUniqueId",
            "createTimestamp",
            "creatorsName",
        ]))
        .add(
            &dn,
            attrs(&[
                ("objectClass", &["top", "inetOrgPerson"]),
                ("uid", &["anchor"]),
                ("cn", &["anchor"]),
                ("sn", &["anchor"]),
            ]),
        )
        .await?
        .success()?;
    let read = result
        .ctrls
        .iter()
        .find_map(|Control(kind, raw)| {
            matches!(kind, Some(ControlType::PostReadResp)).then(|| raw.parse::<PostReadResp>())
        })
        .ok_or("no post-read response control on Add")?;
    eprintln!("post-read on Add: {:?}", read.attrs);
    let one = |name: &str| -> Result<String, String> {
        read.attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.first().cloned())
            .ok_or_else(|| format!("post-read returned no {name}"))
    };
    let entry_uuid = one("entryUUID")?;
    let unique_id = one("nsUniqueId")?;
    let created = one("createTimestamp")?;
    let creator = one("creatorsName")?;
    // entryUUID: RFC 4122 text, lower case.
    let parsed = uuid::Uuid::parse_str(&entry_uuid)?;
    assert_eq!(parsed.hyphenated().to_string(), entry_uuid);
    // nsUniqueId: four groups of eight lower-case hex digits (not RFC 4122 form).
    let groups: Vec<&str> = unique_id.split('-').collect();
    assert_eq!(groups.len(), 4, "{unique_id}");
    assert!(groups.iter().all(|g| {
        g.len() == 8
            && g.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    }));
    assert!(uuid::Uuid::parse_str(&unique_id).is_err());
    // Generalized time, UTC; the creator's DN in lower case.
    assert!(created.len() == 15 && created.ends_with('Z'), "{created}");
    assert_eq!(creator, "cn=directory manager");

    // A search returns the same values, and both anchors find the entry (entryUUID ignoring case).
    let entry = ds
        .read_entry(
            &dn,
            &["entryUUID", "nsUniqueId", "createTimestamp", "creatorsName"],
        )
        .await?;
    assert_eq!(
        values(&entry, "entryUUID"),
        std::slice::from_ref(&entry_uuid)
    );
    assert_eq!(
        values(&entry, "nsUniqueId"),
        std::slice::from_ref(&unique_id)
    );
    assert_eq!(values(&entry, "createTimestamp"), [created]);
    assert_eq!(values(&entry, "creatorsName"), [creator]);
    let upper = format!("(entryUUID={})", entry_uuid.to_ascii_uppercase());
    assert_eq!(ds.count_entries(&suffix, &upper).await?, 1);
    assert_eq!(
        ds.count_entries(&suffix, &format!("(nsUniqueId={unique_id})"))
            .await?,
        1
    );
    // Both survive a rename.
    ldap.modifydn(&dn, "uid=anchor2", true, None)
        .await?
        .success()?;
    let renamed = format!("uid=anchor2,{people}");
    let entry = ds
        .read_entry(&renamed, &["entryUUID", "nsUniqueId"])
        .await?;
    assert_eq!(values(&entry, "entryUUID"), [entry_uuid]);
    assert_eq!(values(&entry, "nsUniqueId"), [unique_id]);

    // Result codes.
    let group = format!("cn=codes,ou=Groups,{suffix}");
    ldap.add(
        &group,
        attrs(&[
            ("objectClass", &["top", "groupOfNames"]),
            ("cn", &["codes"]),
            ("member", &[&renamed]),
        ]),
    )
    .await?
    .success()?;
    let mut codes = Vec::new();
    let rc = add_person(&mut ldap, &renamed, "anchor2").await?.rc;
    codes.push(("add of an existing DN", rc, 68));
    let upper_member = renamed.to_ascii_uppercase();
    let rc = ldap
        .modify(
            &group,
            vec![Mod::Add("member", HashSet::from([upper_member.as_str()]))],
        )
        .await?
        .rc;
    codes.push(("add of a value that exists (other case)", rc, 20));
    let missing = format!("uid=nobody,{people}");
    let rc = ldap
        .modify(
            &group,
            vec![Mod::Delete("member", HashSet::from([missing.as_str()]))],
        )
        .await?
        .rc;
    codes.push(("delete of a missing value", rc, 16));
    let rc = ldap
        .modify(&renamed, vec![Mod::Delete("mail", HashSet::new())])
        .await?
        .rc;
    codes.push(("delete of a missing attribute", rc, 16));
    let rc = ldap
        .modify(
            &renamed,
            vec![Mod::Add("displayName", HashSet::from(["a", "b"]))],
        )
        .await?
        .rc;
    codes.push(("two values on single-valued displayName", rc, 65));
    let rc = ldap
        .add(
            &format!("uid=nosn,{people}"),
            attrs(&[
                ("objectClass", &["inetOrgPerson"]),
                ("uid", &["nosn"]),
                ("cn", &["x"]),
            ]),
        )
        .await?
        .rc;
    codes.push(("add without a MUST attribute (sn)", rc, 65));
    let rc = ldap
        .modify(&renamed, vec![Mod::Add("gidNumber", HashSet::from(["5"]))])
        .await?
        .rc;
    codes.push(("an attribute no class allows", rc, 65));
    let rc = ldap
        .modify(
            &renamed,
            vec![Mod::Add("fooBarUnknown", HashSet::from(["5"]))],
        )
        .await?
        .rc;
    codes.push(("an attribute the schema does not know", rc, 65));
    let rc = ldap
        .add(
            &format!("cn=posix,ou=Groups,{suffix}"),
            attrs(&[
                ("objectClass", &["top", "groupOfNames", "posixGroup"]),
                ("cn", &["posix"]),
                ("gidNumber", &["abc"]),
            ]),
        )
        .await?
        .rc;
    codes.push(("a value against its syntax (gidNumber: abc)", rc, 21));
    let rc = add_person(&mut ldap, &format!("uid=x,ou=Nowhere,{suffix}"), "x")
        .await?
        .rc;
    codes.push(("add below a missing parent", rc, 32));
    let rc = ldap.delete(&missing).await?.rc;
    codes.push(("delete of a missing entry", rc, 32));
    let rc = ldap
        .modify(&missing, vec![Mod::Replace("sn", HashSet::from(["x"]))])
        .await?
        .rc;
    codes.push(("modify of a missing entry", rc, 32));
    let rc = ldap.delete(&people).await?.rc;
    codes.push(("delete of a non-leaf", rc, 66));
    let ghost = format!("uid=ghost,{people}");
    let rc = ldap
        .modify(
            &group,
            vec![Mod::Add("member", HashSet::from([ghost.as_str()]))],
        )
        .await?
        .rc;
    codes.push(("a member that does not exist", rc, 0));
    let rc = ldap
        .with_controls(RawControl {
            ctype: ASSERTION_OID.to_string(),
            crit: true,
            val: Some(equality_filter("sn", "anchor")),
        })
        .modify(
            &renamed,
            vec![Mod::Replace("sn", HashSet::from(["anchor"]))],
        )
        .await?
        .rc;
    codes.push(("a critical assertion control (matching)", rc, 12));

    // Password policy: a global minimum length, enforced on an ordinary account, not on the
    // Directory Manager.
    ldap.modify(
        "cn=config",
        vec![
            Mod::Replace("passwordCheckSyntax", HashSet::from(["on"])),
            Mod::Replace("passwordMinLength", HashSet::from(["12"])),
        ],
    )
    .await?
    .success()?;
    let service = format!("cn=svc,{suffix}");
    ldap.add(
        &service,
        attrs(&[
            (
                "objectClass",
                &["top", "applicationProcess", "simpleSecurityObject"],
            ),
            ("cn", &["svc"]),
            ("userPassword", &["a-long-service-password"]),
        ]),
    )
    .await?
    .success()?;
    let aci = format!(
        "(targetattr=\"*\")(version 3.0; acl \"svc writes\"; allow (all)(userdn=\"ldap:///{service}\");)"
    );
    ldap.modify(
        &suffix,
        vec![Mod::Add("aci", HashSet::from([aci.as_str()]))],
    )
    .await?
    .success()?;
    let (conn, mut svc) = LdapConnAsync::new(ds.ldap_url()).await?;
    ldap3::drive!(conn);
    svc.simple_bind(&service, "a-long-service-password")
        .await?
        .success()?;
    let result = svc
        .modify(
            &renamed,
            vec![Mod::Replace("userPassword", HashSet::from(["short"]))],
        )
        .await?;
    eprintln!(
        "short password by an ordinary account: {} {:?}",
        result.rc, result.text
    );
    codes.push((
        "a too-short password (modify, ordinary account)",
        result.rc,
        19,
    ));
    let rc = svc
        .add(
            &format!("uid=pw,{people}"),
            attrs(&[
                ("objectClass", &["inetOrgPerson"]),
                ("uid", &["pw"]),
                ("cn", &["pw"]),
                ("sn", &["pw"]),
                ("userPassword", &["short"]),
            ]),
        )
        .await?
        .rc;
    codes.push(("a too-short password (add, ordinary account)", rc, 19));
    let rc = ldap
        .modify(
            &renamed,
            vec![Mod::Replace("userPassword", HashSet::from(["short"]))],
        )
        .await?
        .rc;
    codes.push(("a too-short password (Directory Manager)", rc, 0));
    svc.unbind().await?;

    // A read-only back end: 53 for writes, reads still work, and back without a restart.
    ds.set_read_only(true).await?;
    let result = ldap
        .modify(&renamed, vec![Mod::Replace("sn", HashSet::from(["ro"]))])
        .await?;
    eprintln!(
        "write to a read-only back end: {} {:?}",
        result.rc, result.text
    );
    codes.push(("modify in a read-only back end", result.rc, 53));
    let rc = add_person(&mut ldap, &format!("uid=ro,{people}"), "ro")
        .await?
        .rc;
    codes.push(("add in a read-only back end", rc, 53));
    assert!(ds.read_entry(&renamed, &["sn"]).await?.is_some());
    ds.set_read_only(false).await?;
    let rc = ldap
        .modify(&renamed, vec![Mod::Replace("sn", HashSet::from(["rw"]))])
        .await?
        .rc;
    codes.push(("modify once writable again", rc, 0));
    ldap.unbind().await?;

    for (what, rc, _) in &codes {
        eprintln!("389 result code for {what}: {rc}");
    }
    let wrong: Vec<_> = codes.iter().filter(|(_, rc, want)| rc != want).collect();
    assert!(wrong.is_empty(), "unexpected result codes: {wrong:?}");
    Ok(())
}
