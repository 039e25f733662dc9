//! AD's disable (`userAccountControl` |= 0x2, read-modify-write) against a slapd that knows the
//! attribute: an inline schema gives it AD's OID and integer syntax.

use jim_export::config::{DeleteBehaviour, DirectoryConfig, ExportSettings};
use jim_export::directory::{Directory, DirectoryTuning};
use jim_export_testkit::support::directory::*;
use jim_export_testkit::{Slapd, SlapdOptions};

#[tokio::test]
async fn disable_sets_the_account_disable_bit_idempotently() -> TestResult {
    let slapd = Slapd::start(SlapdOptions {
        extra_global: vec![
            "attributetype ( 1.2.840.113556.1.4.8 NAME 'userAccountControl' \
             EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )"
                .into(),
            "objectclass ( 1.3.6.1.4.1.32473.1.2.1 NAME 'jimTestAccount' AUXILIARY \
             MAY userAccountControl )"
                .into(),
        ],
        ..SlapdOptions::default()
    })
    .await?;
    let config =
        DirectoryConfig::simple(slapd.ldap_url(), slapd.admin_dn(), slapd.admin_password())
            .allowing_password_without_tls();
    let directory = Directory::connect_with(&config, DirectoryTuning::default()).await?;
    let settings = ExportSettings {
        delete_behaviour: Some(DeleteBehaviour::Disable),
        ..ExportSettings::default()
    };
    let pt = person_type();
    let mut ldap = slapd.admin_ldap().await?;
    let people = format!("ou=People,{}", slapd.suffix());
    for (uid, uac) in [
        ("enabled", Some("512")),
        ("disabled", Some("514")),
        ("bare", None),
    ] {
        let mut attrs = vec![
            ("objectClass", ["inetOrgPerson", "jimTestAccount"].into()),
            ("uid", [uid].into()),
            ("cn", [uid].into()),
            ("sn", [uid].into()),
        ];
        if let Some(v) = uac {
            attrs.push(("userAccountControl", [v].into()));
        }
        let r = ldap.add(&format!("uid={uid},{people}"), attrs).await?;
        assert_eq!(r.rc, 0, "{r}");
    }
    ldap.unbind().await.ok();

    let uac = |uid: &str| {
        let dn = format!("uid={uid},{people}");
        let slapd = &slapd;
        async move {
            Ok::<_, Box<dyn std::error::Error>>(
                slapd
                    .read_entry(&dn, &["userAccountControl"])
                    .await?
                    .and_then(|e| e.attrs.get("userAccountControl").cloned())
                    .unwrap_or_default(),
            )
        }
    };
    let disable = |uid: &str| {
        let c = cso(&pt, &format!("uid={uid},{people}"), &[]);
        job(&settings, &Export::delete(), &pt, Some(&c))
    };

    let r = run_ok(&directory, disable("enabled")).await;
    assert_eq!(r.operations, 2, "a read, then a replace");
    assert_eq!(uac("enabled").await?, vec!["514".to_string()]);

    let r = run_ok(&directory, disable("disabled")).await;
    assert_eq!(r.operations, 1, "already disabled: nothing to write");
    assert_eq!(uac("disabled").await?, vec!["514".to_string()]);

    run_ok(&directory, disable("bare")).await;
    assert_eq!(
        uac("bare").await?,
        vec!["2".to_string()],
        "a missing value counts as 0"
    );

    let r = run_ok(&directory, disable("never-there")).await;
    assert_eq!(
        r.operations, 1,
        "a missing entry counts as disabled (§11.19)"
    );
    Ok(())
}
