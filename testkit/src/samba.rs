//! A throwaway Samba Active Directory domain controller, shaped like the target directory of JIM's
//! Scenario 8 (`../shared/jim/tests-and-scale.md` §2.3): realm `GENTIAN.LOCAL`, NetBIOS domain
//! `GENTIAN`, base DN `DC=gentian,DC=local`, admin `Administrator` / `Test@123!`.
//!
//! ```no_run
//! # async fn demo() -> jim_export_testkit::Result<()> {
//! use jim_export_testkit::samba::SambaAd;
//! // `None` (after a printed skip message) outside CI when Samba cannot run here; a panic under CI.
//! let Some(dc) = SambaAd::shared().await else { return Ok(()) };
//! let config = dc.directory_config(); // LDAPS, our CA, simple bind as Administrator@gentian.local
//! let entry = dc.read_entry(dc.admin_dn(), &["objectGUID"]).await?; // raw bytes
//! let guid = dc.object_guid(dc.admin_dn()).await?; // Microsoft byte order -> Uuid
//! # let _ = (config, entry, guid); Ok(()) }
//! ```
//!
//! ## The API
//!
//! - Start: [`SambaAd::shared`] (`Option<&'static SambaAd>`: skip or panic, see below) and
//!   [`SambaAd::try_shared`] (`Result`: the same DC, the reason as an error instead). One DC per test
//!   process, started on first use and shared by its tests (give each test its own OU).
//! - Where: [`SambaAd::ldaps_url`] (`ldaps://127.0.0.1:636`), [`SambaAd::ldap_url`]
//!   (`ldap://127.0.0.1:389`, for StartTLS; simple binds over it without TLS are refused),
//!   [`SambaAd::ca_pem`] / [`SambaAd::tls_client_config`] (the CA that certifies the server for
//!   `127.0.0.1` and `localhost`), [`SambaAd::base_dn`], [`SambaAd::realm`], [`SambaAd::domain`]
//!   (NetBIOS), [`SambaAd::dns_domain`], [`SambaAd::users_ou`] and [`SambaAd::groups_ou`] (created at
//!   start, Scenario 8's `OU=Users,OU=CorpManaged` and `OU=Entitlements,OU=CorpManaged`).
//! - Who: [`SambaAd::admin_upn`], [`SambaAd::admin_dn`], [`SambaAd::admin_password`],
//!   [`SambaAd::ntlm_user`] and [`SambaAd::ntlm_domain`] (the same account, for an NTLM bind).
//! - Ready-made configurations: [`SambaAd::directory_config`] (LDAPS + simple bind by UPN),
//!   [`SambaAd::starttls_directory_config`] (StartTLS on 389 + simple bind by UPN) and
//!   [`SambaAd::ntlm_directory_config`] (LDAPS + NTLM bind), all verifying the server against
//!   [`SambaAd::ca_pem`].
//! - Helpers as the admin over verified LDAPS: [`SambaAd::admin_ldap`], [`SambaAd::read_entry`]
//!   (values as raw bytes, so `objectGUID` is always its 16 bytes), [`SambaAd::object_guid`],
//!   [`SambaAd::count_entries`], [`SambaAd::ensure_ou`] (an OU and its missing parents) and
//!   [`SambaAd::delete_tree`] (a subtree, with AD's tree-delete control);
//!   [`SambaAd::add_user_with_object_guid`] (a user with chosen objectGUID bytes, written through
//!   Samba's Python bindings: for GUIDs whose bytes are valid UTF-8).
//!
//! ## How it runs
//!
//! - `samba-tool domain provision` (`--dns-backend=NONE`, `server services = ldap`, loopback only)
//!   runs once per machine and Samba version into a template folder beside the lock (about 6 s);
//!   each start copies the template into a fresh temp folder (`<dir>`), adds
//!   `pid directory = <dir>`, a log file in `<dir>`, `ldb:nosync = true` (tests only: no fsync),
//!   `ldap server require strong auth = allow_sasl_over_tls` (NTLM over TLS without signing or
//!   sealing, as Windows AD accepts it and ldap3 does it; simple binds without TLS stay refused) and
//!   TLS with a certificate for `127.0.0.1` from a fresh [`TestCa`], then runs
//!   `samba -s <dir>/etc/smb.conf -D` and waits until an LDAPS bind verified against that CA works
//!   (well under a second).
//! - The server is stopped by the PID in `<dir>/samba.pid` (never by name: its processes rename
//!   themselves) when the process exits or the value is dropped; a watchdog stops it if the test
//!   process dies first.
//! - Samba's LDAP ports are fixed (389 and 636), so one test process at a time runs a DC: a file lock
//!   (`flock`) on `jim-testkit-samba/lock` in the system's temporary folder (`JIM_TEST_SAMBA_STATE_DIR`
//!   moves the folder for processes whose `TMPDIR` differs), held for as long as the DC runs. Another
//!   process waits for it (up to `JIM_TEST_SAMBA_LOCK_WAIT_SECS`, default 900 s). The lock holder
//!   stops a DC a crashed predecessor left behind (recorded in `owner.pid` there) and checks that
//!   nothing else holds the ports.
//!
//! ## When Samba cannot run
//!
//! Samba not installed (`samba`, `samba-tool`; install with `scripts/install-deps.sh` or `apt-get
//! install samba samba-ad-dc winbind krb5-user`), not running as root (the ports are privileged), the
//! ports held by another program, or the lock not obtained in time: outside CI (`CI` unset, empty,
//! `0` or `false`) [`SambaAd::shared`] prints `SKIPPED (Samba AD): <reason>` on stderr and returns
//! `None`; under CI it panics with the reason. A DC that is installed but fails to provision or start
//! is a failure everywhere.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jim_export::config::{Bind, DirectoryConfig, DirectoryTls, DirectoryTlsMode, Secret};
use jim_export::directory::entry::{RawEntry, parse_entry};
use ldap3::controls::RawControl;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope};
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::error::{IoContext, Result, TestkitError};
use crate::process::{ServerProcess, find_program, is_root, log_tail, pid_alive};
use crate::tls::{TestCa, client_config};

