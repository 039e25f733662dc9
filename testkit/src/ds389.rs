//! A throwaway 389 Directory Server (`ns-slapd`, Debian's `389-ds-base` 2.3) in a temporary folder,
//! shaped like a common 389 deployment:
//!
//! - one suffix (default `dc=example,dc=org`) in the `userroot` back end (Berkeley DB, 389 2.3's
//!   default), with base entries: the suffix (`dcObject` + `organization`), `ou=People` and
//!   `ou=Groups`;
//! - `cn=Directory Manager` with [`Ds389Options::admin_password`];
//! - the **memberOf** plugin (on `member` and `uniqueMember`), the **referential integrity** plugin
//!   (synchronous: `referint-update-delay: 0`) and the **entryUUID** plugin, all enabled;
//! - writes without a durable transaction log (`nsslapd-db-durable-transaction: off`) unless
//!   [`Ds389Options::durable`];
//! - `ldap://` with StartTLS and `ldaps://` on free loopback ports, certified by a generated
//!   [`TestCa`] (imported into the instance's NSS database), and an `ldapi://` socket in the folder
//!   where SASL EXTERNAL maps root to the Directory Manager.
//!
//! ```no_run
//! # async fn demo() -> jim_export_testkit::Result<()> {
//! use jim_export_testkit::ds389::{Ds389, Ds389Options};
//! // `None` (after a printed skip message) outside CI when 389 cannot run here; a panic under CI.
//! let Some(ds) = Ds389::start_or_skip(Ds389Options::default()).await else { return Ok(()) };
//! let mut ldap = ds.admin_ldap().await?; // plain LDAP, bound as cn=Directory Manager
//! let people = ds.count_entries(&format!("ou=People,{}", ds.suffix()), "(uid=*)").await?;
//! # let _ = (ldap.unbind().await, people); Ok(()) }
//! ```
//!
//! ## How it runs (no systemd)
//!
//! - **Template, once per machine, 389 version and suffix** (under an `flock` on
//!   `jim-testkit-ds389/lock` in the system's temporary folder, where the templates live too):
//!   `dscreate from-file` with `systemd = False` in `[general]`, in the *prefix* mode 389 documents
//!   for installs outside `/` (`PREFIX=<folder>`, as `dscreate ds-root` sets up for non-root users):
//!   the folder holds a copy of the system's `defaults.inf` whose writable paths (`/etc`, `/var`,
//!   `/run`, `/dev/shm`, `/tmp`) point into the folder, so nothing is written outside it. The
//!   template server is then configured over LDAP (plugins, size limit, base entries), stopped, and
//!   its Berkeley DB region files, pid and lock files and logs removed.
//! - **Each [`Ds389::start`]** copies the template (`cp -a`) into a fresh temporary folder, rewrites
//!   `dse.ldif` (the template's folder replaced by the copy's, the ports, `nsslapd-security: on`,
//!   loopback listeners, durability), imports a server certificate from a fresh [`TestCa`] into the
//!   copy's NSS database (`openssl pkcs12`, `certutil -A`, `pk12util -i`; nickname `Server-Cert`, as
//!   the template's `cn=RSA,cn=encryption,cn=config` names), and runs `ns-slapd -D <config dir> -i
//!   <pid file> -d 0`, the way `dsctl` starts it without systemd, but in the foreground (`-d 0`: no
//!   debug output), so that its PID is known, and the watchdog armed, from the moment it is
//!   spawned (a daemon's pid file appears only once it is nearly ready). ns-slapd binds its ports
//!   first, so a port taken meanwhile makes it exit 1 at once, and the start is retried on fresh
//!   ports. A start is ready when both ports accept connections.
//! - The server runs as root (`nsslapd-localuser: root`); starting as another user is reported as
//!   unavailable. It is stopped by PID: SIGKILL when the [`Ds389`] is dropped (its folder is removed
//!   anyway, and a clean stop takes seconds), SIGTERM in [`Ds389::stop`] and [`Ds389::restart`]; a
//!   watchdog stops it (and removes its folder) if the test process dies first. Before each start
//!   the stale lock files of a killed server (`run/lock/dirsrv/slapd-jim/server/<pid>`) are
//!   removed: ns-slapd refuses to start while such a PID answers `kill -0`, which a killed server's
//!   zombie does until it is reaped.
//!
//! Measured on the 2-core test machine (Debian 12, 389-ds-base 2.3.1, another build running beside
//! it): `dscreate from-file` takes **8.5 s** (it starts and restarts the server), the whole template
//! **12.5 s**; a start from the template (copy, certificates, `ns-slapd`, listening) **0.5 s** alone
//! (up to 1 s under load; 1.2–1.4 s for two started at once), about 0.25 s of it the copy and the
//! certificate import; a restart **0.57 s**; a clean stop (SIGTERM) **2.2–3.4 s** (Berkeley DB's
//! threads wind down); a kill **under 15 ms**, a drop (kill and folder removal) **about 0.1 s**.
//!
//! ## When 389 cannot run
//!
//! Not root: [`Ds389::start`] fails with [`TestkitError::Unavailable`]. `ns-slapd`, `dscreate`,
//! `certutil`, `pk12util` or `openssl` missing: they are installed with apt (`389-ds-base
//! libnss3-tools openssl`, as `scripts/install-deps.sh` does), and when that fails `start` fails
//! with [`TestkitError::Missing`]. On either, [`Ds389::start_or_skip`] prints `SKIPPED (389
//! Directory Server): <reason>` and returns `None` outside CI, and panics under CI (`CI` set, see
//! [`crate::samba::in_ci`]). Any other failure is an error (or a panic in `start_or_skip`)
//! everywhere.
//!
//! ## What this server says and does (facts for the engine's `ds389` dialect)
//!
//! Checked by `testkit/tests/ds389.rs` against 389-ds-base 2.3.1 (Debian 12):
//!
//! - **Root DSE.** `vendorName: 389 Project`, `vendorVersion: 389-Directory/2.3.1 B2025.016.1616`.
//!   `supportedControl` holds the RFC 4527 pre-read (`1.3.6.1.1.13.1`) and post-read
//!   (`1.3.6.1.1.13.2`) controls, but **not** the RFC 4528 assertion control (`1.3.6.1.1.12`): a
//!   critical assertion control is refused with 12 (unavailableCriticalExtension), match or not.
//!   `supportedExtension` holds Who am I? (`1.3.6.1.4.1.4203.1.11.3`) and, with TLS on, StartTLS
//!   (`1.3.6.1.4.1.1466.20037`). No content-sync control unless that plugin is enabled.
//!   `nsslapd-maxthreadsperconn` is 5, `nsslapd-threadnumber` 16 on this machine. "Who am I?"
//!   answers with a space after `dn:` and the DN in lower case (`dn: cn=directory manager`; over
//!   ldapi autobind, `dn: cn=Directory Manager`).
//! - **Anchors.** Every entry has `nsUniqueId`, 389's own, in **four groups of eight lower-case hex
//!   digits** (`fc152219-f13511f1-9b47d035-47022742`, *not* RFC 4122 form, not a valid `Uuid`
//!   string); entries added while the entryUUID plugin runs also have `entryUUID`, **RFC 4122 text,
//!   lower case** (`92ce3dc1-6734-44f0-90be-340289a0de5e`), matched case-insensitively in filters.
//!   Both are operational (returned for `+` or by name), both survive a rename, both are indexed
//!   (equality). But entryUUID is not guaranteed: the suffix entry `dscreate` writes has none, and
//!   neither has any entry written while the plugin was off (389 before 2.0, a deployment that
//!   turned it off) until `dsconf <instance> plugin entryuuid fixup` runs, while every entry has
//!   nsUniqueId. So **nsUniqueId is the anchor that always exists**; entryUUID is the portable one
//!   (OpenLDAP's attribute and format). This testkit replaces dscreate's suffix entry, so all its
//!   entries carry both.
//! - **Post-read on Add works** (ldap3 `PostRead`): the response control returns the requested
//!   `entryUUID`, `nsUniqueId`, `createTimestamp` and `creatorsName` of the new entry.
//! - **Result codes.** Add of an existing DN: 68 (entryAlreadyExists). Modify adding a value that
//!   exists (DN values compared by DN equality, case-insensitive): 20 (attributeOrValueExists).
//!   Deleting a value (or attribute) that is not there: 16 (noSuchAttribute). A second value on a
//!   single-valued attribute: **65** (objectClassViolation, "single-valued attribute … has multiple
//!   values"), not 19. A missing MUST attribute, an attribute no object class allows, and an
//!   attribute the schema does not know (schema checking is on): 65. A value that breaks its syntax
//!   (`gidNumber: abc`): 21 (invalidAttributeSyntax). Parent missing, or modify/delete of a missing
//!   entry: 32 (noSuchObject, with the matched DN). Delete of a non-leaf: 66.
//! - **Password policy.** With a global policy (`passwordCheckSyntax: on`, `passwordMinLength: 12`
//!   on `cn=config`), a too-short `userPassword` written by an ordinary account (Add or Modify) gets
//!   **19** (constraintViolation, "invalid password syntax - password must be at least 12
//!   characters long"); the **Directory Manager is exempt** and its write succeeds.
//! - **Groups.** 389's `groupOfNames` has `member` as MAY: a group may be empty (the last member can
//!   be removed, a group added without members), so no placeholder member is needed. A `member`
//!   naming a missing entry is accepted. memberOf adds the auxiliary class **`nsMemberOf`** to each
//!   member's `objectClass` (visible to anyone diffing objectClass) and `memberOf` appears as soon as
//!   the group write returns; referential integrity removes a deleted (or renames a renamed) member
//!   from `member`/`uniqueMember` before the Delete returns.
//! - **Busy and unwilling.** Per 389's source, the server answers 51 (busy) only when a back-end
//!   transaction keeps deadlocking (after 50 retries) or an entry was reverted by a cancelled
//!   operation (and in replication): there is no switch for it. `nsslapd-maxthreadsperconn` makes
//!   the server stop reading a connection that has that many operations running (they queue, no
//!   result code), and no limit such as `nsslapd-maxdescriptors` answers 51 either. 53
//!   (unwillingToPerform) is easy: `nsslapd-readonly: on` on the back end's entry (see [`Ds389::set_read_only`]) makes
//!   writes fail with 53 "database is read-only" at once (reads still work), and on `cn=config` with
//!   53 "Server is read-only"; both switch back without a restart.
//! - **Operational attributes.** `createTimestamp`, `modifyTimestamp`, `creatorsName` and
//!   `modifiersName` are returned for `+` or by name; `creatorsName` is normalised to lower case
//!   (`cn=directory manager`). `objectClass` comes back with the superclasses added
//!   (`inetOrgPerson` → also `organizationalPerson`, `person`, `top`).

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Mod, SearchEntry};

