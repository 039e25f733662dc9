//! The directory layer against a real Samba AD domain controller (the testkit's `SambaAd`): TLS
//! verified against our CA (LDAPS and StartTLS), simple bind by UPN and NTLM bind, the refusal of a
//! simple bind without TLS, dialect detection and its concurrency defaults, `objectGUID` read back as
//! 16 raw bytes in Microsoft byte order (also when those bytes are valid UTF-8, JIM's §11.9), Samba's
//! delete of a missing object, and disable by `userAccountControl` read-modify-write.
//!
//! Every test skips (with a printed reason) outside CI when Samba cannot run here.

use jim_export::config::{
    Bind, Concurrency, DeleteBehaviour, Dialect, DirectoryConfig, DirectoryTlsMode, ExportSettings,
    Secret,
};
use jim_export::directory::{
    Directory, DirectoryError, DirectoryTuning, ExportJob, ExportResult, concurrency_defaults,
};
use jim_export::model::{
    AttributeDataType, AttributeDefinition, AttributePlurality, AttributeWritability, ObjectType,
};
use jim_export::plan::{PlanInput, Planner};
use jim_export_testkit::TestCa;
use jim_export_testkit::samba::SambaAd;
use jim_export_testkit::support::directory::{C, Export, TestResult, cso};
use ldap3::Scope;
use uuid::Uuid;

mod user {
    pub const DN: i32 = 1;
    pub const SAM: i32 = 2;
    pub const DISPLAY_NAME: i32 = 3;
    pub const UAC: i32 = 4;
    pub const OBJECT_GUID: i32 = 5;
}

fn def(id: i32, name: &str, data_type: AttributeDataType) -> AttributeDefinition {
    AttributeDefinition {
        id,
        name: name.into(),
        data_type,
        plurality: AttributePlurality::SingleValued,
        object_type_id: 1,
        is_external_id: false,
        is_secondary_external_id: false,
        writability: AttributeWritability::Writable,
    }
}

/// AD's `user`, anchored by `objectGUID`, with the DN as secondary anchor (Scenario 8's shape).
fn user_type() -> ObjectType {
    use user::*;
    let mut dn = def(DN, "distinguishedName", AttributeDataType::Text);
    dn.is_secondary_external_id = true;
    let mut anchor = def(OBJECT_GUID, "objectGUID", AttributeDataType::Guid);
    anchor.is_external_id = true;
    ObjectType {
        id: 1,
        name: "user".into(),
        attributes: vec![
            dn,
            def(SAM, "sAMAccountName", AttributeDataType::Text),
            def(DISPLAY_NAME, "displayName", AttributeDataType::Text),
            def(UAC, "userAccountControl", AttributeDataType::Number),
            anchor,
        ],
    }
}

fn plan(
    settings: &ExportSettings,
    export: &Export,
    cso: Option<&jim_export::model::ConnectedSystemObject>,
) -> ExportJob {
    let ut = user_type();
    let planner = Planner::new(settings, Dialect::SambaAd);
    ExportJob::new(
        export.0.id,
        planner.plan(&PlanInput::new(&export.0, &ut, cso)),
    )
}

async fn run_ok(directory: &Directory, job: ExportJob) -> ExportResult {
    let r = directory.execute(job).await;
    assert!(r.is_success(), "export failed: {:?}", r.status);
    r
}

/// A fresh `OU=<name>` under the domain (an earlier run's removed first).
async fn fresh_ou(dc: &SambaAd, name: &str) -> Result<String, Box<dyn std::error::Error>> {
    let ou = format!("OU={name},{}", dc.base_dn());
    dc.delete_tree(&ou).await?;
    dc.ensure_ou(&ou).await?;
    Ok(ou)
}

fn create_user(dn: &str, sam: &str) -> Export {
    Export::create()
        .text(user::DN, C::Add, dn)
        .text(user::SAM, C::Add, sam)
        .text(user::DISPLAY_NAME, C::Add, &format!("{sam} display"))
}

fn with_ca(mut config: DirectoryConfig, ca_pem: &str) -> DirectoryConfig {
    config.tls.ca_pem = Some(ca_pem.to_string());
    config
}

#[tokio::test]
async fn ldaps_and_starttls_are_verified_against_our_ca() -> TestResult {
    let Some(dc) = SambaAd::shared().await else {
        return Ok(());
    };
    for config in [dc.directory_config(), dc.starttls_directory_config()] {
        let mode = config.effective_tls_mode();
        let directory = Directory::connect_with(&config, DirectoryTuning::default()).await?;
        assert_eq!(directory.dialect(), Dialect::SambaAd, "{mode:?}");

        let other = TestCa::unrelated()?;
        let wrong = with_ca(config.clone(), other.cert_pem());
        match Directory::connect_with(&wrong, DirectoryTuning::default()).await {
            Err(DirectoryError::Tls(message)) => {
                assert!(message.contains("127.0.0.1"), "{mode:?}: {message}")
            }
            other => panic!("{mode:?} with an unrelated CA: expected a TLS error, got {other:?}"),
        }
    }
    assert_eq!(
        dc.directory_config().effective_tls_mode(),
        DirectoryTlsMode::Ldaps
    );
    Ok(())
}

