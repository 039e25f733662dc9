//! A throwaway OpenLDAP `slapd` in a temporary folder, shaped like JIM's own OpenLDAP test directory
//! (`../shared/jim/tests-and-scale.md` §3):
//!
//! - back-mdb databases with a 32 GiB map (sparse, enough for a million entries), by default one
//!   suffix `dc=example,dc=org`, or several suffixes in one server ([`SlapdOptions::suffixes`]);
//! - root DN `cn=admin,<suffix>` per suffix, with [`SlapdOptions::admin_password`];
//! - base entries: the suffix (`dcObject` + `organization`), `ou=People` and `ou=Groups`;
//! - the core, cosine, inetorgperson and nis schemas; **no memberof and no refint overlay**, so every
//!   membership change has to come from the engine; `sortvals member` so big groups stay fast;
//! - indexes `objectClass`, `uid`, `cn`, `entryUUID` and `member` (equality); `sizelimit unlimited`;
//! - writes without fsync (`dbnosync`) unless [`SlapdOptions::durable`];
//! - `ldap://` with StartTLS and `ldaps://` on free loopback ports, certified by a generated
//!   [`TestCa`]; an `ldapi://` socket in the folder where SASL EXTERNAL maps this process's user to
//!   the first suffix's root DN (which may also manage the other suffixes);
//! - the RFC 4527 post-read control (OID [`POST_READ_OID`]) advertised in the root DSE.
//!
//! The server runs as a daemon and is stopped by PID when the [`Slapd`] is dropped; a watchdog stops
//! it (and removes its folder) if the test process dies first. [`Slapd::restart`] brings it back on the
//! same ports with the same data, for "the directory went away mid-run" tests.
//!
//! When `slapd` or `ldapadd` is missing and the tests run as root, they are installed with apt
//! (`slapd ldap-utils`); otherwise starting fails with [`TestkitError::Missing`].
//!
//! ## Using an existing server
//!
//! Set these to point the harness at a running directory instead of starting one:
//!
//! | variable | meaning |
//! |---|---|
//! | `JIM_TEST_LDAP_URL` | the server's URL (`ldap://…` or `ldaps://…`); setting it switches the harness over |
//! | `JIM_TEST_LDAP_BIND_DN` | a DN allowed to write the suffixes (default `cn=admin,<first suffix>`) |
//! | `JIM_TEST_LDAP_PASSWORD` | its password (required) |
//! | `JIM_TEST_LDAP_SUFFIX` | the suffix(es) tests may use, several separated by `;` (default: the options' suffixes) |
//! | `JIM_TEST_LDAP_CA_FILE` | optional: a PEM file with the CA that certifies the server, for TLS |
//!
//! The harness then only adds missing base entries (`ou=People`, `ou=Groups`); it cannot stop, kill or
//! restart that server, and it offers no `ldaps://` (unless the URL is one) or `ldapi://` URL.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use tokio::sync::OnceCell;

use crate::error::{IoContext, Result, TestkitError};
use crate::process::{ServerProcess, apt_install, find_program, free_port, is_root, pid_alive};
use crate::tls::{TestCa, client_config};

/// The RFC 4527 post-read control's OID.
pub const POST_READ_OID: &str = "1.3.6.1.1.13.2";

/// The default suffix.
pub const DEFAULT_SUFFIX: &str = "dc=example,dc=org";

/// The default root DN password.
pub const DEFAULT_ADMIN_PASSWORD: &str = "secret";

/// back-mdb's map size: 32 GiB, as in JIM's test directory. The map is sparse, so this costs nothing
/// until the data is there, and holds well over a million entries.
pub const DEFAULT_MAX_SIZE: u64 = 32 * 1024 * 1024 * 1024;

const SCHEMAS: [&str; 4] = ["core", "cosine", "inetorgperson", "nis"];
const START_ATTEMPTS: usize = 5;
const STOP_GRACE: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to start a server.
#[derive(Clone)]
pub struct SlapdOptions {
    /// The suffixes, one mdb database each; the first is the main one (its root DN is what `ldapi://`
    /// SASL EXTERNAL maps to, and it may manage the others too). Default `[dc=example,dc=org]`.
    pub suffixes: Vec<String>,
    /// The password of every suffix's root DN `cn=admin,<suffix>`.
    pub admin_password: String,
    /// Durable writes (fsync per transaction). Off by default: with `dbnosync` tests run ~7× faster;
    /// benchmarks comparing with customer-like figures turn it on.
    pub durable: bool,
    /// slapd's worker threads (`threads`); `None` keeps slapd's default (16).
    pub threads: Option<u32>,
    /// back-mdb `maxsize` in bytes (default [`DEFAULT_MAX_SIZE`]).
    pub max_size: u64,
    /// Require the RFC 4527 post-read control to be advertised in the root DSE (start fails
    /// otherwise). slapd always offers it; `false` only skips the check.
    pub post_read: bool,
    /// Extra DNS names or IP addresses for the server certificate (it always has `localhost` and
    /// `127.0.0.1`).
    pub tls_names: Vec<String>,
    /// Extra lines for the global section of `slapd.conf` (e.g. `moduleload memberof`).
    pub extra_global: Vec<String>,
    /// Extra lines appended to every database section (e.g. `overlay memberof` for the few tests that
    /// want the overlay on purpose).
    pub extra_database: Vec<String>,
}