/// The Kerberos realm (Scenario 8's Samba target domain).
pub const REALM: &str = "GENTIAN.LOCAL";
/// The DNS domain.
pub const DNS_DOMAIN: &str = "gentian.local";
/// The NetBIOS domain name, for NTLM (`GENTIAN\Administrator`).
pub const DOMAIN: &str = "GENTIAN";
/// The domain's base DN (the default naming context).
pub const BASE_DN: &str = "DC=gentian,DC=local";
/// The administrator's account name (sAMAccountName).
pub const ADMIN_USER: &str = "Administrator";
/// The administrator's password (JIM's Samba images use the same).
pub const ADMIN_PASSWORD: &str = "Test@123!";
/// Scenario 8's OU for managed objects, created at start.
pub const CORP_MANAGED_OU: &str = "OU=CorpManaged,DC=gentian,DC=local";
/// Scenario 8's user OU, created at start.
pub const USERS_OU: &str = "OU=Users,OU=CorpManaged,DC=gentian,DC=local";
/// Scenario 8's group OU, created at start.
pub const GROUPS_OU: &str = "OU=Entitlements,OU=CorpManaged,DC=gentian,DC=local";
/// Samba's LDAP port (fixed: Samba has no option to move it).
pub const LDAP_PORT: u16 = 389;
/// Samba's LDAPS port (fixed).
pub const LDAPS_PORT: u16 = 636;

/// Adds a user with a chosen objectGUID straight into sam.ldb (args: smb.conf, DN, sAMAccountName,
/// GUID bytes in hex). The relax control is what lets an add carry objectGUID.
const ADD_WITH_GUID_PY: &str = r#"
import sys, ldb
from samba.samdb import SamDB
from samba.param import LoadParm
from samba.auth import system_session
conf, dn, sam, guid = sys.argv[1:5]
lp = LoadParm()
lp.load(conf)
db = SamDB(url=lp.samdb_url(), session_info=system_session(), lp=lp)
m = ldb.Message()
m.dn = ldb.Dn(db, dn)
m["objectClass"] = ldb.MessageElement(["user"], ldb.FLAG_MOD_ADD, "objectClass")
m["sAMAccountName"] = ldb.MessageElement([sam], ldb.FLAG_MOD_ADD, "sAMAccountName")
m["objectGUID"] = ldb.MessageElement([bytes.fromhex(guid)], ldb.FLAG_MOD_ADD, "objectGUID")
db.add(m, controls=["relax:0"])
"#;

/// AD's tree-delete control: deletes an entry with its subtree.
const TREE_DELETE_OID: &str = "1.2.840.113556.1.4.805";
const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(900);
const PORTS_FREE_WAIT: Duration = Duration::from_secs(15);
const READY_WAIT: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A running Samba AD domain controller that this process started (see the module docs).
pub struct SambaAd {
    /// `None` once stopped. Stopped before the lock is released and the folder removed.
    process: Option<ServerProcess>,
    ca_pem: String,
    ldap_url: String,
    ldaps_url: String,
    admin_upn: String,
    admin_dn: String,
    lock: Option<SambaLock>,
    dir: tempfile::TempDir,
}

impl fmt::Debug for SambaAd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SambaAd")
            .field("ldaps_url", &self.ldaps_url)
            .field("base_dn", &BASE_DN)
            .field("admin_upn", &self.admin_upn)
            .field("admin_password", &"***")
            .field("dir", &self.dir.path())
            .field("pid", &self.pid())
            .finish_non_exhaustive()
    }
}

impl Drop for SambaAd {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            stop_group(&mut process);
        }
        if let Some(lock) = self.lock.take() {
            lock.release();
        }
    }
}

/// Why there is no DC: `unavailable` reasons (Samba missing, ports taken, lock busy) are skips
/// outside CI; the others are failures everywhere.
#[derive(Debug)]
struct Failure {
    unavailable: bool,
    message: String,
}