use crate::error::{IoContext, Result, TestkitError};
use crate::process::{ServerProcess, apt_install, find_program, is_root, log_tail, pid_alive};
use crate::slapd::{base_entries, percent_encode, two_free_ports, wait_gone};
use crate::tls::{TestCa, TlsFiles, client_config};

/// The default suffix.
pub const DEFAULT_SUFFIX: &str = "dc=example,dc=org";
/// The Directory Manager's DN (389's root DN).
pub const ADMIN_DN: &str = "cn=Directory Manager";
/// The Directory Manager's default password (`dscreate` wants at least 8 characters).
pub const DEFAULT_ADMIN_PASSWORD: &str = "secret-389";
/// The RFC 4527 post-read control's OID (389 supports it).
pub const POST_READ_OID: &str = "1.3.6.1.1.13.2";
/// The RFC 4528 assertion control's OID (389 2.3 does **not** support it).
pub const ASSERTION_OID: &str = "1.3.6.1.1.12";
/// The "Who am I?" extended operation's OID.
pub const WHO_AM_I_OID: &str = "1.3.6.1.4.1.4203.1.11.3";
/// The back end that holds the suffix.
pub const BACKEND: &str = "userroot";

/// The instance name inside each folder (its files are `slapd-jim`).
const INSTANCE: &str = "jim";
/// The nickname `cn=RSA,cn=encryption,cn=config` names by default.
const SERVER_CERT_NICKNAME: &str = "Server-Cert";
const CA_NICKNAME: &str = "jim-export test CA";
/// The PKCS#12 file's password (the file holds a throwaway test key).
const P12_PASSWORD: &str = "jim-export";
const START_ATTEMPTS: usize = 5;
const STOP_GRACE: Duration = Duration::from_secs(30);
const READY_WAIT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one readiness probe waits for the root DSE before the next try.
const ANSWER_WAIT: Duration = Duration::from_secs(2);
const PACKAGES: [&str; 3] = ["389-ds-base", "libnss3-tools", "openssl"];
const SYSTEM_DEFAULTS: [&str; 2] = [
    "/usr/share/dirsrv/inf/defaults.inf",
    "/usr/local/share/dirsrv/inf/defaults.inf",
];

/// How to start a server.
#[derive(Clone)]
pub struct Ds389Options {
    /// The suffix (`dc=…`, `o=…` or `ou=…` first). Default `dc=example,dc=org`. Each suffix has its
    /// own template, built on first use.
    pub suffix: String,
    /// The Directory Manager's password (at least 8 characters).
    pub admin_password: String,
    /// Durable writes (`nsslapd-db-durable-transaction: on` in `cn=bdb,cn=config,cn=ldbm
    /// database,cn=plugins,cn=config`, 389's default). Off by default: tests do not need to
    /// survive a power cut.
    pub durable: bool,
    /// Extra DNS names or IP addresses for the server certificate (it always has `localhost` and
    /// `127.0.0.1`).
    pub tls_names: Vec<String>,
}

impl Default for Ds389Options {
    fn default() -> Self {
        Self {
            suffix: DEFAULT_SUFFIX.to_string(),
            admin_password: DEFAULT_ADMIN_PASSWORD.to_string(),
            durable: false,
            tls_names: Vec::new(),
        }
    }
}

