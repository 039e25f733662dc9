//! A throwaway PostgreSQL 15 cluster in a temporary folder, on a free port, with `pg_stat_statements`
//! (`track = all`), and JIM's schema fixture loaded into a template database from which each test takes
//! its own database.
//!
//! Set `JIM_TEST_DATABASE_URL` to the admin URL of an existing server (a role allowed to create
//! databases) to use it instead of starting a cluster.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::OnceCell;

use crate::error::{IoContext, Result, SqlContext, TestkitError};
use crate::process::{ServerProcess, free_port, is_root, log_tail};

/// JIM's schema subset (`testkit/fixtures/jim_schema.sql`), with `__EFMigrationsHistory`.
pub const JIM_SCHEMA_SQL: &str = include_str!("../fixtures/jim_schema.sql");

/// How to start a cluster.
#[derive(Debug, Clone, Default)]
pub struct PostgresOptions {
    /// Durable writes (`fsync`, `synchronous_commit`, `full_page_writes` on). Off by default: tests
    /// need speed, benchmarks that compare durability turn it on.
    pub durable: bool,
    /// Serve TLS with this certificate and key (PEM), e.g. from [`crate::tls::TestCa`].
    pub tls: Option<(String, String)>,
    /// Extra `-c name=value` server settings.
    pub settings: Vec<(String, String)>,
}

/// A running PostgreSQL server: either a throwaway cluster this process started (stopped by PID when
/// dropped) or an existing server named by `JIM_TEST_DATABASE_URL`.
#[derive(Debug)]
pub struct Postgres {
    admin: PgConnectOptions,
    port: u16,
    process: Option<ServerProcess>,
    dir: Option<tempfile::TempDir>,
    template: OnceCell<String>,
    counter: AtomicU32,
}

static SHARED: OnceCell<Postgres> = OnceCell::const_new();

