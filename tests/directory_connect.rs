//! Connecting to the testkit's slapd: dialect and post-read from the root DSE, StartTLS and LDAPS
//! verified against the server's CA, a server certified by an unknown CA refused, the explicit opt-out,
//! SASL EXTERNAL over ldapi, a refused bind without the password in the message, and URL failover.

use jim_export::config::{Bind, Dialect, DirectoryTls, DirectoryTlsMode};
use jim_export::directory::{Directory, DirectoryError, DirectoryTuning};
use jim_export_testkit::TestCa;
use jim_export_testkit::process::free_port;
use jim_export_testkit::support::directory::*;

/// Proves a connection works by creating an entry through it.
async fn create_through(directory: &Directory, fx: &Fixture, uid: &str) -> TestResult {
    let pt = person_type();
    let e = Export::create()
        .text(person::DN, C::Add, &fx.dn(&format!("uid={uid}")))
        .text(person::UID, C::Add, uid)
        .text(person::CN, C::Add, uid)
        .text(person::SN, C::Add, uid);
    let r = run_ok(directory, job(&Default::default(), &e, &pt, None)).await;
    assert!(r.external_id.is_some());
    Ok(())
}

#[tokio::test]
async fn detects_openldap_and_post_read_from_the_root_dse() -> TestResult {
    let fx = Fixture::new("connect-dialect").await?;
    let directory = fx.connect(DirectoryTuning::default()).await?;
    let profile = directory.profile();
    assert_eq!(profile.dialect, Dialect::OpenLdap);
    assert!(profile.detected);
    assert!(profile.supports_post_read);
    assert_eq!(profile.anchor_attribute, "entryUUID");
    assert_eq!(directory.connections(), 4);
    assert_eq!(
        directory.in_flight_limit(),
        32,
        "the adaptive limit starts at 4 connections × 8 (half of slapd's 16 threads)"
    );
    assert_eq!(
        directory.max_in_flight(),
        128,
        "and may grow to four times that"
    );
    // `ExecuteAsync_ConcurrencyZero_ClampedToOneAsync`: zero is taken as one.
    let clamped = fx
        .connect(DirectoryTuning {
            connections: Some(0),
            in_flight_per_connection: Some(0),
            ..DirectoryTuning::default()
        })
        .await?;
    assert_eq!((clamped.connections(), clamped.max_in_flight()), (1, 1));
    create_through(&clamped, &fx, "through-one-slot").await?;
    let mut config = fx.config();
    config.dialect = Some(Dialect::Generic);
    let forced = Directory::connect_with(&config, DirectoryTuning::default()).await?;
    assert_eq!(forced.dialect(), Dialect::Generic);
    assert!(!forced.profile().detected);
    Ok(())
}

#[tokio::test]
async fn starttls_and_ldaps_verify_against_the_given_ca() -> TestResult {
    let fx = Fixture::new("connect-tls").await?;
    let ca = fx
        .slapd
        .ca_pem()
        .ok_or("the test slapd has a CA")?
        .to_string();
    let mut starttls = fx.config();
    starttls.tls = DirectoryTls {
        mode: Some(DirectoryTlsMode::StartTls),
        ca_pem: Some(ca.clone()),
        ..DirectoryTls::default()
    };
    let d = Directory::connect_with(&starttls, DirectoryTuning::default()).await?;
    create_through(&d, &fx, "over-starttls").await?;

    let mut ldaps = fx.config();
    ldaps.urls = vec![fx.slapd.ldaps_url().ok_or("ldaps")?.to_string()];
    let dir = std::env::temp_dir().join(format!("jim-export-ca-{}.pem", std::process::id()));
    std::fs::write(&dir, &ca)?;
    ldaps.tls = DirectoryTls {
        ca_file: Some(dir.to_string_lossy().into_owned()),
        ..DirectoryTls::default()
    };
    let d = Directory::connect_with(&ldaps, DirectoryTuning::default()).await;
    std::fs::remove_file(&dir).ok();
    create_through(&d?, &fx, "over-ldaps").await?;
    Ok(())
}