impl fmt::Debug for Ds389Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ds389Options")
            .field("suffix", &self.suffix)
            .field("admin_password", &"***")
            .field("durable", &self.durable)
            .field("tls_names", &self.tls_names)
            .finish()
    }
}

/// A running 389 Directory Server that this process started (see the module docs). Stopped by PID
/// when dropped.
pub struct Ds389 {
    /// `None` once stopped or killed. Taken (and the server killed) before the folder goes.
    process: Option<ServerProcess>,
    ldap_url: String,
    ldaps_url: String,
    ldapi_url: Option<String>,
    suffix: String,
    admin_password: String,
    ca_pem: String,
    ns_slapd: PathBuf,
    layout: Layout,
    ports: [u16; 2],
    started_in: Duration,
    dir: tempfile::TempDir,
}

impl fmt::Debug for Ds389 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ds389")
            .field("ldap_url", &self.ldap_url)
            .field("ldaps_url", &self.ldaps_url)
            .field("suffix", &self.suffix)
            .field("admin_password", &"***")
            .field("dir", &self.dir.path())
            .field("pid", &self.pid())
            .finish_non_exhaustive()
    }
}

impl Drop for Ds389 {
    fn drop(&mut self) {
        // The folder is removed right after, so nothing needs a clean shutdown, which takes 389
        // seconds; every thread must be gone before the folder is.
        self.kill();
    }
}

fn server_error(message: impl Into<String>) -> TestkitError {
    TestkitError::Server {
        server: "389-ds",
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

impl Ds389 {
    /// Starts a new throwaway server from the template for `options.suffix` (building the template
    /// first when this machine has none). Fails with [`TestkitError::Unavailable`] when this
    /// process is not root, and with [`TestkitError::Missing`] when 389 is missing and cannot be
    /// installed.
    pub async fn start(options: Ds389Options) -> Result<Ds389> {
        validate(&options)?;
        let started = Instant::now();
        let programs = ensure_installed().await?;
        let template = ensure_template(&programs, &options.suffix).await?;
        let mut ds = start_from(&programs, &template, &options, started).await?;
        if options.admin_password != DEFAULT_ADMIN_PASSWORD {
            let mut ldap = bind(&ds.ldap_url, None, ADMIN_DN, DEFAULT_ADMIN_PASSWORD).await?;
            let result = ldap
                .modify(
                    "cn=config",
                    vec![Mod::Replace(
                        "nsslapd-rootpw",
                        [options.admin_password.as_str()].into(),
                    )],
                )
                .await
                .and_then(|r| r.success())
                .map_err(ldap_error("setting the Directory Manager's password"));
            ldap.unbind().await.ok();
            result?;
        }
        ds.started_in = started.elapsed();
        tracing::info!(
            elapsed_ms = ds.started_in.as_millis() as u64,
            pid = ds.pid(),
            url = %ds.ldap_url,
            "389 Directory Server ready"
        );
        Ok(ds)
    }

    /// [`Ds389::start`] for tests: `None` after printing `SKIPPED (389 Directory Server): <reason>`
    /// when 389 cannot run here and `CI` is unset.
    ///
    /// # Panics
    ///
    /// Under CI when 389 cannot run (a skip is a failure there), and everywhere when it is there
    /// but fails to start.
    pub async fn start_or_skip(options: Ds389Options) -> Option<Ds389> {
        match Ds389::start(options).await {
            Ok(ds) => Some(ds),
            Err(e @ (TestkitError::Missing { .. } | TestkitError::Unavailable { .. }))
                if !crate::samba::in_ci() =>
            {
                eprintln!("SKIPPED (389 Directory Server): {e}");
                None
            }
            Err(e @ (TestkitError::Missing { .. } | TestkitError::Unavailable { .. })) => {
                panic!("389 Directory Server unavailable under CI (a skip is a failure there): {e}")
            }
            Err(e) => panic!("389 Directory Server failed to start: {e}"),
        }
    }

    /// The plain `ldap://127.0.0.1:<port>` URL (StartTLS is offered on it).
    pub fn ldap_url(&self) -> &str {
        &self.ldap_url
    }

    /// The `ldaps://127.0.0.1:<port>` URL.
    pub fn ldaps_url(&self) -> &str {
        &self.ldaps_url
    }

    /// The `ldapi://<url-encoded socket path>` URL, where SASL EXTERNAL as root binds as the
    /// Directory Manager (`None` when the folder's path is too long for a Unix socket: then ldapi
    /// is off).
    pub fn ldapi_url(&self) -> Option<&str> {
        self.ldapi_url.as_deref()
    }

    /// The suffix.
    pub fn suffix(&self) -> &str {
        &self.suffix
    }

    /// `cn=Directory Manager`.
    pub fn admin_dn(&self) -> &str {
        ADMIN_DN
    }

    /// The Directory Manager's password.
    pub fn admin_password(&self) -> &str {
        &self.admin_password
    }

    /// The CA certificate (PEM) that certifies the server for `127.0.0.1` and `localhost`.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A `rustls` client configuration trusting only [`Ds389::ca_pem`], for verified
    /// StartTLS/LDAPS.
    pub fn tls_client_config(&self) -> Result<Arc<rustls::ClientConfig>> {
        client_config(&self.ca_pem)
    }

    /// The server's folder (`etc/dirsrv/slapd-jim/dse.ldif`, `var/log/dirsrv/slapd-jim/errors`,
    /// `tls/`, …).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// How long [`Ds389::start`] took (template included when it had to be built).
    pub fn start_time(&self) -> Duration {
        self.started_in
    }

    /// The server's PID while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.process.as_ref().map(ServerProcess::pid)
    }

    /// True while the server process exists.
    pub fn is_running(&self) -> bool {
        self.pid().is_some_and(pid_alive)
    }

    /// Stops the server cleanly (SIGTERM; SIGKILL after 30 s), keeping its data for
    /// [`Ds389::restart`]. Returns once the process and all its threads are gone (2–3 s).
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop(STOP_GRACE);
            wait_gone(process.pid(), STOP_GRACE);
        }
    }

    /// Kills the server with SIGKILL (a crash) and returns once the process and all its threads are
    /// gone (its listeners closed); its data stays for [`Ds389::restart`].
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
            wait_gone(process.pid(), STOP_GRACE);
            // Dropping sends SIGTERM to a PID that is already gone; nothing else can own it this
            // soon.
            drop(process);
        }
    }

    /// Starts the server again on the same ports with the same data (stopping it cleanly first if
    /// it runs).
    pub async fn restart(&mut self) -> Result<()> {
        self.stop();
        let mut last = String::new();
        // The old listeners may take a moment to be released; the ports are ours, so retry them.
        for attempt in 0..START_ATTEMPTS {
            match launch(&self.ns_slapd, &self.layout, self.ports).await? {
                Launch::Started(process) => {
                    tracing::debug!(pid = process.pid(), "389 Directory Server restarted");
                    self.process = Some(process);
                    let mut ldap = self.admin_ldap().await?;
                    ldap.unbind().await.ok();
                    return Ok(());
                }
                Launch::Failed(message) => {
                    last = message;
                    tokio::time::sleep(Duration::from_millis(200 * (attempt as u64 + 1))).await;
                }
            }
        }
        Err(server_error(format!(
            "did not restart on its ports: {last}"
        )))
    }

    /// A connection bound as the Directory Manager over plain LDAP.
    pub async fn admin_ldap(&self) -> Result<Ldap> {
        bind(&self.ldap_url, None, ADMIN_DN, &self.admin_password).await
    }

    /// A connection bound as the Directory Manager over LDAPS, verified against
    /// [`Ds389::ca_pem`].
    pub async fn admin_ldaps(&self) -> Result<Ldap> {
        bind(
            &self.ldaps_url,
            Some(self.tls_client_config()?),
            ADMIN_DN,
            &self.admin_password,
        )
        .await
    }

    /// Reads one entry as the Directory Manager (attributes as in [`crate::slapd::read_entry`]:
    /// empty means `*` and `+`). `Ok(None)` when it does not exist.
    pub async fn read_entry(&self, dn: &str, attrs: &[&str]) -> Result<Option<SearchEntry>> {
        let mut ldap = self.admin_ldap().await?;
        let entry = crate::slapd::read_entry(&mut ldap, dn, attrs).await;
        ldap.unbind().await.ok();
        entry
    }

    /// Counts the entries in the subtree at `base` (the base included) matching `filter`; `Ok(0)`
    /// when `base` does not exist.
    pub async fn count_entries(&self, base: &str, filter: &str) -> Result<usize> {
        let mut ldap = self.admin_ldap().await?;
        let count = crate::slapd::count_entries(&mut ldap, base, filter).await;
        ldap.unbind().await.ok();
        count
    }

    /// True when the schema (`cn=schema`) defines the object class `name` (any of its names,
    /// case-insensitive).
    pub async fn has_object_class(&self, name: &str) -> Result<bool> {
        self.schema_defines("objectClasses", name).await
    }

    /// True when the schema (`cn=schema`) defines the attribute type `name` (any of its names,
    /// case-insensitive).
    pub async fn has_attribute_type(&self, name: &str) -> Result<bool> {
        self.schema_defines("attributeTypes", name).await
    }

    async fn schema_defines(&self, kind: &str, name: &str) -> Result<bool> {
        let schema = self
            .read_entry("cn=schema", &[kind])
            .await?
            .ok_or_else(|| server_error("cn=schema is missing"))?;
        Ok(schema.attrs.iter().any(|(attr, definitions)| {
            attr.eq_ignore_ascii_case(kind)
                && definitions.iter().any(|d| {
                    definition_names(d)
                        .iter()
                        .any(|n| n.eq_ignore_ascii_case(name))
                })
        }))
    }

    /// Makes the suffix's back end read-only (`nsslapd-readonly` on `cn=userroot,cn=ldbm
    /// database,cn=plugins,cn=config`) or writable again, without a restart. While read-only,
    /// every write under the suffix fails with 53 (unwillingToPerform, "database is read-only");
    /// reads still work.
    pub async fn set_read_only(&self, read_only: bool) -> Result<()> {
        let mut ldap = self.admin_ldap().await?;
        let value = if read_only { "on" } else { "off" };
        let result = ldap
            .modify(
                &format!("cn={BACKEND},cn=ldbm database,cn=plugins,cn=config"),
                vec![Mod::Replace("nsslapd-readonly", [value].into())],
            )
            .await
            .and_then(|r| r.success())
            .map_err(ldap_error(format!("setting nsslapd-readonly to {value}")));
        ldap.unbind().await.ok();
        result.map(|_| ())
    }
}