impl Failure {
    fn unavailable(message: impl Into<String>) -> Self {
        Self {
            unavailable: true,
            message: message.into(),
        }
    }

    fn broken(error: impl fmt::Display) -> Self {
        Self {
            unavailable: false,
            message: error.to_string(),
        }
    }
}

static SHARED: OnceCell<std::result::Result<SambaAd, Failure>> = OnceCell::const_new();

fn server_error(message: impl Into<String>) -> TestkitError {
    TestkitError::Server {
        server: "samba",
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

/// True under CI (`CI` set to anything but empty, `0` or `false`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| {
        let v = v.trim();
        !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false"))
    })
}

impl SambaAd {
    /// The DC shared by every test of this test process, started on first use. `None` after
    /// printing `SKIPPED (Samba AD): <reason>` when Samba cannot run here and `CI` is unset; panics
    /// with the reason under CI, and everywhere when the DC fails to provision or start.
    pub async fn shared() -> Option<&'static SambaAd> {
        match SHARED.get_or_init(launch).await {
            Ok(dc) => Some(dc),
            Err(f) if f.unavailable && !in_ci() => {
                eprintln!("SKIPPED (Samba AD): {}", f.message);
                None
            }
            Err(f) if f.unavailable => panic!(
                "Samba AD test DC unavailable under CI (a skip is a failure there): {}",
                f.message
            ),
            Err(f) => panic!("Samba AD test DC failed: {}", f.message),
        }
    }

    /// The same DC as [`SambaAd::shared`], or why there is none as an error (never a panic or a
    /// skip): for examples and tools.
    pub async fn try_shared() -> Result<&'static SambaAd> {
        match SHARED.get_or_init(launch).await {
            Ok(dc) => Ok(dc),
            Err(f) => Err(server_error(f.message.clone())),
        }
    }

    /// A DC of the caller's own, fresh from the provisioned template (about a second once the
    /// template exists), stopped when dropped; an error when Samba cannot run here. It takes the
    /// machine-wide lock, so it waits for any other DC of this machine (the shared one included) to
    /// stop first: for benchmarks that want each measurement on an unused DC.
    pub async fn start() -> Result<SambaAd> {
        launch().await.map_err(|f| server_error(f.message))
    }

    /// `ldaps://127.0.0.1:636`.
    pub fn ldaps_url(&self) -> &str {
        &self.ldaps_url
    }

    /// `ldap://127.0.0.1:389`: for StartTLS (Samba refuses simple binds without TLS here).
    pub fn ldap_url(&self) -> &str {
        &self.ldap_url
    }

    /// The CA certificate (PEM) that certifies the server for `127.0.0.1` and `localhost`.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A `rustls` client configuration trusting only [`SambaAd::ca_pem`].
    pub fn tls_client_config(&self) -> Result<Arc<rustls::ClientConfig>> {
        client_config(&self.ca_pem)
    }

    /// The base DN, `DC=gentian,DC=local`.
    pub fn base_dn(&self) -> &str {
        BASE_DN
    }

    /// The Kerberos realm, `GENTIAN.LOCAL`.
    pub fn realm(&self) -> &str {
        REALM
    }

    /// The NetBIOS domain, `GENTIAN`.
    pub fn domain(&self) -> &str {
        DOMAIN
    }

    /// The DNS domain, `gentian.local`.
    pub fn dns_domain(&self) -> &str {
        DNS_DOMAIN
    }

    /// `OU=Users,OU=CorpManaged,DC=gentian,DC=local` (exists from the start).
    pub fn users_ou(&self) -> &str {
        USERS_OU
    }

    /// `OU=Entitlements,OU=CorpManaged,DC=gentian,DC=local` (exists from the start).
    pub fn groups_ou(&self) -> &str {
        GROUPS_OU
    }

    /// `Administrator@gentian.local`, the admin's UPN (a simple-bind name AD accepts).
    pub fn admin_upn(&self) -> &str {
        &self.admin_upn
    }

    /// `CN=Administrator,CN=Users,DC=gentian,DC=local`.
    pub fn admin_dn(&self) -> &str {
        &self.admin_dn
    }

    /// The admin's password.
    pub fn admin_password(&self) -> &str {
        ADMIN_PASSWORD
    }

    /// The user name for an NTLM bind (`Administrator`; its domain is [`SambaAd::ntlm_domain`]).
    pub fn ntlm_user(&self) -> &str {
        ADMIN_USER
    }

    /// The domain for an NTLM bind (`GENTIAN`).
    pub fn ntlm_domain(&self) -> &str {
        DOMAIN
    }

    /// LDAPS on 636 verified against [`SambaAd::ca_pem`], simple bind as [`SambaAd::admin_upn`];
    /// other fields at their defaults (the dialect is detected).
    pub fn directory_config(&self) -> DirectoryConfig {
        let mut config = DirectoryConfig::simple(&self.ldaps_url, &self.admin_upn, ADMIN_PASSWORD);
        config.tls = self.tls(DirectoryTlsMode::Ldaps);
        config
    }

    /// StartTLS on 389 verified against [`SambaAd::ca_pem`], simple bind as
    /// [`SambaAd::admin_upn`].
    pub fn starttls_directory_config(&self) -> DirectoryConfig {
        let mut config = DirectoryConfig::simple(&self.ldap_url, &self.admin_upn, ADMIN_PASSWORD);
        config.tls = self.tls(DirectoryTlsMode::StartTls);
        config
    }

    /// LDAPS on 636 verified against [`SambaAd::ca_pem`], NTLM bind as `GENTIAN\Administrator`.
    pub fn ntlm_directory_config(&self) -> DirectoryConfig {
        let mut config = self.directory_config();
        config.bind = Bind::Ntlm {
            username: ADMIN_USER.to_string(),
            domain: Some(DOMAIN.to_string()),
            password: Secret::new(ADMIN_PASSWORD),
        };
        config
    }

    fn tls(&self, mode: DirectoryTlsMode) -> DirectoryTls {
        DirectoryTls {
            mode: Some(mode),
            ca_pem: Some(self.ca_pem.clone()),
            ..DirectoryTls::default()
        }
    }

    /// A connection bound as the admin (simple bind by UPN) over LDAPS verified against our CA.
    pub async fn admin_ldap(&self) -> Result<Ldap> {
        admin_bind(&self.ldaps_url, &self.ca_pem, &self.admin_upn).await
    }

    /// Reads the entry `dn` with `attrs` (empty: all user attributes and the operational ones AD
    /// returns for `+`), every value as raw bytes. `Ok(None)` when it does not exist.
    pub async fn read_entry(&self, dn: &str, attrs: &[&str]) -> Result<Option<RawEntry>> {
        let mut ldap = self.admin_ldap().await?;
        let entry = read_raw_entry(&mut ldap, dn, attrs).await;
        ldap.unbind().await.ok();
        entry
    }

    /// The entry's `objectGUID` (16 bytes, Microsoft byte order: the first three fields
    /// little-endian) as a `Uuid` printed the way AD prints it. `Ok(None)` when the entry does not
    /// exist; an error when the value is not 16 bytes.
    pub async fn object_guid(&self, dn: &str) -> Result<Option<Uuid>> {
        let Some(entry) = self.read_entry(dn, &["objectGUID"]).await? else {
            return Ok(None);
        };
        let bytes = entry
            .values("objectGUID")
            .first()
            .ok_or_else(|| server_error(format!("{dn} has no objectGUID")))?;
        let array: [u8; 16] = bytes.as_slice().try_into().map_err(|_| {
            server_error(format!(
                "{dn}: objectGUID has {} bytes, not 16",
                bytes.len()
            ))
        })?;
        Ok(Some(Uuid::from_bytes_le(array)))
    }

    /// Counts the entries in the subtree at `base` (the base included) matching `filter`; `Ok(0)`
    /// when `base` does not exist.
    pub async fn count_entries(&self, base: &str, filter: &str) -> Result<usize> {
        let mut ldap = self.admin_ldap().await?;
        let count = crate::slapd::count_entries(&mut ldap, base, filter).await;
        ldap.unbind().await.ok();
        count
    }

    /// Creates the organizational unit `dn` and any missing `OU=` parents below the base DN
    /// (existing ones are left as they are).
    pub async fn ensure_ou(&self, dn: &str) -> Result<()> {
        let mut ldap = self.admin_ldap().await?;
        let result = ensure_ou(&mut ldap, dn).await;
        ldap.unbind().await.ok();
        result
    }

    /// Deletes `dn` with everything below it (AD's tree-delete control); a missing `dn` is fine.
    pub async fn delete_tree(&self, dn: &str) -> Result<()> {
        let mut ldap = self.admin_ldap().await?;
        let result = ldap
            .with_controls(RawControl {
                ctype: TREE_DELETE_OID.to_string(),
                crit: true,
                val: None,
            })
            .delete(dn)
            .await
            .map_err(ldap_error(format!("deleting the tree {dn}")));
        ldap.unbind().await.ok();
        let result = result?;
        // 32: noSuchObject.
        if result.rc != 32 {
            result
                .success()
                .map_err(ldap_error(format!("deleting the tree {dn}")))?;
        }
        Ok(())
    }

    /// Adds a `user` named `sam_account_name` at `dn` with the given `objectGUID` bytes, which AD
    /// never lets an LDAP client choose: written into the DC's database through Samba's own Python
    /// bindings with the relax control. For the objectGUID whose 16 bytes happen to be valid UTF-8
    /// (JIM's defect `ldap-export.md` §11.9), e.g. `*b"ABCDEFGHIJKLMNOP"`.
    pub async fn add_user_with_object_guid(
        &self,
        dn: &str,
        sam_account_name: &str,
        object_guid: [u8; 16],
    ) -> Result<()> {
        let samba_tool = find_program("samba-tool")
            .ok_or_else(|| server_error("samba-tool is not installed"))?;
        // Samba's Python modules belong to the interpreter samba-tool runs with.
        let shebang = std::fs::read_to_string(&samba_tool)
            .io_context(|| format!("reading {}", samba_tool.display()))?;
        let python = shebang
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("#!"))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or("python3")
            .to_string();
        let hex: String = object_guid.iter().map(|b| format!("{b:02x}")).collect();
        let output = tokio::process::Command::new(&python)
            .arg("-c")
            .arg(ADD_WITH_GUID_PY)
            .arg(self.dir().join("etc").join("smb.conf"))
            .arg(dn)
            .arg(sam_account_name)
            .arg(hex)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .io_context(|| format!("running {python}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(server_error(format!(
                "adding {dn} with a chosen objectGUID failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )))
        }
    }

    /// The DC's folder (`etc/smb.conf`, `private/`, `tls/`, `samba.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `samba` root process's PID while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.process.as_ref().map(ServerProcess::pid)
    }

    /// True while the DC's root process exists.
    pub fn is_running(&self) -> bool {
        self.pid().is_some_and(pid_alive)
    }
}