impl Default for SlapdOptions {
    fn default() -> Self {
        Self {
            suffixes: vec![DEFAULT_SUFFIX.to_string()],
            admin_password: DEFAULT_ADMIN_PASSWORD.to_string(),
            durable: false,
            threads: None,
            max_size: DEFAULT_MAX_SIZE,
            post_read: true,
            tls_names: Vec::new(),
            extra_global: Vec::new(),
            extra_database: Vec::new(),
        }
    }
}

impl fmt::Debug for SlapdOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlapdOptions")
            .field("suffixes", &self.suffixes)
            .field("admin_password", &"***")
            .field("durable", &self.durable)
            .field("threads", &self.threads)
            .field("max_size", &self.max_size)
            .field("post_read", &self.post_read)
            .field("tls_names", &self.tls_names)
            .field("extra_global", &self.extra_global)
            .field("extra_database", &self.extra_database)
            .finish()
    }
}

/// The parts of a server this process started.
struct Local {
    /// `None` once stopped. Declared before `dir` so the server stops before its folder goes.
    process: Option<ServerProcess>,
    slapd: PathBuf,
    config: PathBuf,
    pid_file: PathBuf,
    listeners: Listeners,
    dir: tempfile::TempDir,
}

impl Drop for Local {
    fn drop(&mut self) {
        // Wait for every thread, not just the leader, before the folder is removed: a stopping slapd
        // still unlinks its pid file and socket, which would race the removal.
        if let Some(mut process) = self.process.take() {
            process.stop(STOP_GRACE);
            wait_gone(process.pid(), STOP_GRACE);
        }
    }
}

/// A running directory: a throwaway slapd this process started (stopped by PID when dropped), or an
/// existing server named by `JIM_TEST_LDAP_URL` (see the module docs).
pub struct Slapd {
    ldap_url: String,
    ldaps_url: Option<String>,
    ldapi_url: Option<String>,
    suffixes: Vec<String>,
    admin_dns: Vec<String>,
    admin_password: String,
    ca_pem: Option<String>,
    local: Option<Local>,
}

impl fmt::Debug for Slapd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slapd")
            .field("ldap_url", &self.ldap_url)
            .field("ldaps_url", &self.ldaps_url)
            .field("ldapi_url", &self.ldapi_url)
            .field("suffixes", &self.suffixes)
            .field("admin_dns", &self.admin_dns)
            .field("admin_password", &"***")
            .field("dir", &self.dir())
            .field("pid", &self.pid())
            .finish_non_exhaustive()
    }
}

static SHARED: OnceCell<Slapd> = OnceCell::const_new();

fn server_error(message: impl Into<String>) -> TestkitError {
    TestkitError::Server {
        server: "slapd",
        message: message.into(),
    }
}

fn ldap_error(context: impl Into<String>) -> impl FnOnce(ldap3::LdapError) -> TestkitError {
    let context = context.into();
    move |source| TestkitError::Ldap {
        context,
        source: Box::new(source),
    }
}