/// The names in an RFC 4512 schema definition: `NAME 'x'` or `NAME ( 'x' 'y' )`.
fn definition_names(definition: &str) -> Vec<String> {
    let Some(at) = definition.find(" NAME ") else {
        return Vec::new();
    };
    let rest = definition[at + 6..].trim_start();
    let names = if let Some(list) = rest.strip_prefix('(') {
        list.split(')').next().unwrap_or_default()
    } else {
        // One quoted name: up to its closing quote.
        let end = rest
            .char_indices()
            .filter(|&(_, c)| c == '\'')
            .nth(1)
            .map_or(rest.len(), |(i, _)| i + 1);
        &rest[..end]
    };
    names
        .split('\'')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

async fn bind(
    url: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    dn: &str,
    password: &str,
) -> Result<Ldap> {
    let mut settings = LdapConnSettings::new().set_conn_timeout(CONNECT_TIMEOUT);
    if let Some(config) = tls {
        settings = settings.set_config(config);
    }
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, url)
        .await
        .map_err(ldap_error(format!("connecting to {url}")))?;
    ldap3::drive!(conn);
    ldap.simple_bind(dn, password)
        .await
        .and_then(|r| r.success())
        .map_err(ldap_error(format!("binding as {dn}")))?;
    Ok(ldap)
}

fn validate(options: &Ds389Options) -> Result<()> {
    let bad = |s: &str| s.is_empty() || s.contains(['\n', '\r', '\0']);
    if bad(&options.suffix) {
        return Err(server_error("the suffix is empty or holds a line break"));
    }
    if options.admin_password.len() < 8 || bad(&options.admin_password) {
        return Err(server_error(
            "the Directory Manager's password needs at least 8 characters and no line break",
        ));
    }
    base_entries(&options.suffix)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Programs

struct Programs {
    dscreate: PathBuf,
    ns_slapd: PathBuf,
    certutil: PathBuf,
    pk12util: PathBuf,
    openssl: PathBuf,
    /// The system's `defaults.inf` (389's compiled-in paths).
    defaults_inf: PathBuf,
}

fn find_programs() -> Option<Programs> {
    Some(Programs {
        dscreate: find_program("dscreate")?,
        ns_slapd: find_program("ns-slapd")?,
        certutil: find_program("certutil")?,
        pk12util: find_program("pk12util")?,
        openssl: find_program("openssl")?,
        defaults_inf: SYSTEM_DEFAULTS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())?,
    })
}

/// Finds 389's programs, installing them with apt as root when they are missing. Not root: 389 is
/// reported as unavailable ([`TestkitError::Unavailable`]).
async fn ensure_installed() -> Result<Programs> {
    let unavailable = |hint: &str| TestkitError::Missing {
        program: "389 Directory Server (389-ds-base, with certutil, pk12util and openssl)".into(),
        hint: hint.to_string(),
    };
    if !is_root() {
        return Err(TestkitError::Unavailable {
            server: "389 Directory Server",
            reason: "the testkit runs ns-slapd as root (nsslapd-localuser root), and this process \
                     does not run as root"
                .into(),
        });
    }
    if let Some(p) = find_programs() {
        return Ok(p);
    }
    tokio::task::spawn_blocking(|| {
        apt_install(
            &PACKAGES,
            "389 Directory Server (389-ds-base libnss3-tools openssl)",
            || find_programs().is_some(),
        )
    })
    .await
    .map_err(|e| server_error(format!("the install task failed: {e}")))??;
    find_programs().ok_or_else(|| {
        unavailable(
            "run scripts/install-deps.sh, or `apt-get install -y 389-ds-base libnss3-tools openssl`",
        )
    })
}