/// Reads one entry with raw values (see [`SambaAd::read_entry`]) over any connection.
pub async fn read_raw_entry(ldap: &mut Ldap, dn: &str, attrs: &[&str]) -> Result<Option<RawEntry>> {
    let attrs: Vec<&str> = if attrs.is_empty() {
        vec!["*", "+"]
    } else {
        attrs.to_vec()
    };
    let ldap3::SearchResult(entries, result) = ldap
        .search(dn, Scope::Base, "(objectClass=*)", attrs)
        .await
        .map_err(ldap_error(format!("reading {dn}")))?;
    if result.rc == 32 {
        return Ok(None);
    }
    result
        .success()
        .map_err(ldap_error(format!("reading {dn}")))?;
    Ok(entries.into_iter().find_map(|e| parse_entry(e.0)))
}

async fn ensure_ou(ldap: &mut Ldap, dn: &str) -> Result<()> {
    let lower = dn.to_ascii_lowercase();
    let base = BASE_DN.to_ascii_lowercase();
    let Some(prefix) = lower
        .strip_suffix(&base)
        .map(|p| &dn[..p.len()])
        .map(|p| p.trim_end_matches(','))
    else {
        return Err(server_error(format!("{dn} is not below {BASE_DN}")));
    };
    // Parents first: the RDNs from the base outwards. OU names here never hold escaped commas.
    let rdns: Vec<&str> = prefix.split(',').filter(|r| !r.is_empty()).collect();
    let mut current = BASE_DN.to_string();
    for rdn in rdns.iter().rev() {
        let Some(name) = rdn
            .split_once('=')
            .filter(|(a, _)| a.trim().eq_ignore_ascii_case("ou"))
            .map(|(_, v)| v.trim())
        else {
            return Err(server_error(format!("{rdn} in {dn} is not an OU= RDN")));
        };
        current = format!("OU={name},{current}");
        let result = ldap
            .add(
                &current,
                vec![
                    ("objectClass", ["top", "organizationalUnit"].into()),
                    ("ou", [name].into()),
                ],
            )
            .await
            .map_err(ldap_error(format!("adding {current}")))?;
        // 68: entryAlreadyExists.
        if result.rc != 68 {
            result
                .success()
                .map_err(ldap_error(format!("adding {current}")))?;
        }
    }
    Ok(())
}