#[tokio::test]
async fn simple_bind_without_tls_is_refused_with_a_clear_error() -> TestResult {
    let Some(dc) = SambaAd::shared().await else {
        return Ok(());
    };
    // The engine refuses to send the password in clear unless told to.
    let plain = DirectoryConfig::simple(dc.ldap_url(), dc.admin_upn(), dc.admin_password());
    match Directory::connect_with(&plain, DirectoryTuning::default()).await {
        Err(DirectoryError::Tls(message)) => {
            assert!(
                message.contains("in clear") && message.contains("allow_password_without_tls"),
                "{message}"
            );
            assert!(!message.contains(dc.admin_password()), "{message}");
        }
        other => panic!("expected the engine's refusal, got {other:?}"),
    }
    // Told to, it sends it: the DC refuses a simple bind without TLS itself.
    let plain = plain.allowing_password_without_tls();
    match Directory::connect_with(&plain, DirectoryTuning::default()).await {
        Err(DirectoryError::Bind(message)) => {
            assert!(
                message.contains("strongerAuthRequired") && message.contains("(8)"),
                "{message}"
            );
            assert!(!message.contains(dc.admin_password()), "{message}");
        }
        other => panic!("expected a bind error, got {other:?}"),
    }
    // A wrong password over TLS is a bind error too, not a retry.
    let mut wrong = dc.directory_config();
    wrong.bind = Bind::Simple {
        dn: dc.admin_upn().into(),
        password: Secret::new("not-the-password"),
    };
    match Directory::connect_with(&wrong, DirectoryTuning::default()).await {
        Err(DirectoryError::Bind(message)) => assert!(message.contains("(49)"), "{message}"),
        other => panic!("expected invalidCredentials, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn ntlm_bind_in_each_name_form() -> TestResult {
    let Some(dc) = SambaAd::shared().await else {
        return Ok(());
    };
    let ou = fresh_ou(dc, "jim-ntlm").await?;
    let upn_form = format!("{}@{}", dc.ntlm_user(), dc.dns_domain());
    let down_level = format!("{}\\{}", dc.ntlm_domain(), dc.ntlm_user());
    let forms = [
        (
            dc.ntlm_user().to_string(),
            Some(dc.ntlm_domain().to_string()),
        ),
        (down_level, None),
        (upn_form, None),
    ];
    for (i, (username, domain)) in forms.into_iter().enumerate() {
        for base in [dc.directory_config(), dc.starttls_directory_config()] {
            let mut config = base;
            config.bind = Bind::Ntlm {
                username: username.clone(),
                domain: domain.clone(),
                password: Secret::new(dc.admin_password()),
            };
            let mode = config.effective_tls_mode();
            let directory = Directory::connect_with(&config, DirectoryTuning::default())
                .await
                .map_err(|e| format!("NTLM as {username:?}/{domain:?} over {mode:?}: {e}"))?;
            assert_eq!(directory.dialect(), Dialect::SambaAd);
            // The bound identity may write: an Add proves more than an anonymous-looking bind.
            let sam = format!(
                "ntlm{i}{}",
                if mode == DirectoryTlsMode::Ldaps {
                    "s"
                } else {
                    "t"
                }
            );
            let dn = format!("CN={sam},{ou}");
            let r = run_ok(
                &directory,
                plan(&ExportSettings::default(), &create_user(&dn, &sam), None),
            )
            .await;
            assert!(r.entry_created);
        }
    }
    let mut wrong = dc.ntlm_directory_config();
    wrong.bind = Bind::Ntlm {
        username: dc.ntlm_user().into(),
        domain: Some(dc.ntlm_domain().into()),
        password: Secret::new("not-the-password"),
    };
    match Directory::connect_with(&wrong, DirectoryTuning::default()).await {
        Err(DirectoryError::Bind(message)) => {
            assert!(
                message.contains("NTLM") && message.contains("(49)"),
                "{message}"
            );
            assert!(!message.contains("not-the-password"));
        }
        other => panic!("expected invalidCredentials, got {other:?}"),
    }
    // A name the NTLM implementation cannot parse (it would panic inside ldap3) is refused first.
    let mut unparsable = dc.ntlm_directory_config();
    unparsable.bind = Bind::Ntlm {
        username: "GENTIAN\\svc\\jim".into(),
        domain: None,
        password: Secret::new(dc.admin_password()),
    };
    match Directory::connect_with(&unparsable, DirectoryTuning::default()).await {
        Err(DirectoryError::Bind(message)) => {
            assert!(message.contains("NTLM user name"), "{message}")
        }
        other => panic!("expected a bind error, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn dialect_is_detected_and_sets_the_concurrency_defaults() -> TestResult {
    let Some(dc) = SambaAd::shared().await else {
        return Ok(());
    };
    let directory =
        Directory::connect_with(&dc.directory_config(), DirectoryTuning::default()).await?;
    let profile = directory.profile();
    assert_eq!(profile.dialect, Dialect::SambaAd);
    assert!(profile.detected);
    assert!(
        profile
            .vendor
            .as_deref()
            .is_some_and(|v| v.contains("Samba")),
        "{:?}",
        profile.vendor
    );
    assert!(
        !profile.supports_post_read,
        "Samba has no RFC 4527 post-read"
    );
    assert_eq!(profile.anchor_attribute, "objectGUID");
    // JIM: Samba stays at 4 operations, on one connection.
    assert_eq!(concurrency_defaults(Dialect::SambaAd), (1, 4));
    assert_eq!(
        (profile.connections, profile.in_flight_per_connection),
        concurrency_defaults(Dialect::SambaAd)
    );
    // A fixed limit is exactly the dialect's default: 1 connection × 4 operations.
    let fixed = DirectoryTuning {
        concurrency: Concurrency::Fixed,
        ..DirectoryTuning::default()
    };
    let directory = Directory::connect_with(&dc.directory_config(), fixed).await?;
    assert_eq!(directory.max_in_flight(), 4);
    // A configured dialect wins over detection.
    let mut configured = dc.directory_config();
    configured.dialect = Some(Dialect::ActiveDirectory);
    let directory = Directory::connect_with(&configured, DirectoryTuning::default()).await?;
    assert_eq!(directory.dialect(), Dialect::ActiveDirectory);
    assert!(!directory.profile().detected);
    Ok(())
}

#[tokio::test]
async fn object_guid_comes_back_as_16_bytes_in_microsoft_order() -> TestResult {
    let Some(dc) = SambaAd::shared().await else {
        return Ok(());
    };
    let ou = fresh_ou(dc, "jim-guid").await?;
    let directory =
        Directory::connect_with(&dc.directory_config(), DirectoryTuning::default()).await?;
    let mut ldap = dc.admin_ldap().await?;
    for i in 0..8 {
        let sam = format!("guid{i}");
        let dn = format!("CN={sam},{ou}");
        let r = run_ok(
            &directory,
            plan(&ExportSettings::default(), &create_user(&dn, &sam), None),
        )
        .await;
        assert!(r.entry_created && !r.adopted);
        assert_eq!(r.secondary_external_id.as_deref(), Some(dn.as_str()));
        let external_id = r
            .external_id
            .expect("the anchor is read back after the Add");

        // The raw bytes: 16 of them, the first three fields little-endian.
        let entry = dc.read_entry(&dn, &["objectGUID"]).await?.expect("entry");
        let bytes = entry.values("objectGUID")[0].clone();
        assert_eq!(bytes.len(), 16);
        let mut ms = [0u8; 16];
        ms.copy_from_slice(&bytes);
        let expected = Uuid::from_bytes_le(ms);
        assert_eq!(external_id, expected.hyphenated().to_string());
        assert_eq!(dc.object_guid(&dn).await?, Some(expected));

        // The server agrees on the string form: AD resolves `<GUID=...>` to the entry.
        let found = ldap
            .search(
                &format!("<GUID={external_id}>"),
                Scope::Base,
                "(objectClass=*)",
                vec!["1.1"],
            )
            .await?
            .success()?
            .0;
        assert_eq!(found.len(), 1, "<GUID={external_id}>");
        let found = ldap3::SearchEntry::construct(found.into_iter().next().expect("one"));
        assert!(found.dn.eq_ignore_ascii_case(&dn), "{} vs {dn}", found.dn);
    }
    ldap.unbind().await.ok();
    Ok(())
}

#[tokio::test]
async fn an_object_guid_whose_bytes_are_valid_utf8_is_still_read_as_bytes() -> TestResult {
    let Some(dc) = SambaAd::shared().await else {
        return Ok(());
    };
    let ou = fresh_ou(dc, "jim-guid-utf8").await?;
    let dn = format!("CN=utf8guid,{ou}");
    // JIM reads objectGUID through an indexer that turns UTF-8-valid bytes into a string and loses
    // the anchor (`ldap-export.md` §11.9). These 16 bytes are plain ASCII.
    let bytes = *b"ABCDEFGHIJKLMNOP";
    dc.add_user_with_object_guid(&dn, "utf8guid", bytes).await?;
    let expected = Uuid::from_bytes_le(bytes);
    assert_eq!(
        expected.hyphenated().to_string(),
        "44434241-4645-4847-494a-4b4c4d4e4f50"
    );

    // The entry holds what the export sends, as one its earlier attempt created would.
    let mut ldap = dc.admin_ldap().await?;
    ldap.modify(
        &dn,
        vec![ldap3::Mod::Replace(
            "displayName",
            ["utf8guid display"].into(),
        )],
    )
    .await?
    .success()?;
    let _ = ldap.unbind().await;

    // A re-attempted Create finds the entry there and adopts it, reading the anchor back.
    let directory =
        Directory::connect_with(&dc.directory_config(), DirectoryTuning::default()).await?;
    let job = plan(
        &ExportSettings::default(),
        &create_user(&dn, "utf8guid"),
        None,
    )
    .reattempt(true);
    let r = run_ok(&directory, job).await;
    assert!(r.adopted, "{r:?}");
    assert_eq!(
        r.external_id.as_deref(),
        Some("44434241-4645-4847-494a-4b4c4d4e4f50")
    );
    assert_eq!(dc.object_guid(&dn).await?, Some(expected));
    Ok(())
}

#[tokio::test]
async fn deleting_a_missing_object_counts_as_success() -> TestResult {
    let Some(dc) = SambaAd::shared().await else {
        return Ok(());
    };
    let ou = fresh_ou(dc, "jim-delete").await?;
    let directory =
        Directory::connect_with(&dc.directory_config(), DirectoryTuning::default()).await?;
    let ut = user_type();
    // Gone from an existing OU, and gone with its OU.
    for dn in [
        format!("CN=never-there,{ou}"),
        format!("CN=never-there,OU=no-such-ou,{ou}"),
    ] {
        let mut ldap = dc.admin_ldap().await?;
        let raw = ldap.delete(&dn).await?;
        ldap.unbind().await.ok();
        assert!(
            raw.rc == 32 || (raw.rc == 80 && raw.text.contains("00002030")),
            "Samba's answer to deleting a missing {dn}: {raw:?}"
        );
        let c = cso(&ut, &dn, &[]);
        let r = run_ok(
            &directory,
            plan(&ExportSettings::default(), &Export::delete(), Some(&c)),
        )
        .await;
        assert_eq!(r.operations, 1);
    }
    // And a present one goes.
    let dn = format!("CN=present,{ou}");
    run_ok(
        &directory,
        plan(
            &ExportSettings::default(),
            &create_user(&dn, "present"),
            None,
        ),
    )
    .await;
    let c = cso(&ut, &dn, &[]);
    run_ok(
        &directory,
        plan(&ExportSettings::default(), &Export::delete(), Some(&c)),
    )
    .await;
    assert!(dc.read_entry(&dn, &["1.1"]).await?.is_none());
    Ok(())
}

#[tokio::test]
async fn disable_sets_the_account_disable_bit_by_read_modify_write() -> TestResult {
    let Some(dc) = SambaAd::shared().await else {
        return Ok(());
    };
    let ou = fresh_ou(dc, "jim-disable").await?;
    let directory =
        Directory::connect_with(&dc.directory_config(), DirectoryTuning::default()).await?;
    let settings = ExportSettings {
        delete_behaviour: Some(DeleteBehaviour::Disable),
        ..ExportSettings::default()
    };
    // 544 = NORMAL_ACCOUNT | PASSWD_NOTREQD: enabled without a password (AD refuses 512 without one).
    let dn = format!("CN=enabled,{ou}");
    let create = create_user(&dn, "enabled").text(user::UAC, C::Add, "544");
    run_ok(&directory, plan(&settings, &create, None)).await;
    let uac = || async {
        let entry = dc
            .read_entry(&dn, &["userAccountControl"])
            .await?
            .expect("entry");
        Ok::<_, Box<dyn std::error::Error>>(
            entry.first_text("userAccountControl").map(str::to_string),
        )
    };
    assert_eq!(uac().await?.as_deref(), Some("544"));

    let c = cso(&user_type(), &dn, &[]);
    let r = run_ok(&directory, plan(&settings, &Export::delete(), Some(&c))).await;
    assert_eq!(r.operations, 2, "a read, then a replace");
    assert_eq!(
        uac().await?.as_deref(),
        Some("546"),
        "0x2 added, other bits kept"
    );

    let r = run_ok(&directory, plan(&settings, &Export::delete(), Some(&c))).await;
    assert_eq!(r.operations, 1, "already disabled: nothing to write");
    assert_eq!(uac().await?.as_deref(), Some("546"));
    Ok(())
}
