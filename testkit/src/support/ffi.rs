//! Shared harness of the FFI tests: where cargo put the library, the tools that build and run foreign
//! programs (installed with apt when missing and running as root, else a clear failure, never a skip),
//! running a child process with a deadline, and export requests as JSON.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::process::is_root;

/// The folder holding the library cargo built for this test run. The test binary is
/// `target/<profile>/deps/<name>-<hash>`, and cargo builds the library (every crate type: rlib, cdylib,
/// staticlib) into that same `deps/` folder before linking the test; `target/<profile>/` only gets a
/// copy when the library itself is a build target (e.g. `cargo build`), so it may be stale or missing.
pub fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe
        .parent()
        .expect("the test binary lives in target/<profile>/deps");
    let candidates = [Some(deps), deps.parent()];
    candidates
        .into_iter()
        .flatten()
        .find(|dir| dir.join("libjim_export.so").exists() && dir.join("libjim_export.a").exists())
        .unwrap_or_else(|| {
            panic!(
                "libjim_export.so/.a are missing from {} and its parent: cargo builds them with the \
                 library (crate-type cdylib/staticlib)",
                deps.display()
            )
        })
        .to_path_buf()
}

/// The repository root (for `include/`, `examples/`, `bindings/`): the testkit is the workspace
/// member in its `testkit/` folder.
pub fn repo_root() -> PathBuf {
    let testkit = Path::new(env!("CARGO_MANIFEST_DIR"));
    testkit
        .parent()
        .expect("the testkit lives in a folder of the repository")
        .to_path_buf()
}

/// A scratch folder for one test's build products and outputs under cargo's `target/tmp`, unique to
/// this process (several test runs may share the target folder). Removed when dropped, unless the test
/// is failing: then it stays for inspection, and its path is printed.
pub struct Scratch(PathBuf);