impl Slapd {
    /// The server shared by every test of this test binary, started with default options on first use
    /// (or the server named by `JIM_TEST_LDAP_URL`). A watchdog stops it when the test process exits.
    pub async fn shared() -> Result<&'static Slapd> {
        SHARED
            .get_or_try_init(|| async { Slapd::start(SlapdOptions::default()).await })
            .await
    }

    /// Starts a new throwaway server (or connects to `JIM_TEST_LDAP_URL` when it is set) and makes
    /// sure the base entries exist.
    pub async fn start(options: SlapdOptions) -> Result<Slapd> {
        validate(&options)?;
        if let Ok(url) = std::env::var("JIM_TEST_LDAP_URL") {
            return Self::external(url, &options).await;
        }
        let programs = ensure_installed().await?;
        let slapd = Self::start_local(programs, &options).await?;
        slapd.seed_base_entries().await?;
        if options.post_read {
            slapd.check_post_read().await?;
        }
        Ok(slapd)
    }

    async fn external(url: String, options: &SlapdOptions) -> Result<Slapd> {
        let password = std::env::var("JIM_TEST_LDAP_PASSWORD").map_err(|_| {
            server_error("JIM_TEST_LDAP_URL is set but JIM_TEST_LDAP_PASSWORD is not")
        })?;
        let suffixes: Vec<String> = match std::env::var("JIM_TEST_LDAP_SUFFIX") {
            Ok(s) => s
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            Err(_) => options.suffixes.clone(),
        };
        let first = suffixes
            .first()
            .ok_or_else(|| server_error("JIM_TEST_LDAP_SUFFIX names no suffix"))?;
        let bind_dn =
            std::env::var("JIM_TEST_LDAP_BIND_DN").unwrap_or_else(|_| format!("cn=admin,{first}"));
        let ca_pem = match std::env::var_os("JIM_TEST_LDAP_CA_FILE") {
            Some(path) => Some(
                std::fs::read_to_string(&path)
                    .io_context(|| format!("reading JIM_TEST_LDAP_CA_FILE {}", path.display()))?,
            ),
            None => None,
        };
        let ldaps_url = url.starts_with("ldaps://").then(|| url.clone());
        let slapd = Slapd {
            ldap_url: url,
            ldaps_url,
            ldapi_url: None,
            admin_dns: vec![bind_dn; suffixes.len()],
            suffixes,
            admin_password: password,
            ca_pem,
            local: None,
        };
        slapd.seed_base_entries().await?;
        if options.post_read {
            slapd.check_post_read().await?;
        }
        Ok(slapd)
    }

    async fn start_local(programs: Programs, options: &SlapdOptions) -> Result<Slapd> {
        let dir = tempfile::Builder::new()
            .prefix("jim-slapd-")
            .tempdir()
            .io_context(|| "creating a temp dir for slapd".into())?;
        let root = dir.path().to_path_buf();
        let socket = root.join("ldapi");
        // sun_path holds 108 bytes including the terminating NUL.
        if socket.as_os_str().len() > 107 {
            return Err(server_error(format!(
                "the ldapi socket path {} is too long for a Unix socket; set TMPDIR to a shorter folder",
                socket.display()
            )));
        }
        let ca = TestCa::new("jim-export slapd test CA")?;
        let names: Vec<&str> = options.tls_names.iter().map(String::as_str).collect();
        let tls = ca.server_cert(&names)?.write_to(&root.join("tls"))?;
        let mut db_dirs = Vec::new();
        for i in 0..options.suffixes.len() {
            let db = root.join(format!("db{i}"));
            std::fs::create_dir_all(&db).io_context(|| format!("creating {}", db.display()))?;
            db_dirs.push(db);
        }
        let pid_file = root.join("slapd.pid");
        let config_text = render_config(&ConfigInput {
            options,
            pid_file: &pid_file,
            args_file: &root.join("slapd.args"),
            tls: &tls,
            db_dirs: &db_dirs,
            uid: current_uid(),
            gid: current_gid(),
        });
        let config = root.join("slapd.conf");
        std::fs::write(&config, config_text).io_context(|| "writing slapd.conf".into())?;

        let ldapi_url = format!("ldapi://{}", percent_encode(&socket.display().to_string()));
        let mut attempt_errors = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let (port, tls_port) = two_free_ports()?;
            let ldap_url = format!("ldap://127.0.0.1:{port}");
            let ldaps_url = format!("ldaps://127.0.0.1:{tls_port}");
            let listeners = Listeners {
                arg: format!("{ldap_url}/ {ldaps_url}/ {ldapi_url}"),
                ports: [port, tls_port],
                socket: socket.clone(),
            };
            match launch(&programs.slapd, &config, &listeners, &pid_file).await? {
                Launch::Started(pid) => {
                    tracing::debug!(pid, %ldap_url, dir = %root.display(), "slapd started");
                    let process = ServerProcess::adopt("slapd", pid, &root);
                    return Ok(Slapd {
                        ldap_url,
                        ldaps_url: Some(ldaps_url),
                        ldapi_url: Some(ldapi_url),
                        admin_dns: options
                            .suffixes
                            .iter()
                            .map(|s| format!("cn=admin,{s}"))
                            .collect(),
                        suffixes: options.suffixes.clone(),
                        admin_password: options.admin_password.clone(),
                        ca_pem: Some(ca.cert_pem().to_string()),
                        local: Some(Local {
                            process: Some(process),
                            slapd: programs.slapd,
                            config,
                            pid_file,
                            listeners,
                            dir,
                        }),
                    });
                }
                Launch::Failed(message) => {
                    // A broken configuration will not get better on other ports.
                    config_check(&programs.slaptest, &config).await?;
                    attempt_errors.push(message);
                }
            }
        }
        Err(server_error(format!(
            "did not start after {START_ATTEMPTS} attempts on fresh ports: {}",
            attempt_errors.join("; ")
        )))
    }

    /// Adds the suffix entries, `ou=People` and `ou=Groups` where they are missing.
    async fn seed_base_entries(&self) -> Result<()> {
        for (suffix, admin) in self.suffixes.iter().zip(&self.admin_dns) {
            let mut ldap = self.bind(admin).await?;
            for (dn, attrs) in base_entries(suffix)? {
                let attrs: Vec<(String, HashSet<String>)> = attrs
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.into_iter().collect()))
                    .collect();
                let res = ldap
                    .add(&dn, attrs)
                    .await
                    .map_err(ldap_error(format!("adding {dn}")))?;
                // 68: entryAlreadyExists (an existing server, or a restart).
                if res.rc != 68 {
                    res.success().map_err(ldap_error(format!("adding {dn}")))?;
                }
            }
            ldap.unbind().await.ok();
        }
        Ok(())
    }

    async fn check_post_read(&self) -> Result<()> {
        let mut ldap = self.admin_ldap().await?;
        let root = read_entry(&mut ldap, "", &["supportedControl"]).await?;
        ldap.unbind().await.ok();
        let advertised = root
            .as_ref()
            .and_then(|e| e.attrs.get("supportedControl"))
            .is_some_and(|v| v.iter().any(|o| o == POST_READ_OID));
        if advertised {
            Ok(())
        } else {
            Err(server_error(format!(
                "the root DSE does not advertise the post-read control {POST_READ_OID}"
            )))
        }
    }

    /// The plain `ldap://127.0.0.1:<port>` URL (StartTLS is offered on it).
    pub fn ldap_url(&self) -> &str {
        &self.ldap_url
    }

    /// The `ldaps://127.0.0.1:<port>` URL (`None` for an existing server reached over plain LDAP).
    pub fn ldaps_url(&self) -> Option<&str> {
        self.ldaps_url.as_deref()
    }

    /// The `ldapi://<url-encoded socket path>` URL, for SASL EXTERNAL as this process's user (`None`
    /// for an existing server).
    pub fn ldapi_url(&self) -> Option<&str> {
        self.ldapi_url.as_deref()
    }

    /// The first (main) suffix.
    pub fn suffix(&self) -> &str {
        &self.suffixes[0]
    }

    /// All suffixes, in the order they were asked for.
    pub fn suffixes(&self) -> &[String] {
        &self.suffixes
    }

    /// The first suffix's root DN (`cn=admin,<suffix>`).
    pub fn admin_dn(&self) -> &str {
        &self.admin_dns[0]
    }

    /// The root DN of `suffix` (`None` when the server does not hold it).
    pub fn admin_dn_for(&self, suffix: &str) -> Option<&str> {
        self.suffixes
            .iter()
            .position(|s| s.eq_ignore_ascii_case(suffix))
            .map(|i| self.admin_dns[i].as_str())
    }

    /// The root DNs' password.
    pub fn admin_password(&self) -> &str {
        &self.admin_password
    }

    /// The CA certificate (PEM) that certifies the server (`None` for an existing server without
    /// `JIM_TEST_LDAP_CA_FILE`).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// A `rustls` client configuration trusting [`Slapd::ca_pem`], for verified StartTLS/LDAPS.
    pub fn tls_client_config(&self) -> Result<Arc<rustls::ClientConfig>> {
        let pem = self.ca_pem.as_deref().ok_or_else(|| {
            server_error("the server's CA is unknown (set JIM_TEST_LDAP_CA_FILE)")
        })?;
        client_config(pem)
    }

    /// The server's folder (configuration, `tls/`, `db<n>/`, the ldapi socket), when this process
    /// started it.
    pub fn dir(&self) -> Option<&Path> {
        self.local.as_ref().map(|l| l.dir.path())
    }

    /// The server's PID while this process runs it.
    pub fn pid(&self) -> Option<i32> {
        self.local
            .as_ref()
            .and_then(|l| l.process.as_ref())
            .map(ServerProcess::pid)
    }

    /// True when this process started the server (false for `JIM_TEST_LDAP_URL`).
    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// True while the server process this process started exists.
    pub fn is_running(&self) -> bool {
        self.pid().is_some_and(pid_alive)
    }

    /// Stops the server cleanly (SIGTERM, then SIGKILL after 10 s), keeping its data for
    /// [`Slapd::restart`]. Returns once the process and all its threads are gone. Does nothing for an
    /// existing server.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.local.as_mut().and_then(|l| l.process.take()) {
            process.stop(STOP_GRACE);
            wait_gone(process.pid(), STOP_GRACE);
        }
    }

    /// Kills the server with SIGKILL (a crash) and returns once the process and all its threads are
    /// gone (its listeners closed); its data stays for [`Slapd::restart`]. Does nothing for an
    /// existing server.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.local.as_mut().and_then(|l| l.process.take()) {
            process.kill();
            wait_gone(process.pid(), STOP_GRACE);
            // Dropping sends SIGTERM to a PID that is already gone; nothing else can own it this soon.
            drop(process);
        }
    }

    /// Starts the server again on the same ports with the same data (stopping it first if it runs).
    /// Fails for an existing server.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop();
        let local = self.local.as_mut().ok_or_else(|| {
            server_error("an existing server (JIM_TEST_LDAP_URL) cannot be restarted")
        })?;
        let mut last = String::new();
        let mut started = false;
        // The old listeners may take a moment to be released; the ports are ours, so retry them.
        for attempt in 0..START_ATTEMPTS {
            match launch(
                &local.slapd,
                &local.config,
                &local.listeners,
                &local.pid_file,
            )
            .await?
            {
                Launch::Started(pid) => {
                    local.process = Some(ServerProcess::adopt("slapd", pid, local.dir.path()));
                    tracing::debug!(pid, "slapd restarted");
                    started = true;
                    break;
                }
                Launch::Failed(message) => {
                    last = message;
                    tokio::time::sleep(Duration::from_millis(100 * (attempt as u64 + 1))).await;
                }
            }
        }
        if !started {
            return Err(server_error(format!(
                "did not restart on its ports: {last}"
            )));
        }
        let mut ldap = self.admin_ldap().await?;
        ldap.unbind().await.ok();
        Ok(())
    }

    /// A connection bound as the first suffix's root DN over plain LDAP (or over TLS when an existing
    /// server's URL is `ldaps://`).
    pub async fn admin_ldap(&self) -> Result<Ldap> {
        self.bind(&self.admin_dns[0]).await
    }

    /// A connection bound as `suffix`'s root DN.
    pub async fn admin_ldap_for(&self, suffix: &str) -> Result<Ldap> {
        let dn = self
            .admin_dn_for(suffix)
            .ok_or_else(|| server_error(format!("the server holds no suffix {suffix}")))?
            .to_string();
        self.bind(&dn).await
    }

    async fn bind(&self, dn: &str) -> Result<Ldap> {
        let mut settings = LdapConnSettings::new().set_conn_timeout(CONNECT_TIMEOUT);
        if self.ldap_url.starts_with("ldaps://") && self.ca_pem.is_some() {
            settings = settings.set_config(self.tls_client_config()?);
        }
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.ldap_url)
            .await
            .map_err(ldap_error(format!("connecting to {}", self.ldap_url)))?;
        ldap3::drive!(conn);
        ldap.simple_bind(dn, &self.admin_password)
            .await
            .and_then(|r| r.success())
            .map_err(ldap_error(format!("binding as {dn}")))?;
        Ok(ldap)
    }

    /// Reads one entry as the admin (see [`read_entry`]).
    pub async fn read_entry(&self, dn: &str, attrs: &[&str]) -> Result<Option<SearchEntry>> {
        let mut ldap = self.admin_ldap().await?;
        let entry = read_entry(&mut ldap, dn, attrs).await;
        ldap.unbind().await.ok();
        entry
    }

    /// Counts entries as the admin (see [`count_entries`]).
    pub async fn count_entries(&self, base: &str, filter: &str) -> Result<usize> {
        let mut ldap = self.admin_ldap().await?;
        let count = count_entries(&mut ldap, base, filter).await;
        ldap.unbind().await.ok();
        count
    }
}