async fn admin_bind(url: &str, ca_pem: &str, upn: &str) -> Result<Ldap> {
    let settings = LdapConnSettings::new()
        .set_conn_timeout(CONNECT_TIMEOUT)
        .set_config(client_config(ca_pem)?);
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, url)
        .await
        .map_err(ldap_error(format!("connecting to {url}")))?;
    ldap3::drive!(conn);
    ldap.simple_bind(upn, ADMIN_PASSWORD)
        .await
        .and_then(|r| r.success())
        .map_err(ldap_error(format!("binding as {upn}")))?;
    Ok(ldap)
}

/// Starts the shared DC, sorting what goes wrong into skips and failures.
async fn launch() -> std::result::Result<SambaAd, Failure> {
    let started = Instant::now();
    let programs = find_programs().ok_or_else(|| {
        Failure::unavailable(
            "samba and samba-tool are not installed (run scripts/install-deps.sh, or \
             `apt-get install samba samba-ad-dc winbind krb5-user`)",
        )
    })?;
    if !is_root() {
        return Err(Failure::unavailable(
            "the tests do not run as root, and Samba's LDAP ports (389, 636) are privileged",
        ));
    }
    let lock = tokio::task::spawn_blocking(SambaLock::acquire)
        .await
        .map_err(Failure::broken)??;
    lock.stop_orphan();
    if let Some(port) = wait_ports_free(PORTS_FREE_WAIT).await {
        return Err(Failure::unavailable(format!(
            "port {port} on 127.0.0.1 is held by another program (Samba needs 389 and 636; \
             `ss -ltnp 'sport = :{port}'` names it)"
        )));
    }
    let template = ensure_template(&programs, &lock)
        .await
        .map_err(Failure::broken)?;
    let dc = start_from(&programs, &template, lock)
        .await
        .map_err(Failure::broken)?;
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        pid = dc.pid(),
        "Samba AD test DC ready"
    );
    Ok(dc)
}