#[tokio::test]
async fn a_server_certified_by_an_unknown_ca_is_refused() -> TestResult {
    let fx = Fixture::new("connect-unknown-ca").await?;
    let other = TestCa::unrelated()?;
    for mode in [DirectoryTlsMode::StartTls, DirectoryTlsMode::Ldaps] {
        let mut config = fx.config();
        if mode == DirectoryTlsMode::Ldaps {
            config.urls = vec![fx.slapd.ldaps_url().ok_or("ldaps")?.to_string()];
        }
        config.tls = DirectoryTls {
            mode: Some(mode),
            ca_pem: Some(other.cert_pem().to_string()),
            ..DirectoryTls::default()
        };
        let err = Directory::connect_with(&config, DirectoryTuning::default())
            .await
            .expect_err("an unknown CA must be refused");
        assert!(matches!(err, DirectoryError::Tls(_)), "{mode:?}: {err:?}");
        assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    }
    // Without a CA the system roots apply, and they do not know the test CA either.
    let mut config = fx.config();
    config.urls = vec![fx.slapd.ldaps_url().ok_or("ldaps")?.to_string()];
    config.tls = DirectoryTls::default();
    let err = Directory::connect_with(&config, DirectoryTuning::default())
        .await
        .expect_err("the system roots do not know the test CA");
    assert!(matches!(err, DirectoryError::Tls(_)), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn verification_can_be_switched_off_explicitly() -> TestResult {
    let fx = Fixture::new("connect-no-verify").await?;
    let mut config = fx.config();
    config.urls = vec![fx.slapd.ldaps_url().ok_or("ldaps")?.to_string()];
    config.tls = DirectoryTls {
        verify: false,
        ..DirectoryTls::default()
    };
    let d = Directory::connect_with(&config, DirectoryTuning::default()).await?;
    create_through(&d, &fx, "unverified").await?;
    Ok(())
}

#[tokio::test]
async fn sasl_external_over_ldapi() -> TestResult {
    let fx = Fixture::new("connect-ldapi").await?;
    let Some(url) = fx.slapd.ldapi_url() else {
        eprintln!("skipped: the test directory offers no ldapi:// socket");
        return Ok(());
    };
    let mut config = fx.config();
    config.urls = vec![url.to_string()];
    config.bind = Bind::SaslExternal;
    let d = Directory::connect_with(&config, DirectoryTuning::default()).await?;
    create_through(&d, &fx, "over-ldapi").await?;
    Ok(())
}

#[tokio::test]
async fn a_refused_bind_stops_without_showing_the_password() -> TestResult {
    let fx = Fixture::new("connect-bad-bind").await?;
    let mut config = fx.config();
    config.bind = Bind::Simple {
        dn: fx.slapd.admin_dn().to_string(),
        password: "wrong-password-xyz".into(),
    };
    let err = Directory::connect_with(&config, DirectoryTuning::default())
        .await
        .expect_err("a wrong password is refused");
    let shown = format!("{err} {err:?}");
    assert!(matches!(err, DirectoryError::Bind(_)), "{shown}");
    assert!(shown.contains("invalidCredentials (49)"), "{shown}");
    assert!(shown.contains(fx.slapd.admin_dn()), "{shown}");
    assert!(!shown.contains("wrong-password-xyz"), "{shown}");
    assert!(!format!("{config:?}").contains("wrong-password-xyz"));
    Ok(())
}

#[tokio::test]
async fn the_first_url_that_answers_wins() -> TestResult {
    let fx = Fixture::new("connect-failover").await?;
    let dead = format!("ldap://127.0.0.1:{}", free_port()?);
    let mut config = fx.config();
    config.urls = vec![dead.clone(), fx.slapd.ldap_url().to_string()];
    config.connect_timeout_ms = 2_000;
    let d = Directory::connect_with(&config, DirectoryTuning::default()).await?;
    create_through(&d, &fx, "after-failover").await?;

    config.urls = vec![dead];
    let err = Directory::connect_with(&config, DirectoryTuning::default())
        .await
        .expect_err("nobody answers");
    assert!(matches!(err, DirectoryError::Connect(_)), "{err:?}");
    Ok(())
}

/// The pool's other connections are opened right after the first, in the background (over LDAPS
/// here: the engine opens the TCP connection itself and hands it to ldap3, which puts TLS on it),
/// so the first exports do not each wait for a bind; "Who am I?", asked beside the root DSE's read,
/// still names the bound DN.
#[tokio::test]
async fn the_pool_opens_its_connections_ahead_of_use() -> TestResult {
    let fx = Fixture::new("connect-warm").await?;
    let mut ldaps = fx.config();
    ldaps.urls = vec![fx.slapd.ldaps_url().ok_or("ldaps")?.to_string()];
    ldaps.tls = DirectoryTls {
        mode: Some(DirectoryTlsMode::Ldaps),
        ca_pem: Some(
            fx.slapd
                .ca_pem()
                .ok_or("the test slapd has a CA")?
                .to_string(),
        ),
        ..DirectoryTls::default()
    };
    let d = Directory::connect_with(&ldaps, DirectoryTuning::default()).await?;
    assert_eq!(d.identity(), Some(fx.slapd.admin_dn()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while (d.stats().connects as usize) < d.connections() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {} connections open without any operation",
            d.stats().connects,
            d.connections()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(d.stats().operations(), 0);
    create_through(&d, &fx, "after-warm-up").await?;
    assert_eq!(
        d.stats().connects as usize,
        d.connections(),
        "no connection opened twice"
    );
    d.close().await;
    Ok(())
}