/// Reads the entry `dn` with `attrs` (empty: all user and operational attributes, `*` and `+`).
/// `Ok(None)` when it does not exist.
pub async fn read_entry(ldap: &mut Ldap, dn: &str, attrs: &[&str]) -> Result<Option<SearchEntry>> {
    let attrs: Vec<&str> = if attrs.is_empty() {
        vec!["*", "+"]
    } else {
        attrs.to_vec()
    };
    let result = ldap
        .search(dn, Scope::Base, "(objectClass=*)", attrs)
        .await
        .map_err(ldap_error(format!("reading {dn}")))?;
    // 32: noSuchObject.
    if result.1.rc == 32 {
        return Ok(None);
    }
    let (entries, _) = result
        .success()
        .map_err(ldap_error(format!("reading {dn}")))?;
    Ok(entries.into_iter().next().map(SearchEntry::construct))
}

/// Counts the entries in the subtree at `base` (the base included) that match `filter`, streaming the
/// results so that millions of entries take no memory. `Ok(0)` when `base` does not exist.
pub async fn count_entries(ldap: &mut Ldap, base: &str, filter: &str) -> Result<usize> {
    let context = || format!("counting {filter} under {base}");
    let mut stream = ldap
        .streaming_search(base, Scope::Subtree, filter, vec!["1.1"])
        .await
        .map_err(ldap_error(context()))?;
    let mut count = 0;
    while stream
        .next()
        .await
        .map_err(ldap_error(context()))?
        .is_some()
    {
        count += 1;
    }
    let result = stream.finish().await;
    if result.rc == 32 {
        return Ok(0);
    }
    result.success().map_err(ldap_error(context()))?;
    Ok(count)
}