/// The folder holding `initdb`, `pg_ctl` and `postgres`.
fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("JIM_TEST_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let preferred = PathBuf::from("/usr/lib/postgresql/15/bin");
    if preferred.join("postgres").exists() {
        return Ok(preferred);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("postgres").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().ok_or_else(|| TestkitError::Missing {
        program: "PostgreSQL server (postgres, initdb, pg_ctl)".into(),
        hint: "run `bash scripts/install-deps.sh` (apt package postgresql-15), set JIM_TEST_PG_BIN to its bin folder, \
               or set JIM_TEST_DATABASE_URL to an existing server's admin URL"
            .into(),
    })
}

/// Runs a PostgreSQL program, as the `postgres` user when we are root (PostgreSQL refuses root).
fn pg_command(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command, what: &str) -> Result<()> {
    let out = cmd.output().io_context(|| format!("running {what}"))?;
    if !out.status.success() {
        return Err(TestkitError::Server {
            server: "postgres",
            message: format!(
                "{what} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(())
}

impl Postgres {
    /// The cluster shared by every test of this test binary, started on first use (or the server named
    /// by `JIM_TEST_DATABASE_URL`). It is stopped when the test process exits.
    pub async fn shared() -> Result<&'static Postgres> {
        SHARED
            .get_or_try_init(|| async { Postgres::start(PostgresOptions::default()).await })
            .await
    }

    /// Starts a new throwaway cluster (or connects to `JIM_TEST_DATABASE_URL` when it is set).
    pub async fn start(options: PostgresOptions) -> Result<Postgres> {
        if let Ok(url) = std::env::var("JIM_TEST_DATABASE_URL") {
            let admin: PgConnectOptions = url.parse().map_err(|e| {
                TestkitError::Seed(format!("JIM_TEST_DATABASE_URL is not a URL: {e}"))
            })?;
            let port = admin.get_port();
            return Ok(Postgres {
                admin,
                port,
                process: None,
                dir: None,
                template: OnceCell::new(),
                counter: AtomicU32::new(0),
            });
        }
        let bin = bin_dir()?;
        let mut last_error = None;
        for _ in 0..3 {
            match Self::start_cluster(&bin, &options).await {
                Ok(pg) => return Ok(pg),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| TestkitError::Server {
            server: "postgres",
            message: "did not start".into(),
        }))
    }

    async fn start_cluster(bin: &Path, options: &PostgresOptions) -> Result<Postgres> {
        let dir = tempfile::Builder::new()
            .prefix("jim-pg-")
            .tempdir()
            .io_context(|| "creating a temp dir".into())?;
        let root = dir.path().to_path_buf();
        if is_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["-R", "postgres:postgres"]).arg(&root);
                    c
                },
                "chown of the cluster folder",
            )?;
        }
        let data = root.join("data");
        let mut initdb = pg_command(&bin.join("initdb"));
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ]);
        run(initdb, "initdb")?;

        let port = free_port().io_context(|| "finding a free port".into())?;
        let mut conf = vec![
            ("listen_addresses".to_string(), "127.0.0.1".to_string()),
            ("port".into(), port.to_string()),
            ("unix_socket_directories".into(), root.display().to_string()),
            ("max_connections".into(), "300".into()),
            (
                "shared_preload_libraries".into(),
                "pg_stat_statements".into(),
            ),
            ("pg_stat_statements.track".into(), "all".into()),
            ("pg_stat_statements.max".into(), "10000".into()),
            ("timezone".into(), "UTC".into()),
            ("shared_buffers".into(), "256MB".into()),
            ("max_wal_size".into(), "4GB".into()),
            ("checkpoint_timeout".into(), "15min".into()),
        ];
        if !options.durable {
            conf.push(("fsync".into(), "off".into()));
            conf.push(("synchronous_commit".into(), "off".into()));
            conf.push(("full_page_writes".into(), "off".into()));
        }
        if let Some((cert, key)) = &options.tls {
            let cert_path = root.join("server.crt");
            let key_path = root.join("server.key");
            std::fs::write(&cert_path, cert)
                .io_context(|| "writing the server certificate".into())?;
            std::fs::write(&key_path, key).io_context(|| "writing the server key".into())?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))
                .io_context(|| "restricting the server key".into())?;
            if is_root() {
                run(
                    {
                        let mut c = Command::new("chown");
                        c.arg("postgres:postgres").arg(&cert_path).arg(&key_path);
                        c
                    },
                    "chown of the TLS files",
                )?;
            }
            conf.push(("ssl".into(), "on".into()));
            conf.push(("ssl_cert_file".into(), cert_path.display().to_string()));
            conf.push(("ssl_key_file".into(), key_path.display().to_string()));
        }
        conf.extend(options.settings.iter().cloned());
        let mut auto = String::new();
        for (k, v) in &conf {
            auto.push_str(&format!("{k} = '{}'\n", v.replace('\'', "''")));
        }
        // Trust every local connection; the cluster lives in a private temp folder on loopback.
        let conf_path = data.join("postgresql.auto.conf");
        let mut existing = std::fs::read_to_string(&conf_path).unwrap_or_default();
        existing.push_str(&auto);
        std::fs::write(&conf_path, existing)
            .io_context(|| "writing postgresql.auto.conf".into())?;
        if options.tls.is_some() {
            let hba = "local all all trust\nhost all all 127.0.0.1/32 trust\nhostssl all all 127.0.0.1/32 trust\n";
            std::fs::write(data.join("pg_hba.conf"), hba)
                .io_context(|| "writing pg_hba.conf".into())?;
        }

        let log = root.join("server.log");
        let mut start = pg_command(&bin.join("pg_ctl"));
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "start"]);
        if let Err(e) = run(start, "pg_ctl start") {
            return Err(TestkitError::Server {
                server: "postgres",
                message: format!("{e}\n{}", log_tail(&log, 20)),
            });
        }
        let pid_text = std::fs::read_to_string(data.join("postmaster.pid"))
            .io_context(|| "reading postmaster.pid".into())?;
        let pid: i32 = pid_text
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| TestkitError::Server {
                server: "postgres",
                message: "postmaster.pid holds no PID".into(),
            })?;
        let process = ServerProcess::adopt("postgres", pid, &root);
        let admin = PgConnectOptions::new_without_pgpass()
            .host("127.0.0.1")
            .port(port)
            .username("postgres")
            .database("postgres")
            .ssl_mode(sqlx::postgres::PgSslMode::Disable);
        let pg = Postgres {
            admin,
            port,
            process: Some(process),
            dir: Some(dir),
            template: OnceCell::new(),
            counter: AtomicU32::new(0),
        };
        // Make sure it answers before handing it out.
        let conn = pg
            .admin
            .connect()
            .await
            .sql_context(|| format!("connecting to the new cluster on port {port}"))?;
        conn.close().await.ok();
        Ok(pg)
    }

    /// The TCP port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's folder, when this process started it.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_ref().map(|d| d.path())
    }

    /// The server's PID, when this process started it.
    pub fn pid(&self) -> Option<i32> {
        self.process.as_ref().map(ServerProcess::pid)
    }

    /// Connect options for the admin database (`postgres`).
    pub fn admin_options(&self) -> PgConnectOptions {
        self.admin.clone()
    }

    /// Connect options for database `name`.
    pub fn options_for(&self, name: &str) -> PgConnectOptions {
        self.admin.clone().database(name)
    }

    /// A `postgres://` URL for database `name`.
    pub fn url_for(&self, name: &str) -> String {
        let host = self.admin.get_host();
        let user = self.admin.get_username();
        format!("postgres://{user}@{host}:{}/{name}", self.port)
    }

    /// Creates an empty database with a fresh name and returns its name.
    pub async fn create_empty_database(&self) -> Result<String> {
        let name = self.next_name("jim_empty");
        let mut conn = self
            .admin
            .connect()
            .await
            .sql_context(|| "connecting as admin".into())?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .sql_context(|| format!("creating database {name}"))?;
        Ok(name)
    }

    /// Creates a database holding JIM's schema fixture (copied from a template loaded once per server)
    /// and returns a handle with its URL and a pool.
    pub async fn jim_database(&self) -> Result<JimDatabase> {
        let template = self
            .template
            .get_or_try_init(|| async {
                let name = self.next_name("jim_template");
                let mut conn = self
                    .admin
                    .connect()
                    .await
                    .sql_context(|| "connecting as admin".into())?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                    .execute(&mut conn)
                    .await
                    .sql_context(|| format!("creating template {name}"))?;
                conn.close().await.ok();
                let mut db = self
                    .options_for(&name)
                    .connect()
                    .await
                    .sql_context(|| "connecting to the template".into())?;
                sqlx::raw_sql(JIM_SCHEMA_SQL)
                    .execute(&mut db)
                    .await
                    .sql_context(|| "loading JIM's schema fixture".into())?;
                sqlx::raw_sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                    .execute(&mut db)
                    .await
                    .sql_context(|| "creating pg_stat_statements".into())?;
                db.close().await.ok();
                Ok::<_, TestkitError>(name)
            })
            .await?;
        let name = self.next_name("jim_test");
        let mut conn = self
            .admin
            .connect()
            .await
            .sql_context(|| "connecting as admin".into())?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
        )))
        .execute(&mut conn)
        .await
        .sql_context(|| format!("creating database {name} from the template"))?;
        conn.close().await.ok();
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(self.options_for(&name))
            .await
            .sql_context(|| format!("connecting to {name}"))?;
        Ok(JimDatabase {
            name: name.clone(),
            url: self.url_for(&name),
            options: self.options_for(&name),
            pool,
        })
    }

    fn next_name(&self, prefix: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}_{}_{n}", std::process::id())
    }

    /// Stops the server now (it is also stopped when dropped).
    pub fn stop(&mut self) {
        if let Some(p) = self.process.as_mut() {
            p.stop(Duration::from_secs(10));
        }
    }

    /// Restarts the server on the same port and data folder: a fast shutdown (every session is
    /// disconnected, as in a real restart), then a start. Only for a cluster this process started.
    pub fn restart(&mut self) -> Result<()> {
        self.restart_after(Duration::ZERO)
    }

    /// Freezes every process of the server (SIGSTOP to the postmaster and its children): sessions
    /// stay open but nothing answers, as when a database host hangs. [`Postgres::thaw`] resumes it.
    pub fn freeze(&self) -> Result<()> {
        self.signal_all("STOP")
    }

    /// Resumes a frozen server.
    pub fn thaw(&self) -> Result<()> {
        self.signal_all("CONT")
    }

    fn signal_all(&self, signal: &str) -> Result<()> {
        let Some(pid) = self.pid() else {
            return Err(TestkitError::Server {
                server: "postgres",
                message: "only a cluster started by this process can be signalled".into(),
            });
        };
        // The postmaster first, so that it forks no new backend while its children are signalled.
        let run = |program: &str, args: &[String]| {
            std::process::Command::new(program)
                .args(args)
                .status()
                .io_context(|| format!("signalling PostgreSQL with {signal} ({program})"))
        };
        run("kill", &[format!("-{signal}"), pid.to_string()])?;
        run(
            "pkill",
            &[format!("-{signal}"), "-P".into(), pid.to_string()],
        )?;
        Ok(())
    }

    /// [`Postgres::restart`], down for `pause` between the stop and the start.
    pub fn restart_after(&mut self, pause: Duration) -> Result<()> {
        let (Some(dir), Some(process)) = (self.dir.as_ref(), self.process.as_mut()) else {
            return Err(TestkitError::Server {
                server: "postgres",
                message: "only a cluster started by this process can be restarted".into(),
            });
        };
        let root = dir.path().to_path_buf();
        let data = root.join("data");
        let bin = bin_dir()?;
        let mut stop = pg_command(&bin.join("pg_ctl"));
        stop.arg("-D")
            .arg(&data)
            .args(["-m", "fast", "-w", "-t", "60", "stop"]);
        run(stop, "pg_ctl stop")?;
        // The old postmaster is gone; its handle must not signal a PID that may be reused.
        process.stop(Duration::from_millis(0));
        std::thread::sleep(pause);
        let log = root.join("server.log");
        let mut start = pg_command(&bin.join("pg_ctl"));
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "start"]);
        run(start, "pg_ctl start")?;
        let pid_text = std::fs::read_to_string(data.join("postmaster.pid"))
            .io_context(|| "reading postmaster.pid".into())?;
        let pid: i32 = pid_text
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| TestkitError::Server {
                server: "postgres",
                message: "postmaster.pid holds no PID".into(),
            })?;
        self.process = Some(ServerProcess::adopt("postgres", pid, &root));
        Ok(())
    }

    /// Kills the server without a shutdown (a crash), keeping its data folder.
    pub fn kill(&mut self) {
        if let Some(p) = self.process.as_mut() {
            p.kill();
        }
    }
}

/// One test's database with JIM's schema.
#[derive(Debug, Clone)]
pub struct JimDatabase {
    /// The database's name.
    pub name: String,
    /// A `postgres://` URL for it (no password: the throwaway cluster trusts loopback).
    pub url: String,
    /// Connect options for it.
    pub options: PgConnectOptions,
    /// A pool connected to it.
    pub pool: PgPool,
}
