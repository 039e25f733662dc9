//! Owning a server process: stop it by PID when dropped, and make sure it dies with the test process
//! even when that process is killed or aborts before any destructor runs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{IoContext, Result, TestkitError};

/// A started server, identified by its PID. Dropping it sends SIGTERM, waits briefly, then SIGKILL.
///
/// A watchdog shell process polls the test process and kills the server (and removes its folder) once
/// the test process is gone, so servers never outlive a test binary that crashed or was killed; the
/// watchdog exits as soon as the server is gone.
#[derive(Debug)]
pub struct ServerProcess {
    name: &'static str,
    pid: i32,
    stopped: bool,
}

impl ServerProcess {
    /// Takes ownership of the server with `pid`, whose working folder is `dir`.
    pub fn adopt(name: &'static str, pid: i32, dir: &Path) -> Self {
        spawn_watchdog(pid, dir);
        Self {
            name,
            pid,
            stopped: false,
        }
    }

    /// The server's PID.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// True while the process exists.
    pub fn is_running(&self) -> bool {
        pid_alive(self.pid)
    }

    /// Stops the server now: SIGTERM, up to `grace` to exit, then SIGKILL.
    pub fn stop(&mut self, grace: Duration) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        signal(self.pid, libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while pid_alive(self.pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if pid_alive(self.pid) {
            signal(self.pid, libc::SIGKILL);
            let deadline = Instant::now() + Duration::from_secs(2);
            while pid_alive(self.pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        tracing::debug!(server = self.name, pid = self.pid, "stopped");
    }

    /// Sends SIGKILL without waiting (used to simulate a crashed server).
    pub fn kill(&mut self) {
        signal(self.pid, libc::SIGKILL);
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// True when a process with this PID exists (and is not a zombie we could reap).
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // Zombies answer kill(0); treat them as gone.
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        && stat
            .rsplit_once(") ")
            .is_some_and(|(_, state)| state.starts_with('Z'))
    {
        return false;
    }
    #[allow(unsafe_code)]
    // SAFETY: kill with signal 0 only checks for the process's existence.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn signal(pid: i32, sig: i32) {
    if pid > 0 {
        #[allow(unsafe_code)]
        // SAFETY: sending a signal to a PID we started has no memory-safety implications.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

fn spawn_watchdog(server_pid: i32, dir: &Path) {
    let test_pid = std::process::id();
    let dir = dir.display().to_string().replace('\'', "");
    let script = format!(
        "while kill -0 {test_pid} 2>/dev/null && kill -0 {server_pid} 2>/dev/null; do sleep 0.5; done; \
         if kill -0 {server_pid} 2>/dev/null; then kill -TERM {server_pid}; sleep 2; kill -KILL {server_pid} 2>/dev/null; \
         rm -rf '{dir}'; fi"
    );
    let _ = Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// A free TCP port on 127.0.0.1 (bind to port 0 and read it back) that this process has never
/// handed out before. Another process may take it before the server binds it, so callers retry a
/// failed start on a new port.
///
/// Never handing a port out twice is what lets a test check that a stopped server no longer answers
/// on its port: the kernel readily gives a freed port to the next `bind(0)`, and without this a server
/// started by a parallel test in the same binary could be listening there.
pub fn free_port() -> std::io::Result<u16> {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    // The ephemeral range holds some 28,000 ports and a test binary uses a few hundred at most, so a
    // fresh one turns up within a few tries; the bound only keeps a broken kernel from looping forever.
    for _ in 0..1_000 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        // A poisoned lock still holds a valid set: a panic cannot interrupt an insert half-way.
        let mut handed_out = HANDED_OUT
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if handed_out.insert(port) {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "the kernel kept offering ports this process has already handed out",
    ))
}

/// True when this process runs as root.
pub fn is_root() -> bool {
    #[allow(unsafe_code)]
    // SAFETY: geteuid has no preconditions.
    unsafe {
        libc::geteuid() == 0
    }
}

/// The last `lines` lines of a log file, for error messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The first `name` found on `PATH` or in the usual system folders (`/usr/sbin` is often not on a
/// user's `PATH`).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

static INSTALL_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Installs the Debian `packages` with `apt-get` (as root), unless `installed` says they are there
/// once the lock is held. One install at a time: a mutex within this process, a file lock
/// (`jim-testkit-apt.lock` in the system's temporary folder) across processes. The package lists are
/// refreshed only when a first install fails. `what` names the software in the error.
pub(crate) fn apt_install(
    packages: &[&str],
    what: &str,
    installed: impl Fn() -> bool,
) -> Result<()> {
    use std::os::fd::AsRawFd;
    let _guard = INSTALL_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let lock_path = std::env::temp_dir().join("jim-testkit-apt.lock");
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .io_context(|| format!("opening {}", lock_path.display()))?;
    #[allow(unsafe_code)]
    // SAFETY: flock on a descriptor we own; the lock is released when the file is closed.
    let rc = unsafe { libc::flock(lock_file.as_raw_fd(), libc::LOCK_EX) };
    if rc != 0 {
        return Err(TestkitError::Io {
            context: format!("locking {}", lock_path.display()),
            source: std::io::Error::last_os_error(),
        });
    }
    if installed() {
        return Ok(());
    }
    let apt = |args: &[&str]| -> Result<std::process::Output> {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .io_context(|| format!("running apt-get {}", args.join(" ")))
    };
    let mut install = vec!["install", "-y"];
    install.extend_from_slice(packages);
    tracing::info!(packages = %packages.join(" "), "installing with apt-get");
    if apt(&install)?.status.success() {
        return Ok(());
    }
    let update = apt(&["update"])?;
    let retry = apt(&install)?;
    if retry.status.success() {
        return Ok(());
    }
    Err(TestkitError::Missing {
        program: what.to_string(),
        hint: format!(
            "`apt-get install -y {}` failed (after `apt-get update`, {}): {}",
            packages.join(" "),
            update.status,
            String::from_utf8_lossy(&retry.stderr).trim()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_never_hands_a_port_out_twice() {
        // Each listener is closed at once, so the kernel is free to offer the same port again; the
        // allocator must not pass it on.
        let mut seen = BTreeSet::new();
        for _ in 0..500 {
            let port = free_port().expect("a free port");
            assert!(seen.insert(port), "port {port} was handed out twice");
        }
    }
}