fn validate(options: &SlapdOptions) -> Result<()> {
    if options.suffixes.is_empty() {
        return Err(server_error("SlapdOptions::suffixes is empty"));
    }
    let bad = |s: &str| s.is_empty() || s.contains(['"', '\\', '\n', '\r']);
    if let Some(s) = options.suffixes.iter().find(|s| bad(s)) {
        return Err(server_error(format!(
            "suffix {s:?} is empty or holds a quote, backslash or line break"
        )));
    }
    if bad(&options.admin_password) {
        return Err(server_error(
            "the admin password is empty or holds a quote, backslash or line break",
        ));
    }
    for s in &options.suffixes {
        base_entries(s)?;
    }
    Ok(())
}

pub(crate) type Attrs = Vec<(&'static str, Vec<String>)>;

/// The base entries of `suffix`: the suffix itself, `ou=People` and `ou=Groups`.
pub(crate) fn base_entries(suffix: &str) -> Result<Vec<(String, Attrs)>> {
    let first = suffix.split(',').next().unwrap_or_default();
    let (attr, value) = first
        .split_once('=')
        .map(|(a, v)| (a.trim().to_ascii_lowercase(), v.trim().to_string()))
        .ok_or_else(|| server_error(format!("suffix {suffix:?} is not a DN")))?;
    let top: Attrs = match attr.as_str() {
        "dc" => vec![
            (
                "objectClass",
                vec!["top".into(), "dcObject".into(), "organization".into()],
            ),
            ("dc", vec![value.clone()]),
            ("o", vec![value]),
        ],
        "o" => vec![
            ("objectClass", vec!["top".into(), "organization".into()]),
            ("o", vec![value]),
        ],
        "ou" => vec![
            (
                "objectClass",
                vec!["top".into(), "organizationalUnit".into()],
            ),
            ("ou", vec![value]),
        ],
        _ => {
            return Err(server_error(format!(
                "suffix {suffix:?} must start with dc=, o= or ou="
            )));
        }
    };
    let ou = |name: &str| -> (String, Attrs) {
        (
            format!("ou={name},{suffix}"),
            vec![
                (
                    "objectClass",
                    vec!["top".into(), "organizationalUnit".into()],
                ),
                ("ou", vec![name.to_string()]),
            ],
        )
    };
    Ok(vec![(suffix.to_string(), top), ou("People"), ou("Groups")])
}

struct ConfigInput<'a> {
    options: &'a SlapdOptions,
    pid_file: &'a Path,
    args_file: &'a Path,
    tls: &'a crate::tls::TlsFiles,
    db_dirs: &'a [PathBuf],
    uid: u32,
    gid: u32,
}