struct Programs {
    samba: PathBuf,
    samba_tool: PathBuf,
}

fn find_programs() -> Option<Programs> {
    Some(Programs {
        samba: find_program("samba")?,
        samba_tool: find_program("samba-tool")?,
    })
}

/// The machine-wide folder for the lock, the owner record and the provisioned templates:
/// `jim-testkit-samba` in the system's temporary folder. The ports it guards are machine-wide, so
/// every process must find the same lock: processes whose `TMPDIR` differs share it through
/// `JIM_TEST_SAMBA_STATE_DIR` (should they not, the lock holder's check that the ports are free still
/// refuses to start a second DC, with a message that says how to find the port's holder).
fn state_dir() -> PathBuf {
    std::env::var_os("JIM_TEST_SAMBA_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("jim-testkit-samba"))
}

/// The cross-process lock: an `flock` on `<state>/lock`, held while this process runs a DC.
struct SambaLock {
    file: File,
    dir: PathBuf,
}

impl SambaLock {
    fn acquire() -> std::result::Result<SambaLock, Failure> {
        use std::os::fd::AsRawFd;
        let dir = state_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| Failure::broken(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Failure::broken(format!("opening {}: {e}", path.display())))?;
        let wait = std::env::var("JIM_TEST_SAMBA_LOCK_WAIT_SECS")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map_or(DEFAULT_LOCK_WAIT, Duration::from_secs);
        let deadline = Instant::now() + wait;
        let mut told = false;
        loop {
            #[allow(unsafe_code)]
            // SAFETY: flock on a descriptor we own; the lock goes with the file.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(SambaLock { file, dir });
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(Failure::broken(format!(
                    "locking {}: {err}",
                    path.display()
                )));
            }
            if Instant::now() >= deadline {
                return Err(Failure::unavailable(format!(
                    "another test process held the Samba lock {} for more than {} s",
                    path.display(),
                    wait.as_secs()
                )));
            }
            if !told {
                eprintln!(
                    "waiting for the Samba AD test DC lock {} (another test process runs one)",
                    path.display()
                );
                told = true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn owner_file(&self) -> PathBuf {
        self.dir.join("owner.pid")
    }

    /// Stops a DC recorded by a process that died without stopping it (the lock is ours, so its
    /// owner is gone). Only a process that still looks like Samba is signalled: PIDs get reused.
    fn stop_orphan(&self) {
        let Ok(text) = std::fs::read_to_string(self.owner_file()) else {
            return;
        };
        let mut lines = text.lines();
        let pid = lines.next().and_then(|l| l.trim().parse::<i32>().ok());
        let dir = lines.next().map(PathBuf::from);
        if let Some(pid) = pid {
            // The root process may be gone (killed by a watchdog) while its workers still hold the
            // ports; they keep its process group.
            let members = group_members(pid);
            if !members.is_empty() && members.iter().all(|&m| looks_like_samba(m)) {
                eprintln!(
                    "stopping a Samba AD test DC (pid {pid}) left by a previous test process"
                );
                terminate_group(pid);
            }
        }
        // Only our own kind of folder, in case the record was tampered with.
        if let Some(dir) = dir.filter(|d| {
            d.parent() == Some(std::env::temp_dir().as_path())
                && d.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("jim-samba-"))
        }) {
            let _ = std::fs::remove_dir_all(dir);
        }
        let _ = std::fs::remove_file(self.owner_file());
    }

    /// Records the running DC (root PID and folder) for a successor to clean up if this process
    /// dies without stopping it.
    fn record_owner(&self, pid: i32, dir: &Path) {
        let _ = std::fs::write(self.owner_file(), format!("{pid}\n{}\n", dir.display()));
    }

    fn release(self) {
        let _ = std::fs::remove_file(self.owner_file());
        drop(self.file);
    }
}

fn looks_like_samba(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.windows(5).any(|w| w == b"samba"))
}

/// Stops Samba's root process and waits until its whole process group (the pre-forked workers) is
/// gone, so the ports are free when this returns.
fn stop_group(process: &mut ServerProcess) {
    process.stop(STOP_GRACE);
    wait_group_gone(process.pid());
}

/// SIGTERM to a root process we do not own a handle for (a crashed predecessor's), then as
/// [`stop_group`].
fn terminate_group(pgid: i32) {
    #[allow(unsafe_code)]
    // SAFETY: every member of the group was just seen running a samba program.
    unsafe {
        libc::kill(-pgid, libc::SIGTERM);
    }
    wait_group_gone(pgid);
}

/// The processes whose process group is `pgid` (from `/proc/<pid>/stat`).
fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // Fields after the command: state, ppid, pgrp, ...
                    let rest = stat.rsplit_once(") ")?.1.to_string();
                    rest.split_whitespace().nth(2)?.parse::<i32>().ok()
                })
                == Some(pgid)
        })
        .collect()
}