impl Scratch {
    /// The folder's path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A fresh [`Scratch`] folder named after `name`, in `target/tmp`. Cargo names that folder only to
/// the integration tests it compiles (`CARGO_TARGET_TMPDIR`), not to this library, so it is found from
/// the test binary: `target/<profile>/deps/<name>-<hash>`.
pub fn scratch(name: &str) -> Scratch {
    let exe = std::env::current_exe().expect("the test binary's path");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("the test binary lives in target/<profile>/deps");
    let dir = target
        .join("tmp")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch folder");
    Scratch(dir)
}

static INSTALLS: Mutex<()> = Mutex::new(());

/// Makes sure `command` is on PATH: as root it installs the Debian package `package` when missing;
/// otherwise a missing tool fails the test with what to install (with or without `CI=true`: these
/// tests never skip silently).
pub fn require_tool(command: &str, package: &str) {
    let _serial = INSTALLS.lock().unwrap_or_else(|p| p.into_inner());
    if on_path(command) {
        return;
    }
    assert!(
        is_root(),
        "`{command}` is missing: install it with `apt-get install {package}` (or run \
         scripts/install-deps.sh as root), then run the tests again"
    );
    eprintln!("installing {package} for `{command}` ...");
    let install = |update: bool| {
        if update {
            let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        }
        Command::new("apt-get")
            .args(["install", "-y", "-qq", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let installed = install(false) || install(true);
    assert!(
        installed && on_path(command),
        "`{command}` is missing and `apt-get install {package}` did not provide it"
    );
}

fn on_path(command: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(command).is_file()))
}

/// What a child process did.
#[derive(Debug)]
pub struct Outcome {
    /// The exit code; `None` when a signal ended the process.
    pub status: Option<i32>,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl Outcome {
    /// Panics with the process's output unless it exited with 0.
    pub fn assert_success(&self, what: &str) {
        assert_eq!(
            self.status,
            Some(0),
            "{what} failed ({:?}) after {:.1} s\n--- stdout\n{}\n--- stderr\n{}",
            self.status,
            self.elapsed.as_secs_f64(),
            self.stdout,
            tail(&self.stderr, 200)
        );
    }

    /// The rest of the first stdout line starting with `prefix` and a space.
    pub fn line(&self, prefix: &str) -> Option<&str> {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix)?.strip_prefix(' '))
    }
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs `command` to its end, killing it after `deadline` (a hang is a failure, not a stuck suite).
/// Output goes through files, so a chatty child never blocks on a full pipe.
pub fn run(mut command: Command, deadline: Duration, scratch: &Path, name: &str) -> Outcome {
    let out_path = scratch.join(format!("{name}.stdout"));
    let err_path = scratch.join(format!("{name}.stderr"));
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let err = std::fs::File::create(&err_path).expect("stderr file");
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status.code();
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
            let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
            panic!(
                "{name} did not finish within {deadline:?} (killed)\n--- stdout\n{stdout}\n--- stderr\n{}",
                tail(&stderr, 100)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Outcome {
        status,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        elapsed: started.elapsed(),
    }
}

/// The native libraries a Rust static library needs on this target, as rustc reports them
/// (`--print native-static-libs`) for an empty static library built with the same compiler.
/// jim-export's own dependencies link no further system library (ring and the rest compile their C
/// into the archive), which the static C host's link proves.
pub fn native_static_libs() -> Vec<String> {
    static LIBS: OnceLock<Vec<String>> = OnceLock::new();
    LIBS.get_or_init(|| {
        let dir = scratch("native-static-libs");
        let source = dir.join("empty.rs");
        std::fs::write(&source, "").expect("write empty.rs");
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
        let output = Command::new(rustc)
            .args([
                "--crate-type",
                "staticlib",
                "--crate-name",
                "empty",
                "--print",
                "native-static-libs",
            ])
            .arg("-o")
            .arg(dir.join("libempty.a"))
            .arg(&source)
            .output()
            .expect("rustc runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let libs = stderr
            .lines()
            .find_map(|l| {
                l.split_once("native-static-libs:")
                    .map(|(_, libs)| libs.trim().to_string())
            })
            .unwrap_or_else(|| panic!("rustc did not print native-static-libs:\n{stderr}"));
        libs.split_whitespace().map(str::to_string).collect()
    })
    .clone()
}

/// How a C program links jim-export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// `-ljim_export` (`libjim_export.so`, found at run time through an rpath).
    Shared,
    /// `libjim_export.a` plus the native libraries rustc names.
    Static,
}

/// Compiles `examples/c/<source>.c` with `gcc -Wall -Wextra -Werror` against the generated header.
pub fn compile_c(source: &str, link: Link, scratch: &Path) -> PathBuf {
    require_tool("gcc", "gcc");
    let lib = library_dir();
    let root = repo_root();
    let exe = scratch.join(format!("{source}_{}", format!("{link:?}").to_lowercase()));
    let mut gcc = Command::new("gcc");
    gcc.args(["-std=c11", "-g", "-Wall", "-Wextra", "-Werror", "-pthread"])
        .arg(format!("-I{}", root.join("include").display()))
        .arg(root.join("examples/c").join(format!("{source}.c")));
    match link {
        Link::Shared => {
            gcc.arg(format!("-L{}", lib.display()))
                .arg("-ljim_export")
                .arg(format!("-Wl,-rpath,{}", lib.display()));
        }
        Link::Static => {
            gcc.arg(lib.join("libjim_export.a"))
                .args(native_static_libs());
        }
    }
    gcc.arg("-o").arg(&exe);
    let outcome = run(
        gcc,
        Duration::from_secs(300),
        scratch,
        &format!("gcc-{source}-{link:?}"),
    );
    outcome.assert_success(&format!("gcc {source}.c ({link:?})"));
    exe
}

/// `valgrind` arguments that fail the run on any memory error or a definite/indirect leak. Tokio's and
/// glibc's per-process state may remain "still reachable", which is not a leak.
pub fn valgrind_args() -> Vec<String> {
    require_tool("valgrind", "valgrind");
    let mut args: Vec<String> = [
        "--error-exitcode=1",
        "--leak-check=full",
        "--errors-for-leak-kinds=definite,indirect,possible",
        "--show-leak-kinds=definite,indirect,possible",
        "--quiet",
    ]
    .map(str::to_string)
    .into();
    let suppressions = repo_root().join("examples/c/valgrind.supp");
    if suppressions.exists() {
        args.push(format!("--suppressions={}", suppressions.display()));
    }
    args
}

/// Parses a JSON line a program printed.
pub fn json(line: Option<&str>, what: &str) -> serde_json::Value {
    let line = line.unwrap_or_else(|| panic!("the program printed no {what} line"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{what} is not JSON ({e}): {line}"))
}

/// Parses `key=value` pairs of a line such as `EVENTS progress=3 batches=2`.
pub fn counters(line: Option<&str>) -> BTreeMap<String, u64> {
    line.unwrap_or_default()
        .split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// Compiles the .NET binding (`bindings/dotnet/JimExport`) into a library with Mono's `mcs` (C# 7.2,
/// warnings as errors) and the test program `bindings/dotnet/tests/<program>.cs` against it, as a
/// host would; returns the program's `.exe`.
pub fn compile_dotnet(dir: &Path, program: &str) -> PathBuf {
    require_tool("mcs", "mono-devel");
    require_tool("mono", "mono-devel");
    let root = repo_root().join("bindings/dotnet");
    let sources: Vec<_> = std::fs::read_dir(root.join("JimExport"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cs"))
        .collect();
    let dll = dir.join("JimExport.dll");
    let mut mcs = Command::new("mcs");
    mcs.args([
        "-langversion:7.2",
        "-warnaserror+",
        "-warn:4",
        "-target:library",
    ])
    .arg(format!("-out:{}", dll.display()))
    .arg("-r:System.Runtime.Serialization.dll")
    .args(&sources);
    run(mcs, Duration::from_secs(300), dir, "mcs-library").assert_success("mcs JimExport.dll");
    let exe = dir.join(format!("{program}.exe"));
    let mut mcs = Command::new("mcs");
    mcs.args(["-langversion:7.2", "-warnaserror+", "-warn:4"])
        .arg(format!("-out:{}", exe.display()))
        .arg(format!("-r:{}", dll.display()))
        .arg("-r:System.Runtime.Serialization.dll")
        .arg(root.join(format!("tests/{program}.cs")));
    run(mcs, Duration::from_secs(300), dir, "mcs-tests")
        .assert_success(&format!("mcs {program}.exe"));
    exe
}