/// The `slapd.conf` text.
fn render_config(input: &ConfigInput<'_>) -> String {
    let options = input.options;
    let mut c = String::new();
    let mut line = |s: String| {
        c.push_str(&s);
        c.push('\n');
    };
    for schema in SCHEMAS {
        line(format!("include /etc/ldap/schema/{schema}.schema"));
    }
    line("modulepath /usr/lib/ldap".into());
    line("moduleload back_mdb".into());
    line(format!("pidfile \"{}\"", input.pid_file.display()));
    line(format!("argsfile \"{}\"", input.args_file.display()));
    line("loglevel 0".into());
    if let Some(threads) = options.threads {
        line(format!("threads {threads}"));
    }
    line("sizelimit unlimited".into());
    line("timelimit unlimited".into());
    // On the frontend, before any data: member values are kept sorted, so adding a member to a big
    // group is a binary search instead of a linear duplicate check (JIM's test directory does this).
    line("sortvals member".into());
    line(format!(
        "TLSCACertificateFile \"{}\"",
        input.tls.ca.display()
    ));
    line(format!(
        "TLSCertificateFile \"{}\"",
        input.tls.cert.display()
    ));
    line(format!(
        "TLSCertificateKeyFile \"{}\"",
        input.tls.key.display()
    ));
    // The regex needs `\\+` in the file: the config parser eats one backslash.
    let main_admin = format!("cn=admin,{}", options.suffixes[0]);
    line(format!(
        "authz-regexp \"gidNumber={}\\\\+uidNumber={},cn=peercred,cn=external,cn=auth\" \"{main_admin}\"",
        input.gid, input.uid
    ));
    for extra in &options.extra_global {
        line(extra.clone());
    }
    for (i, (suffix, db)) in options.suffixes.iter().zip(input.db_dirs).enumerate() {
        line(String::new());
        line("database mdb".into());
        line(format!("maxsize {}", options.max_size));
        if !options.durable {
            line("dbnosync".into());
        }
        line(format!("suffix \"{suffix}\""));
        line(format!("rootdn \"cn=admin,{suffix}\""));
        line(format!("rootpw \"{}\"", options.admin_password));
        line(format!("directory \"{}\"", db.display()));
        line("sizelimit unlimited".into());
        line("timelimit unlimited".into());
        if i > 0 {
            // The main admin (and so ldapi SASL EXTERNAL) may manage every suffix.
            line(format!(
                "access to * by dn.exact=\"{main_admin}\" manage by * read"
            ));
        }
        line("index objectClass eq".into());
        line("index uid,cn eq".into());
        line("index entryUUID eq".into());
        line("index member eq".into());
        for extra in &options.extra_database {
            line(extra.clone());
        }
    }
    c
}