async fn run(program: &Path, args: &[&std::ffi::OsStr], what: &str) -> Result<()> {
    let output = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .io_context(|| format!("running {}", program.display()))?;
    if output.status.success() {
        return Ok(());
    }
    Err(server_error(format!(
        "{what}: {} exited with {}: {} {}",
        program.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout).trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}

// ---------------------------------------------------------------------------------------------
// The template

/// Where an instance's files are inside its folder (the template's or a copy's).
#[derive(Debug, Clone)]
struct Layout {
    root: PathBuf,
}

impl Layout {
    fn config_dir(&self) -> PathBuf {
        self.root
            .join("etc")
            .join("dirsrv")
            .join(format!("slapd-{INSTANCE}"))
    }
    fn dse(&self) -> PathBuf {
        self.config_dir().join("dse.ldif")
    }
    fn pid_file(&self) -> PathBuf {
        self.root
            .join("run")
            .join("dirsrv")
            .join(format!("slapd-{INSTANCE}.pid"))
    }
    fn socket(&self) -> PathBuf {
        self.root
            .join("run")
            .join(format!("slapd-{INSTANCE}.socket"))
    }
    fn log_dir(&self) -> PathBuf {
        self.root
            .join("var")
            .join("log")
            .join("dirsrv")
            .join(format!("slapd-{INSTANCE}"))
    }
    fn db_dir(&self) -> PathBuf {
        self.root
            .join("var")
            .join("lib")
            .join("dirsrv")
            .join(format!("slapd-{INSTANCE}"))
            .join("db")
    }
    fn lock_dir(&self) -> PathBuf {
        self.root
            .join("run")
            .join("lock")
            .join("dirsrv")
            .join(format!("slapd-{INSTANCE}"))
    }
    fn console(&self) -> PathBuf {
        self.root.join("ns-slapd.out")
    }
    /// The tail of what ns-slapd printed and of its error log, for error messages.
    fn tail(&self) -> String {
        format!(
            "{}\n{}",
            log_tail(&self.console(), 5),
            log_tail(&self.log_dir().join("errors"), 15)
        )
    }
}

/// `jim-testkit-ds389` in the system's temporary folder: the lock and the templates.
fn state_dir() -> PathBuf {
    std::env::temp_dir().join("jim-testkit-ds389")
}

/// An `flock` on `<state>/lock`, held while a template is checked or built.
struct TemplateLock {
    _file: File,
}

impl TemplateLock {
    fn acquire(dir: &Path) -> Result<TemplateLock> {
        use std::os::fd::AsRawFd;
        std::fs::create_dir_all(dir).io_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .io_context(|| format!("opening {}", path.display()))?;
        #[allow(unsafe_code)]
        // SAFETY: flock on a descriptor we own; the lock goes with the file.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(TestkitError::Io {
                context: format!("locking {}", path.display()),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(TemplateLock { _file: file })
    }
}

/// A file-name-safe form of `s`.
fn file_safe(s: &str) -> String {
    s.trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The template for this 389 version and `suffix`, built when missing (under the lock).
async fn ensure_template(programs: &Programs, suffix: &str) -> Result<PathBuf> {
    let version = tokio::process::Command::new(&programs.ns_slapd)
        .arg("-v")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .io_context(|| format!("running {} -v", programs.ns_slapd.display()))?;
    let version = String::from_utf8_lossy(&version.stdout)
        .lines()
        .find(|l| l.contains("389-Directory"))
        .map(file_safe)
        .ok_or_else(|| server_error("`ns-slapd -v` prints no 389-Directory version"))?;
    let state = state_dir();
    let template = state.join(format!("template-{version}-{}", file_safe(suffix)));
    let ready = |t: &Path| t.join("template-path").is_file();
    if ready(&template) {
        return Ok(template);
    }
    let lock_dir = state.clone();
    let lock = tokio::task::spawn_blocking(move || TemplateLock::acquire(&lock_dir))
        .await
        .map_err(|e| server_error(format!("the lock task failed: {e}")))??;
    if ready(&template) {
        return Ok(template);
    }
    // Under the lock nobody else builds: staging folders are leftovers of killed processes.
    if let Ok(entries) = std::fs::read_dir(&state) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("staging-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let staging = state.join(format!("staging-{}", std::process::id()));
    let started = Instant::now();
    let built = build_template(programs, &staging, suffix).await;
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        suffix,
        "built the 389 Directory Server template"
    );
    let _ = std::fs::remove_dir_all(&template);
    std::fs::rename(&staging, &template)
        .io_context(|| format!("renaming {} to {}", staging.display(), template.display()))?;
    drop(lock);
    Ok(template)
}

/// `defaults.inf` for a prefix install in `root`: the system's, with every writable location moved
/// into `root`, no systemd or SELinux, and root as the server's user.
fn render_defaults(system: &str, root: &Path) -> String {
    let root = root.display().to_string();
    let moved = ["/etc", "/var", "/run", "/dev/shm", "/tmp"];
    let mut out = String::new();
    for line in system.lines() {
        let Some((key, value)) = line
            .split_once('=')
            .filter(|_| !line.trim_start().starts_with([';', '#', '[']))
            .map(|(k, v)| (k.trim(), v.trim()))
        else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let value = match key {
            "with_systemd" => "0".to_string(),
            "with_selinux" => "no".to_string(),
            "user" | "group" => "root".to_string(),
            "prefix" => root.clone(),
            "inst_dir" => format!("{root}/lib/slapd-{{instance_name}}"),
            _ if moved
                .iter()
                .any(|m| value == *m || value.starts_with(&format!("{m}/"))) =>
            {
                format!("{root}{value}")
            }
            _ => value.to_string(),
        };
        out.push_str(&format!("{key} = {value}\n"));
    }
    out
}

/// The `dscreate from-file` answers.
fn render_inf(suffix: &str, ports: (u16, u16)) -> String {
    format!(
        "[general]\n\
         config_version = 2\n\
         full_machine_name = localhost\n\
         selinux = False\n\
         systemd = False\n\
         start = True\n\
         strict_host_checking = False\n\
         \n\
         [slapd]\n\
         instance_name = {INSTANCE}\n\
         user = root\n\
         group = root\n\
         port = {}\n\
         secure_port = {}\n\
         root_dn = {ADMIN_DN}\n\
         root_password = {DEFAULT_ADMIN_PASSWORD}\n\
         self_sign_cert = False\n\
         \n\
         [backend-{BACKEND}]\n\
         suffix = {suffix}\n\
         create_suffix_entry = False\n",
        ports.0, ports.1
    )
}

/// Builds a template in `root`: `dscreate`, plugins and base entries over LDAP, a clean stop, and
/// the run-time leftovers removed.
async fn build_template(programs: &Programs, root: &Path, suffix: &str) -> Result<()> {
    let layout = Layout {
        root: root.to_path_buf(),
    };
    let inf_dir = root.join("share").join("dirsrv").join("inf");
    std::fs::create_dir_all(&inf_dir).io_context(|| format!("creating {}", inf_dir.display()))?;
    std::fs::create_dir_all(root.join("tmp")).io_context(|| "creating tmp".into())?;
    let system = std::fs::read_to_string(&programs.defaults_inf)
        .io_context(|| format!("reading {}", programs.defaults_inf.display()))?;
    std::fs::write(inf_dir.join("defaults.inf"), render_defaults(&system, root))
        .io_context(|| "writing defaults.inf".into())?;
    // dscreate copies the schema and two config files from <sysconf_dir>/dirsrv, now in the folder.
    let sysconf = system
        .lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == "sysconf_dir")
        .map_or_else(|| "/etc".to_string(), |(_, v)| v.trim().to_string());
    let etc = root.join("etc").join("dirsrv");
    std::fs::create_dir_all(&etc).io_context(|| format!("creating {}", etc.display()))?;
    for sub in ["config", "schema"] {
        let from = Path::new(&sysconf).join("dirsrv").join(sub);
        run(
            Path::new("cp"),
            &["-a".as_ref(), from.as_os_str(), etc.as_os_str()],
            "copying 389's default configuration",
        )
        .await?;
    }
    let (port, tls_port) = two_free_ports()?;
    let inf = root.join("instance.inf");
    std::fs::write(&inf, render_inf(suffix, (port, tls_port)))
        .io_context(|| "writing instance.inf".into())?;

    let started = Instant::now();
    let output = tokio::process::Command::new(&programs.dscreate)
        .arg("from-file")
        .arg(&inf)
        .env("PREFIX", root)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .io_context(|| format!("running {}", programs.dscreate.display()))?;
    let _ = std::fs::remove_file(&inf);
    // dscreate started the server; own it now, so that any error below stops it.
    let pid = std::fs::read_to_string(layout.pid_file())
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
        .filter(|&pid| pid_alive(pid));
    let mut process = pid.map(|pid| ServerProcess::adopt("ns-slapd", pid, root));
    if !output.status.success() {
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        return Err(server_error(format!(
            "`dscreate from-file` failed ({}): {}",
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )));
    }
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "dscreate from-file done"
    );
    let Some(running) = process.as_mut() else {
        return Err(server_error(format!(
            "dscreate succeeded but {} names no running server: {}",
            layout.pid_file().display(),
            layout.tail()
        )));
    };

    let url = format!("ldap://127.0.0.1:{port}");
    let mut ldap = bind(&url, None, ADMIN_DN, DEFAULT_ADMIN_PASSWORD).await?;
    let configured = configure_template(&mut ldap, suffix).await;
    ldap.unbind().await.ok();
    configured?;
    running.stop(STOP_GRACE);
    wait_gone(running.pid(), STOP_GRACE);
    drop(process);

    // What a copy must not inherit: Berkeley DB's region files (rebuilt at start, ~100 MB), pid and
    // lock files (a reused PID would look like a running server), logs, backups of dse.ldif.
    for dir in [layout.db_dir(), layout.log_dir(), layout.config_dir()] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                let leftover = name.starts_with("__db.")
                    || dir == layout.log_dir()
                    || name == "dse.ldif.bak"
                    || name == "dse.ldif.startOK"
                    || name == "dse.ldif.tmp";
                if leftover && e.path().is_file() {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    let _ = std::fs::remove_file(layout.pid_file());
    clear_lock_files(&layout);
    // Copies replace the template's own folder name (in dse.ldif) with theirs.
    std::fs::write(root.join("template-path"), root.display().to_string())
        .io_context(|| "writing template-path".into())
}

/// The template's configuration, over LDAP as the Directory Manager: plugins, size limit, base
/// entries. Plugins take effect at the next start, which is every copy's first.
async fn configure_template(ldap: &mut Ldap, suffix: &str) -> Result<()> {
    let modify = |dn: &'static str, mods: Vec<Mod<&'static str>>| (dn, mods);
    let changes = [
        modify(
            "cn=MemberOf Plugin,cn=plugins,cn=config",
            vec![
                Mod::Replace("nsslapd-pluginEnabled", ["on"].into()),
                Mod::Replace("memberOfGroupAttr", ["member", "uniqueMember"].into()),
            ],
        ),
        modify(
            "cn=referential integrity postoperation,cn=plugins,cn=config",
            vec![
                Mod::Replace("nsslapd-pluginEnabled", ["on"].into()),
                Mod::Replace("referint-update-delay", ["0"].into()),
            ],
        ),
        modify(
            "cn=entryuuid,cn=plugins,cn=config",
            vec![Mod::Replace("nsslapd-pluginEnabled", ["on"].into())],
        ),
        // Like the slapd test directory: no size limit, for anyone.
        modify(
            "cn=config",
            vec![Mod::Replace("nsslapd-sizelimit", ["-1"].into())],
        ),
    ];
    for (dn, mods) in changes {
        ldap.modify(dn, mods)
            .await
            .and_then(|r| r.success())
            .map_err(ldap_error(format!("configuring {dn}")))?;
    }
    // dscreate adds a bare suffix entry (objectClass domain) even with `create_suffix_entry =
    // False`, and without an entryUUID: replace it with ours, as slapd's test directory has it.
    ldap.delete(suffix)
        .await
        .map_err(ldap_error(format!("deleting dscreate's {suffix}")))?;
    for (dn, attrs) in base_entries(suffix)? {
        let attrs: Vec<(&str, std::collections::HashSet<&str>)> = attrs
            .iter()
            .map(|(k, v)| (*k, v.iter().map(String::as_str).collect()))
            .collect();
        ldap.add(&dn, attrs)
            .await
            .and_then(|r| r.success())
            .map_err(ldap_error(format!("adding {dn}")))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Starting a copy

/// The copy's `dse.ldif`: unfolded (a folded line may split a path), the template's folder replaced
/// by the copy's, the ports set, TLS on, loopback listeners only, durability as asked, and ldapi off
/// when its socket path does not fit.
fn render_dse(
    template_dse: &str,
    template_root: &str,
    root: &Path,
    ports: [u16; 2],
    durable: bool,
    ldapi: bool,
) -> String {
    let unfolded = template_dse.replace("\r\n", "\n").replace("\n ", "");
    let moved = unfolded.replace(template_root, &root.display().to_string());
    let ours = [
        "nsslapd-port",
        "nsslapd-secureport",
        "nsslapd-security",
        "nsslapd-listenhost",
        "nsslapd-securelistenhost",
    ];
    let mut out = String::with_capacity(moved.len() + 256);
    for line in moved.lines() {
        let key = line
            .split_once(':')
            .map(|(k, _)| k.trim().to_ascii_lowercase())
            .unwrap_or_default();
        if key == "nsslapd-port" {
            // cn=config's own settings, in place of the template's.
            out.push_str(&format!(
                "nsslapd-port: {}\nnsslapd-secureport: {}\nnsslapd-security: on\n\
                 nsslapd-listenhost: 127.0.0.1\nnsslapd-securelistenhost: 127.0.0.1\n",
                ports[0], ports[1]
            ));
            continue;
        }
        if ours.contains(&key.as_str()) {
            continue;
        }
        match key.as_str() {
            "nsslapd-db-durable-transaction" => out.push_str(&format!(
                "nsslapd-db-durable-transaction: {}\n",
                if durable { "on" } else { "off" }
            )),
            "nsslapd-ldapilisten" if !ldapi => out.push_str("nsslapd-ldapilisten: off\n"),
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Imports the server certificate (with its key) and the CA into the copy's NSS database, whose
/// password is in `pwdfile.txt` beside it.
async fn install_certificates(programs: &Programs, layout: &Layout, tls: &TlsFiles) -> Result<()> {
    let cert_dir = layout.config_dir();
    let db = std::ffi::OsString::from(format!("sql:{}", cert_dir.display()));
    let pwdfile = cert_dir.join("pwdfile.txt");
    let p12 = tls.key.with_file_name("server.p12");
    let pass = format!("pass:{P12_PASSWORD}");
    run(
        &programs.openssl,
        &[
            "pkcs12".as_ref(),
            "-export".as_ref(),
            "-in".as_ref(),
            tls.cert.as_os_str(),
            "-inkey".as_ref(),
            tls.key.as_os_str(),
            "-name".as_ref(),
            SERVER_CERT_NICKNAME.as_ref(),
            "-out".as_ref(),
            p12.as_os_str(),
            "-passout".as_ref(),
            pass.as_ref(),
        ],
        "packing the server certificate",
    )
    .await?;
    run(
        &programs.certutil,
        &[
            "-A".as_ref(),
            "-d".as_ref(),
            db.as_os_str(),
            "-f".as_ref(),
            pwdfile.as_os_str(),
            "-n".as_ref(),
            CA_NICKNAME.as_ref(),
            "-t".as_ref(),
            "CT,,".as_ref(),
            "-a".as_ref(),
            "-i".as_ref(),
            tls.ca.as_os_str(),
        ],
        "trusting the test CA",
    )
    .await?;
    run(
        &programs.pk12util,
        &[
            "-i".as_ref(),
            p12.as_os_str(),
            "-d".as_ref(),
            db.as_os_str(),
            "-k".as_ref(),
            pwdfile.as_os_str(),
            "-W".as_ref(),
            P12_PASSWORD.as_ref(),
        ],
        "importing the server certificate",
    )
    .await
}

/// Copies the template into a fresh folder, configures it and starts it on free ports.
async fn start_from(
    programs: &Programs,
    template: &Path,
    options: &Ds389Options,
    started: Instant,
) -> Result<Ds389> {
    let dir = tempfile::Builder::new()
        .prefix("jim-ds389-")
        .tempdir()
        .io_context(|| "creating a temp dir for 389".into())?;
    let root = dir.path().to_path_buf();
    let source = template.join(".");
    run(
        Path::new("cp"),
        &["-a".as_ref(), source.as_os_str(), root.as_os_str()],
        "copying the 389 template",
    )
    .await?;
    let template_root = std::fs::read_to_string(root.join("template-path"))
        .io_context(|| "reading template-path".into())?;
    let layout = Layout { root: root.clone() };

    let ca = TestCa::new("jim-export 389-ds test CA")?;
    let names: Vec<&str> = options.tls_names.iter().map(String::as_str).collect();
    let tls = ca.server_cert(&names)?.write_to(&root.join("tls"))?;
    install_certificates(programs, &layout, &tls).await?;

    // sun_path holds 108 bytes including the terminating NUL.
    let socket = layout.socket();
    let ldapi = socket.as_os_str().len() <= 107;
    let ldapi_url =
        ldapi.then(|| format!("ldapi://{}", percent_encode(&socket.display().to_string())));
    let template_dse = std::fs::read_to_string(layout.dse())
        .io_context(|| format!("reading {}", layout.dse().display()))?;
    let mut attempt_errors = Vec::new();
    for _ in 0..START_ATTEMPTS {
        let (port, tls_port) = two_free_ports()?;
        let dse = render_dse(
            &template_dse,
            template_root.trim(),
            &root,
            [port, tls_port],
            options.durable,
            ldapi,
        );
        std::fs::write(layout.dse(), dse).io_context(|| "writing dse.ldif".into())?;
        match launch(&programs.ns_slapd, &layout, [port, tls_port]).await? {
            Launch::Started(process) => {
                tracing::debug!(
                    pid = process.pid(),
                    port,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    dir = %root.display(),
                    "389 Directory Server started"
                );
                return Ok(Ds389 {
                    process: Some(process),
                    ldap_url: format!("ldap://127.0.0.1:{port}"),
                    ldaps_url: format!("ldaps://127.0.0.1:{tls_port}"),
                    ldapi_url,
                    suffix: options.suffix.clone(),
                    admin_password: options.admin_password.clone(),
                    ca_pem: ca.cert_pem().to_string(),
                    ns_slapd: programs.ns_slapd.clone(),
                    layout,
                    ports: [port, tls_port],
                    started_in: started.elapsed(),
                    dir,
                });
            }
            Launch::Failed(message) => attempt_errors.push(message),
        }
    }
    Err(server_error(format!(
        "did not start after {START_ATTEMPTS} attempts on fresh ports: {}",
        attempt_errors.join("; ")
    )))
}

enum Launch {
    Started(ServerProcess),
    Failed(String),
}

/// Runs `ns-slapd -D <config dir> -i <pid file> -d 0` and waits until both ports accept
/// connections. `-d 0` keeps it in the foreground (no debug output), so its PID is known, and the
/// watchdog armed, from the moment it is spawned; it binds its ports first, so a taken port makes
/// it exit at once. It is a child of this process until this process exits; tokio reaps it once it
/// has exited.
async fn launch(ns_slapd: &Path, layout: &Layout, ports: [u16; 2]) -> Result<Launch> {
    // A pid file left by a killed server would name the dead process, and its lock file
    // (`server/<pid>`) would make ns-slapd refuse to start while that PID still answers `kill -0`
    // (a killed server stays a zombie until it is reaped). No server of this folder runs now.
    let _ = std::fs::remove_file(layout.pid_file());
    clear_lock_files(layout);
    let console = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(layout.console())
        .io_context(|| format!("opening {}", layout.console().display()))?;
    let console_err = console
        .try_clone()
        .io_context(|| "duplicating the console file".into())?;
    let mut child = tokio::process::Command::new(ns_slapd)
        .arg("-D")
        .arg(layout.config_dir())
        .arg("-i")
        .arg(layout.pid_file())
        .args(["-d", "0"])
        .stdin(std::process::Stdio::null())
        .stdout(console)
        .stderr(console_err)
        .spawn()
        .io_context(|| format!("running {}", ns_slapd.display()))?;
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .ok_or_else(|| server_error("ns-slapd exited before its PID could be read"))?;
    let mut process = ServerProcess::adopt("ns-slapd", pid, &layout.root);
    let deadline = Instant::now() + READY_WAIT;
    loop {
        if let Some(status) = child
            .try_wait()
            .io_context(|| "waiting for ns-slapd".into())?
        {
            return Ok(Launch::Failed(format!(
                "ns-slapd (pid {pid}) exited with {status} while starting: {}",
                layout.tail()
            )));
        }
        if listening(ports).await && answering(ports[0]).await {
            return Ok(Launch::Started(process));
        }
        if Instant::now() >= deadline {
            process.kill();
            wait_gone(pid, STOP_GRACE);
            return Ok(Launch::Failed(format!(
                "ns-slapd (pid {pid}) did not answer within {} s: {}",
                READY_WAIT.as_secs(),
                layout.tail()
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Removes the per-process lock files (`<lock dir>/server/<pid>`, …) a stopped or killed server
/// left behind.
fn clear_lock_files(layout: &Layout) {
    if let Ok(entries) = std::fs::read_dir(layout.lock_dir()) {
        for sub in entries.flatten() {
            if let Ok(files) = std::fs::read_dir(sub.path()) {
                for f in files.flatten() {
                    let _ = std::fs::remove_file(f.path());
                }
            }
        }
    }
}

/// True when the server answers an anonymous read of its root DSE on `port`. A port that accepts
/// a connection is no sign of a server that answers one: ns-slapd opens its listening sockets
/// early (privileged ports must be bound before it drops its privileges), and after a crash it
/// still has its database to recover. The kill-and-restart test once failed in CI on a connection
/// closed before its answer (`RecvError`), with readiness judged by the port alone.
async fn answering(port: u16) -> bool {
    let settings = LdapConnSettings::new().set_conn_timeout(ANSWER_WAIT);
    let Ok((conn, mut ldap)) =
        LdapConnAsync::with_settings(settings, &format!("ldap://127.0.0.1:{port}")).await
    else {
        return false;
    };
    ldap3::drive!(conn);
    let answered = crate::slapd::read_entry(ldap.with_timeout(ANSWER_WAIT), "", &["vendorName"])
        .await
        .is_ok_and(|root| root.is_some());
    ldap.unbind().await.ok();
    answered
}

/// True when both ports accept a connection.
async fn listening(ports: [u16; 2]) -> bool {
    for port in ports {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: &str = "; comment /etc/x\n[slapd]\nprefix = /usr\nwith_systemd = 1\n\
                            with_selinux = \nuser = dirsrv\nsbin_dir = /usr/sbin\n\
                            sysconf_dir = /etc\nrun_dir = /run/dirsrv\n\
                            db_home_dir = /dev/shm/slapd-{instance_name}\ntmp_dir = /tmp\n\
                            inst_dir = /usr/lib/x86_64-linux-gnu/dirsrv/slapd-{instance_name}\n\
                            plugin_dir = /usr/lib/x86_64-linux-gnu/dirsrv/plugins\n\
                            local_state_dir = /var\n";

    #[test]
    fn defaults_move_every_writable_path_into_the_prefix() {
        let out = render_defaults(DEFAULTS, Path::new("/p"));
        for expected in [
            "; comment /etc/x",
            "prefix = /p",
            "with_systemd = 0",
            "with_selinux = no",
            "user = root",
            "sbin_dir = /usr/sbin",
            "sysconf_dir = /p/etc",
            "run_dir = /p/run/dirsrv",
            "db_home_dir = /p/dev/shm/slapd-{instance_name}",
            "tmp_dir = /p/tmp",
            "inst_dir = /p/lib/slapd-{instance_name}",
            "plugin_dir = /usr/lib/x86_64-linux-gnu/dirsrv/plugins",
            "local_state_dir = /p/var",
        ] {
            assert!(out.lines().any(|l| l == expected), "{expected}:\n{out}");
        }
    }

    #[test]
    fn inf_turns_systemd_and_the_self_signed_certificate_off() {
        let inf = render_inf("dc=a,dc=test", (1, 2));
        for line in [
            "systemd = False",
            "selinux = False",
            "port = 1",
            "secure_port = 2",
            "self_sign_cert = False",
            "suffix = dc=a,dc=test",
            "root_dn = cn=Directory Manager",
        ] {
            assert!(inf.lines().any(|l| l == line), "{line}:\n{inf}");
        }
    }

    #[test]
    fn dse_points_at_the_copy_and_listens_on_loopback_with_tls() {
        let template = "dn: cn=config\nnsslapd-errorlog: /tmp/jim-testkit-ds389/staging-1/var/lo\n g/errors\n\
                        nsslapd-port: 38911\nnsslapd-securePort: 38912\nnsslapd-security: off\n\
                        nsslapd-ldapilisten: on\n\n\
                        dn: cn=config,cn=ldbm database,cn=plugins,cn=config\n\
                        nsslapd-db-durable-transaction: on\n";
        let dse = render_dse(
            template,
            "/tmp/jim-testkit-ds389/staging-1",
            Path::new("/d"),
            [5, 6],
            false,
            true,
        );
        assert!(
            dse.contains("nsslapd-errorlog: /d/var/log/errors\n"),
            "{dse}"
        );
        assert!(!dse.contains("staging-1"));
        for line in [
            "nsslapd-port: 5",
            "nsslapd-secureport: 6",
            "nsslapd-security: on",
            "nsslapd-listenhost: 127.0.0.1",
            "nsslapd-securelistenhost: 127.0.0.1",
            "nsslapd-db-durable-transaction: off",
            "nsslapd-ldapilisten: on",
        ] {
            assert_eq!(
                dse.lines().filter(|l| *l == line).count(),
                1,
                "{line}:\n{dse}"
            );
        }
        assert!(!dse.contains("38911") && !dse.contains("security: off"));
        let durable = render_dse(template, "/x", Path::new("/d"), [5, 6], true, false);
        assert!(durable.contains("nsslapd-db-durable-transaction: on\n"));
        assert!(durable.contains("nsslapd-ldapilisten: off\n"));
    }

    #[test]
    fn schema_definition_names() {
        assert_eq!(
            definition_names(
                "( 2.5.6.9 NAME 'groupOfNames' SUP top STRUCTURAL MUST cn MAY ( member ) )"
            ),
            ["groupOfNames"]
        );
        assert_eq!(
            definition_names("( 2.5.4.3 NAME ( 'cn' 'commonName' ) SUP name )"),
            ["cn", "commonName"]
        );
        assert!(definition_names("( 1.2.3 DESC 'no name' )").is_empty());
    }

    #[test]
    fn options_are_checked_and_the_password_stays_hidden() {
        let options = Ds389Options {
            admin_password: "hunter2-long".into(),
            ..Ds389Options::default()
        };
        assert!(!format!("{options:?}").contains("hunter2"));
        assert!(validate(&options).is_ok());
        let short = Ds389Options {
            admin_password: "short".into(),
            ..Ds389Options::default()
        };
        assert!(validate(&short).is_err());
        let bad_suffix = Ds389Options {
            suffix: "cn=x,dc=org".into(),
            ..Ds389Options::default()
        };
        assert!(validate(&bad_suffix).is_err());
        assert_eq!(
            file_safe("389-Directory/2.3.1 B2025"),
            "389_directory_2.3.1_b2025"
        );
    }
}