fn wait_group_gone(pid: i32) {
    let deadline = Instant::now() + STOP_GRACE;
    while group_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if group_alive(pid) {
        #[allow(unsafe_code)]
        // SAFETY: the group is the one `samba -D` created with its root process as leader.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while group_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// True while a process of the group runs (zombies hold no sockets and do not count).
fn group_alive(pgid: i32) -> bool {
    pgid > 0 && group_members(pgid).into_iter().any(pid_alive)
}

/// `None` once nothing accepts connections on 127.0.0.1:389 and :636, else the busy port after
/// `wait`.
async fn wait_ports_free(wait: Duration) -> Option<u16> {
    let deadline = Instant::now() + wait;
    loop {
        let mut busy = None;
        for port in [LDAP_PORT, LDAPS_PORT] {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                busy = Some(port);
                break;
            }
        }
        if busy.is_none() || Instant::now() >= deadline {
            return busy;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The provisioned template for this Samba version, provisioning it when missing (under the lock).
async fn ensure_template(programs: &Programs, lock: &SambaLock) -> Result<PathBuf> {
    let version = tokio::process::Command::new(&programs.samba)
        .arg("-V")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .io_context(|| format!("running {} -V", programs.samba.display()))?;
    let version: String = String::from_utf8_lossy(&version.stdout)
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let template = lock
        .dir
        .join(format!("template-{version}-{}", REALM.to_ascii_lowercase()));
    if template.join("etc").join("smb.conf").is_file() {
        return Ok(template);
    }
    // Under the lock nobody else provisions: staging folders are leftovers of killed processes.
    if let Ok(entries) = std::fs::read_dir(&lock.dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("staging-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let staging = lock.dir.join(format!("staging-{}", std::process::id()));
    std::fs::create_dir_all(&staging).io_context(|| format!("creating {}", staging.display()))?;
    let started = Instant::now();
    let output = tokio::process::Command::new(&programs.samba_tool)
        .args(["domain", "provision"])
        .arg(format!("--realm={REALM}"))
        .arg(format!("--domain={DOMAIN}"))
        .args(["--server-role=dc", "--dns-backend=NONE"])
        .arg(format!("--adminpass={ADMIN_PASSWORD}"))
        .arg(format!("--targetdir={}", staging.display()))
        .args([
            "--option=interfaces=lo",
            "--option=bind interfaces only=yes",
            "--option=server services=ldap",
            "--option=ldb:nosync=true",
            "--host-ip=127.0.0.1",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .io_context(|| format!("running {}", programs.samba_tool.display()))?;
    if !output.status.success() {
        let _ = std::fs::remove_dir_all(&staging);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        return Err(server_error(format!(
            "samba-tool domain provision failed ({}): {}",
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )));
    }
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "provisioned the Samba AD template"
    );
    // The template's own folder name is in smb.conf; copies replace it with theirs.
    std::fs::write(staging.join("template-path"), staging.display().to_string())
        .io_context(|| "writing template-path".into())?;
    let _ = std::fs::remove_dir_all(&template);
    std::fs::rename(&staging, &template)
        .io_context(|| format!("renaming {} to {}", staging.display(), template.display()))?;
    Ok(template)
}

/// Copies the template into a fresh folder, configures TLS, starts `samba -D` and waits for LDAPS.
async fn start_from(programs: &Programs, template: &Path, lock: SambaLock) -> Result<SambaAd> {
    let dir = tempfile::Builder::new()
        .prefix("jim-samba-")
        .tempdir()
        .io_context(|| "creating a temp dir for Samba".into())?;
    let root = dir.path().to_path_buf();
    let copy = tokio::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", template.display()))
        .arg(&root)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .io_context(|| "copying the Samba template".into())?;
    if !copy.status.success() {
        return Err(server_error(format!(
            "copying {} failed: {}",
            template.display(),
            String::from_utf8_lossy(&copy.stderr).trim()
        )));
    }
    let template_path = std::fs::read_to_string(root.join("template-path"))
        .io_context(|| "reading template-path".into())?;
    let ca = TestCa::new("jim-export Samba AD test CA")?;
    let tls = ca.server_cert(&[])?.write_to(&root.join("tls"))?;
    let conf_path = root.join("etc").join("smb.conf");
    let conf = std::fs::read_to_string(&conf_path)
        .io_context(|| format!("reading {}", conf_path.display()))?;
    let conf = render_config(&conf, template_path.trim(), &root, &tls);
    std::fs::write(&conf_path, conf).io_context(|| format!("writing {}", conf_path.display()))?;

    let pid_file = root.join("samba.pid");
    let log = root.join("samba.log");
    let out =
        File::create(root.join("samba.stdout")).io_context(|| "creating samba.stdout".into())?;
    let err = out
        .try_clone()
        .io_context(|| "duplicating samba.stdout".into())?;
    let status = tokio::process::Command::new(&programs.samba)
        .arg("-s")
        .arg(&conf_path)
        .arg("-D")
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .await
        .io_context(|| format!("running {}", programs.samba.display()))?;
    let tail = || {
        format!(
            "{}\n{}",
            log_tail(&root.join("samba.stdout"), 10),
            log_tail(&log, 20)
        )
    };
    if !status.success() {
        return Err(server_error(format!(
            "samba -D exited with {status}: {}",
            tail()
        )));
    }
    let deadline = Instant::now() + READY_WAIT;
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
            .filter(|&pid| pid_alive(pid))
        {
            break pid;
        }
        if Instant::now() >= deadline {
            return Err(server_error(format!(
                "{} names no running process: {}",
                pid_file.display(),
                tail()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    lock.record_owner(pid, &root);
    let process = ServerProcess::adopt("samba", pid, &root);
    let ldaps_url = format!("ldaps://127.0.0.1:{LDAPS_PORT}");
    let admin_upn = format!("{ADMIN_USER}@{DNS_DOMAIN}");
    let mut dc = SambaAd {
        process: Some(process),
        ca_pem: ca.cert_pem().to_string(),
        ldap_url: format!("ldap://127.0.0.1:{LDAP_PORT}"),
        ldaps_url,
        admin_dn: format!("CN={ADMIN_USER},CN=Users,{BASE_DN}"),
        admin_upn,
        lock: Some(lock),
        dir,
    };
    // Dropping `dc` on an error below stops the server and releases the lock.
    let mut ldap = loop {
        if !dc.is_running() {
            return Err(server_error(format!(
                "samba (pid {pid}) exited while starting: {}",
                tail()
            )));
        }
        match dc.admin_ldap().await {
            Ok(ldap) => break ldap,
            Err(e) if Instant::now() >= deadline => {
                let message = format!(
                    "no verified LDAPS bind within {} s ({e}): {}",
                    READY_WAIT.as_secs(),
                    tail()
                );
                if let Some(mut p) = dc.process.take() {
                    stop_group(&mut p);
                }
                return Err(server_error(message));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    for ou in [CORP_MANAGED_OU, USERS_OU, GROUPS_OU] {
        ensure_ou(&mut ldap, ou).await?;
    }
    ldap.unbind().await.ok();
    Ok(dc)
}

/// The copy's `smb.conf`: the template's folder replaced by the copy's, and our settings first in
/// `[global]` (earlier copies of the same keys removed).
fn render_config(
    template_conf: &str,
    template_dir: &str,
    dir: &Path,
    tls: &crate::tls::TlsFiles,
) -> String {
    let dir_s = dir.display().to_string();
    let ours = [
        ("pid directory", dir_s.clone()),
        ("log file", dir.join("samba.log").display().to_string()),
        ("log level", "1".to_string()),
        ("ldb:nosync", "true".to_string()),
        // Samba's default (`yes`) wants SASL binds signed or sealed even over TLS, which ldap3's
        // NTLM cannot do; Windows AD accepts NTLM over LDAPS. Simple binds without TLS stay refused.
        (
            "ldap server require strong auth",
            "allow_sasl_over_tls".to_string(),
        ),
        ("tls enabled", "yes".to_string()),
        ("tls keyfile", tls.key.display().to_string()),
        ("tls certfile", tls.cert.display().to_string()),
        ("tls cafile", tls.ca.display().to_string()),
    ];
    let mut out = String::new();
    for line in template_conf.replace(template_dir, &dir_s).lines() {
        let key = line
            .split_once('=')
            .map(|(k, _)| k.trim().to_ascii_lowercase())
            .unwrap_or_default();
        if ours.iter().any(|(k, _)| *k == key) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if line.trim().eq_ignore_ascii_case("[global]") {
            for (k, v) in &ours {
                out.push_str(&format!("\t{k} = {v}\n"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_points_at_the_copy_and_sets_tls_once() {
        let template = "[global]\n\tlog file = /var/log/samba/log.%m\n\tprivate dir = /t/x/private\n\
                        \trealm = GENTIAN.LOCAL\n\tldb:nosync = true\n\n[sysvol]\n\tpath = /t/x/state/sysvol\n";
        let tls = crate::tls::TlsFiles {
            ca: "/d/tls/ca.pem".into(),
            cert: "/d/tls/server.pem".into(),
            key: "/d/tls/server.key".into(),
        };
        let conf = render_config(template, "/t/x", Path::new("/d"), &tls);
        assert!(!conf.contains("/t/x"));
        assert!(conf.contains("private dir = /d/private"));
        assert!(conf.contains("path = /d/state/sysvol"));
        assert_eq!(conf.matches("log file").count(), 1);
        assert_eq!(conf.matches("ldb:nosync").count(), 1);
        assert!(conf.contains("\tpid directory = /d\n"));
        assert!(conf.contains("\ttls certfile = /d/tls/server.pem\n"));
        let global = conf.find("[global]").expect("global");
        let sysvol = conf.find("[sysvol]").expect("sysvol");
        assert!(conf.find("tls enabled = yes").expect("tls") < sysvol);
        assert!(global < conf.find("pid directory").expect("pid"));
    }
}