fn current_uid() -> u32 {
    #[allow(unsafe_code)]
    // SAFETY: geteuid has no preconditions.
    unsafe {
        libc::geteuid()
    }
}

fn current_gid() -> u32 {
    #[allow(unsafe_code)]
    // SAFETY: getegid has no preconditions.
    unsafe {
        libc::getegid()
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters (an ldapi URL's host is the path).
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Waits until no thread of `pid` runs any more. A killed multi-threaded process can show its leader
/// as a zombie while other threads still hold its sockets open, so the leader's state is not enough.
pub(crate) fn wait_gone(pid: i32, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !threads_gone(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn threads_gone(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return true;
    };
    tasks.filter_map(|t| t.ok()).all(|task| {
        std::fs::read_to_string(task.path().join("stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(") ")
                    .map(|(_, rest)| rest.starts_with(['Z', 'X']))
            })
            // A task that vanished while we looked has exited.
            .unwrap_or(true)
    })
}

/// Two distinct free ports (`free_port` never hands the same port out twice).
pub(crate) fn two_free_ports() -> Result<(u16, u16)> {
    let a = free_port().io_context(|| "finding a free port".into())?;
    let b = free_port().io_context(|| "finding a free port".into())?;
    Ok((a, b))
}

/// Where a server listens: the `-h` argument, and what to probe before handing the server out.
struct Listeners {
    arg: String,
    ports: [u16; 2],
    socket: PathBuf,
}

enum Launch {
    Started(i32),
    Failed(String),
}

/// Runs slapd as a daemon and waits until it accepts connections. Its first process exits once the
/// daemon has bound its sockets (or failed: a zero exit status means it did not), but the daemon calls
/// `listen()` a little later, so the listeners are probed until they answer.
async fn launch(
    slapd: &Path,
    config: &Path,
    listeners: &Listeners,
    pid_file: &Path,
) -> Result<Launch> {
    // A pid file left by a killed server would name the dead process.
    let _ = std::fs::remove_file(pid_file);
    let output = tokio::process::Command::new(slapd)
        .arg("-f")
        .arg(config)
        .arg("-h")
        .arg(&listeners.arg)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .io_context(|| format!("running {}", slapd.display()))?;
    if !output.status.success() {
        return Ok(Launch::Failed(format!(
            "slapd exited with {}{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
            .filter(|&pid| pid_alive(pid))
        {
            break pid;
        }
        if Instant::now() >= deadline {
            return Ok(Launch::Failed(format!(
                "slapd reported success but {} names no running process",
                pid_file.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    loop {
        if !pid_alive(pid) {
            return Ok(Launch::Failed(format!(
                "slapd (pid {pid}) exited while starting"
            )));
        }
        if listening(listeners).await {
            return Ok(Launch::Started(pid));
        }
        if Instant::now() >= deadline {
            // Not ours to keep: stop it rather than leak it.
            kill_now(pid);
            return Ok(Launch::Failed(format!(
                "slapd (pid {pid}) did not accept connections within 10 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// True when every listener accepts a connection.
async fn listening(listeners: &Listeners) -> bool {
    for port in listeners.ports {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            return false;
        }
    }
    tokio::net::UnixStream::connect(&listeners.socket)
        .await
        .is_ok()
}

fn kill_now(pid: i32) {
    #[allow(unsafe_code)]
    // SAFETY: signalling the slapd we just started; no memory is involved.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    wait_gone(pid, STOP_GRACE);
}

/// Runs `slaptest` on the configuration and turns its complaint into an error.
async fn config_check(slaptest: &Path, config: &Path) -> Result<()> {
    let output = tokio::process::Command::new(slaptest)
        .arg("-u")
        .arg("-f")
        .arg(config)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .io_context(|| format!("running {}", slaptest.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(server_error(format!(
            "slaptest rejects {}: {}{}",
            config.display(),
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

struct Programs {
    slapd: PathBuf,
    slaptest: PathBuf,
}

fn find_programs() -> Option<Programs> {
    // ldapadd is not used here, but tests and benchmarks load data with it.
    find_program("ldapadd")?;
    Some(Programs {
        slapd: find_program("slapd")?,
        slaptest: find_program("slaptest")?,
    })
}

/// Finds slapd, slaptest and ldapadd, installing `slapd ldap-utils` with apt when they are missing and
/// we are root. One install at a time: a mutex within this process, a file lock across processes.
async fn ensure_installed() -> Result<Programs> {
    if let Some(p) = find_programs() {
        return Ok(p);
    }
    let missing = || {
        TestkitError::Missing {
        program: "slapd (OpenLDAP server) and ldap-utils".into(),
        hint: "run `sudo apt-get install -y slapd ldap-utils` (Debian/Ubuntu), or set JIM_TEST_LDAP_URL, \
               JIM_TEST_LDAP_PASSWORD and JIM_TEST_LDAP_SUFFIX to use an existing server"
            .into(),
    }
    };
    if !is_root() {
        return Err(missing());
    }
    tokio::task::spawn_blocking(|| {
        apt_install(
            &["slapd", "ldap-utils"],
            "slapd (OpenLDAP server) and ldap-utils",
            || find_programs().is_some(),
        )
    })
    .await
    .map_err(|e| server_error(format!("the install task failed: {e}")))??;
    find_programs().ok_or_else(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldapi_path_is_percent_encoded() {
        assert_eq!(
            percent_encode("/d/jim-slapd-aB1.x_/ldapi"),
            "%2Fd%2Fjim-slapd-aB1.x_%2Fldapi"
        );
    }

    #[test]
    fn base_entries_follow_the_suffix() {
        let e = base_entries("dc=example,dc=org").expect("dc suffix");
        let dns: Vec<&str> = e.iter().map(|(dn, _)| dn.as_str()).collect();
        assert_eq!(
            dns,
            [
                "dc=example,dc=org",
                "ou=People,dc=example,dc=org",
                "ou=Groups,dc=example,dc=org"
            ]
        );
        assert!(e[0].1.contains(&("dc", vec!["example".to_string()])));
        assert!(base_entries("o=acme").is_ok());
        assert!(base_entries("cn=x,dc=org").is_err());
        assert!(base_entries("nonsense").is_err());
    }

    #[test]
    fn config_has_no_membership_overlays_and_sorts_members_globally() {
        let options = SlapdOptions {
            suffixes: vec!["dc=a,dc=test".into(), "dc=b,dc=test".into()],
            threads: Some(4),
            ..SlapdOptions::default()
        };
        let tls = crate::tls::TlsFiles {
            ca: "/d/tls/ca.pem".into(),
            cert: "/d/tls/server.pem".into(),
            key: "/d/tls/server.key".into(),
        };
        let text = render_config(&ConfigInput {
            options: &options,
            pid_file: Path::new("/d/slapd.pid"),
            args_file: Path::new("/d/slapd.args"),
            tls: &tls,
            db_dirs: &["/d/db0".into(), "/d/db1".into()],
            uid: 0,
            gid: 0,
        });
        assert!(!text.contains("memberof") && !text.contains("refint"));
        let sortvals = text.find("sortvals member").expect("sortvals");
        assert!(sortvals < text.find("database mdb").expect("database"));
        assert_eq!(text.matches("database mdb").count(), 2);
        assert_eq!(text.matches("dbnosync").count(), 2);
        assert!(text.contains("maxsize 34359738368"));
        assert!(text.contains("threads 4"));
        assert!(text.contains(
            "authz-regexp \"gidNumber=0\\\\+uidNumber=0,cn=peercred,cn=external,cn=auth\" \"cn=admin,dc=a,dc=test\""
        ));
        let durable = render_config(&ConfigInput {
            options: &SlapdOptions {
                durable: true,
                ..options.clone()
            },
            pid_file: Path::new("/d/slapd.pid"),
            args_file: Path::new("/d/slapd.args"),
            tls: &tls,
            db_dirs: &["/d/db0".into(), "/d/db1".into()],
            uid: 0,
            gid: 0,
        });
        assert!(!durable.contains("dbnosync"));
    }

    #[test]
    fn options_debug_hides_the_password() {
        let options = SlapdOptions {
            admin_password: "hunter2".into(),
            ..SlapdOptions::default()
        };
        assert!(!format!("{options:?}").contains("hunter2"));
        assert!(validate(&options).is_ok());
        assert!(
            validate(&SlapdOptions {
                suffixes: vec![],
                ..SlapdOptions::default()
            })
            .is_err()
        );
    }
}
