//! The .NET binding (`bindings/dotnet/`) compiled with Mono's `mcs` (C# 7.2) and run under `mono`
//! against the native library, a throwaway PostgreSQL and slapd: a full export through a typed
//! request, cancellation through a CancellationToken, a throwing batch handler, bad input surfacing as
//! typed exceptions, a run on an engine disposed by another thread, and a clean process exit (the
//! program disposes its engines; without the native runtime's shutdown Mono would hang at exit and
//! the deadline below would fail the test). Afterwards the directory and database state each export
//! produced is checked here.

use std::process::Command;
use std::time::Duration;

use jim_export::model::{PendingExportChangeType, PendingExportStatus};
use jim_export_testkit::seed::Template;
use jim_export_testkit::support::engine::{Env, assert_directory_matches};
use jim_export_testkit::support::ffi::{compile_dotnet, json, library_dir, run, scratch};
use tokio::runtime::Runtime;

#[test]
fn the_dotnet_binding_exports_cancels_reports_bad_input_and_exits_cleanly() {
    let dir = scratch("dotnet");
    let exe = compile_dotnet(&dir, "ExportTests");
    let rt = Runtime::new().unwrap();
    // Three systems: one exported in full, one cancelled twice (token, throwing handler), one whose
    // engine is disposed under a throttled run. The last gets its own queue so the two earlier
    // interruptions cannot leave it nothing to do.
    let (full, partial, slow) = rt.block_on(async {
        tokio::join!(
            Env::new(Template::Small),
            Env::new(Template::Small),
            Env::new(Template::Small)
        )
    });
    let objects = full.seeded.counts.pending_exports;
    let partial_objects = partial.seeded.counts.pending_exports;

    // The system to cancel: small pages, one operation in flight, so a cancel lands mid-queue.
    let mut cancel_request = serde_json::to_value(partial.request()).unwrap();
    cancel_request["options"]["page_size"] = 10.into();
    cancel_request["options"]["flush_size"] = 5.into();
    cancel_request["options"]["connections"] = 1.into();
    cancel_request["options"]["in_flight_per_connection"] = 1.into();
    let cancel_file = dir.join("cancel_request.json");
    std::fs::write(&cancel_file, cancel_request.to_string()).unwrap();
    // The same system throttled to 5 operations/s: still running when the engine is disposed under it.
    // The third system, as small-stepped and throttled to 5 operations/s: still running when the
    // engine is disposed under it (its 131 exports take half a minute at that rate).
    let mut slow_request = serde_json::to_value(slow.request()).unwrap();
    slow_request["options"] = cancel_request["options"].clone();
    slow_request["options"]["ops_per_second"] = 5.into();
    let slow_file = dir.join("slow_request.json");
    std::fs::write(&slow_file, slow_request.to_string()).unwrap();
    let unknown_request = serde_json::json!({
        "database": { "connection": full.db.url },
        "connected_system_id": 999_999,
        "directory": {
            "urls": [full.slapd.ldap_url()],
            "allow_password_without_tls": true,
            "bind": { "kind": "simple", "dn": full.slapd.admin_dn(), "password": full.slapd.admin_password() }
        }
    });
    let unknown_file = dir.join("unknown_request.json");
    std::fs::write(&unknown_file, unknown_request.to_string()).unwrap();

    // Ten rows of each interrupted system stay locked while the program runs: however late its
    // interruptions land, the runs cannot drain a queue (they claim with SKIP LOCKED).
    let (hold, held) = rt.block_on(partial.hold_rows(10));
    let (slow_hold, slow_held) = rt.block_on(slow.hold_rows(10));
    let mut mono = Command::new("mono");
    mono.arg("--debug")
        .arg(&exe)
        .env("LD_LIBRARY_PATH", library_dir())
        .env("JIM_DOTNET_TEST_DB", &full.db.url)
        .env(
            "JIM_DOTNET_TEST_SYSTEM",
            full.seeded.connected_system_id().to_string(),
        )
        .env("JIM_DOTNET_TEST_OBJECTS", objects.to_string())
        .env("JIM_DOTNET_TEST_LDAP_URL", full.slapd.ldap_url())
        .env("JIM_DOTNET_TEST_BIND_DN", full.slapd.admin_dn())
        .env("JIM_DOTNET_TEST_PASSWORD", full.slapd.admin_password())
        .env("JIM_DOTNET_TEST_CANCEL_REQUEST", &cancel_file)
        .env(
            "JIM_DOTNET_TEST_CANCEL_OBJECTS",
            partial_objects.to_string(),
        )
        .env("JIM_DOTNET_TEST_SLOW_REQUEST", &slow_file)
        .env("JIM_DOTNET_TEST_UNKNOWN_REQUEST", &unknown_file);
    let outcome = run(mono, Duration::from_secs(600), &dir, "mono-ExportTests");
    rt.block_on(hold.rollback()).expect("release the held rows");
    rt.block_on(slow_hold.rollback())
        .expect("release the held rows");
    eprintln!("{}", outcome.stdout);
    outcome.assert_success(
        "the Mono test program (a hang at exit would have been killed at the deadline)",
    );
    assert!(outcome.stdout.contains("\nPASS"), "{}", outcome.stdout);
    assert!(!outcome.stdout.contains("not ok"), "{}", outcome.stdout);
    eprintln!(
        "the Mono program took {:.1} s",
        outcome.elapsed.as_secs_f64()
    );

    // The full export: the directory holds every seeded object; JIM's rows say Exported.
    let result = json(outcome.line("EXPORT"), "EXPORT");
    assert_eq!(result["success_count"], objects, "{result}");
    assert_directory_matches(
        &rt.block_on(full.directory()),
        &full.seeded.expected_directory().unwrap(),
    );
    let counts = rt.block_on(full.pending_export_counts());
    let exported_creates = (
        PendingExportStatus::Exported.as_i32(),
        PendingExportChangeType::Create.as_i32(),
    );
    assert_eq!(
        counts.get(&exported_creates),
        Some(&(objects as i64)),
        "{counts:?}"
    );
    assert_eq!(rt.block_on(full.executing()), 0);

    // The interrupted runs (token cancelled, handler threw, engine disposed): nothing stranded, each
    // export either Exported by one of them or back to Pending, and the directory holds exactly the
    // objects they wrote.
    let results = |labels: &[&str]| -> Vec<serde_json::Value> {
        labels
            .iter()
            .filter_map(|l| outcome.line(l).map(|_| json(outcome.line(l), l)))
            .collect()
    };
    let cancelled = results(&["CANCEL", "CALLBACK_FAILURE"]);
    assert_eq!(cancelled.len(), 2, "{}", outcome.stdout);
    assert_interrupted(&rt, &partial, &cancelled, &held);
    let disposed = results(&["DISPOSED"]);
    assert_eq!(disposed.len(), 1, "{}", outcome.stdout);
    assert_interrupted(&rt, &slow, &disposed, &slow_held);
}

/// What interrupted runs of one system leave: nothing `Executing`, each export `Exported` by one of
/// them or back to `Pending`, the held rows never claimed, one entry per export written.
fn assert_interrupted(
    rt: &Runtime,
    env: &Env,
    interrupted: &[serde_json::Value],
    held: &[uuid::Uuid],
) {
    assert!(
        interrupted.iter().all(|r| r["cancelled"] == true),
        "{interrupted:?}"
    );
    assert_eq!(rt.block_on(env.executing()), 0, "no row left Executing");
    let counts = rt.block_on(env.pending_export_counts());
    let exported: i64 = counts
        .iter()
        .filter(|((s, _), _)| *s == PendingExportStatus::Exported.as_i32())
        .map(|(_, n)| n)
        .sum();
    let pending: i64 = counts
        .iter()
        .filter(|((s, _), _)| *s == PendingExportStatus::Pending.as_i32())
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        (exported + pending) as u64,
        env.seeded.counts.pending_exports,
        "{counts:?}"
    );
    let fully_written: u64 = interrupted
        .iter()
        .map(|r| {
            r["success_count"].as_u64().unwrap() - r["partially_exported_count"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(exported as u64, fully_written, "{counts:?} {interrupted:?}");
    assert!(exported > 0, "{counts:?}");
    let untouched: i64 = rt.block_on(async {
        sqlx::query_scalar(
            r#"SELECT count(*) FROM "PendingExports" WHERE "Id" = ANY($1) AND "Status" = 0
               AND "ErrorCount" = 0 AND "LastAttemptedAt" IS NULL"#,
        )
        .bind(held)
        .fetch_one(&env.db.pool)
        .await
        .unwrap()
    });
    assert_eq!(
        untouched,
        held.len() as i64,
        "the held rows were never claimed"
    );
    let written: i64 = rt.block_on(async {
        sqlx::query_scalar(
            r#"SELECT count(DISTINCT p."Id") FROM "PendingExports" p
               JOIN "PendingExportAttributeValueChanges" c ON c."PendingExportId" = p."Id"
               WHERE p."ConnectedSystemId" = $1 AND c."Status" = 1"#,
        )
        .bind(env.seeded.connected_system_id())
        .fetch_one(&env.db.pool)
        .await
        .unwrap()
    });
    assert_eq!(
        rt.block_on(env.directory()).len() as i64,
        written,
        "one entry per export written"
    );
}

/// The C# binding's records and enums (`bindings/dotnet/JimExport/*.cs`) against the Rust contract,
/// without Mono: every `[DataMember(Name = …)]` class that mirrors a core type names exactly that
/// type's serde fields; the JIM enums carry the numbers of `model::JIM_ENUM_TABLE`; `ExportItemStatus`
/// parses every `ItemStatus`; `ExportStatus` is `jim_status` value for value (by `jim_status_name`).
/// A C# class or enum this test does not know fails it, so a new one gets checked or named here.
#[test]
fn the_dotnet_records_and_enums_match_the_rust_contract() {
    use jim_export::{config, report};

    let sources: Vec<String> = ["Native.cs", "Requests.cs", "Results.cs", "Watch.cs"]
        .iter()
        .map(|f| {
            let path = format!(
                "{}/bindings/dotnet/JimExport/{f}",
                env!("CARGO_MANIFEST_DIR")
            );
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
        })
        .collect();
    let classes = cs::data_classes(&sources);
    let enums = cs::enums(&sources);

    // Records: C# class, the core type's serde fields.
    let bind_fields: Vec<&str> = {
        let secret = config::Secret::new("x");
        let all = [
            config::Bind::Simple {
                dn: "cn=x".into(),
                password: secret.clone(),
            },
            config::Bind::SaslExternal,
            config::Bind::Ntlm {
                username: "x".into(),
                domain: None,
                password: secret,
            },
        ];
        // A new Bind variant must be added above.
        match &all[0] {
            config::Bind::Simple { .. }
            | config::Bind::SaslExternal
            | config::Bind::Ntlm { .. } => {}
        }
        let mut names: Vec<&str> = all
            .iter()
            .flat_map(|b| {
                let v = serde_json::to_value(b).unwrap();
                let keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
                keys
            })
            .map(|k| &*Box::leak(k.into_boxed_str()))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    };
    let records: Vec<(&str, Vec<&str>)> = vec![
        ("ExportRequest", serde_fields::of::<config::ExportRequest>()),
        (
            "DatabaseConnection",
            serde_fields::of::<config::DatabaseConfig>(),
        ),
        ("DatabaseTls", serde_fields::of::<config::DatabaseTls>()),
        (
            "DirectoryConnection",
            serde_fields::of::<config::DirectoryConfig>(),
        ),
        ("DirectoryTls", serde_fields::of::<config::DirectoryTls>()),
        ("DirectoryBind", bind_fields),
        (
            "ExportSettings",
            serde_fields::of::<config::ExportSettings>(),
        ),
        (
            "ScopeContainer",
            serde_fields::of::<config::ScopeContainer>(),
        ),
        ("RunOptions", serde_fields::of::<config::RunOptions>()),
        ("WatchRequest", serde_fields::of::<config::WatchRequest>()),
        ("WatchOptions", serde_fields::of::<config::WatchOptions>()),
        ("ExportResult", serde_fields::of::<report::RunResult>()),
        ("RunMetrics", serde_fields::of::<report::RunMetrics>()),
        (
            "OperationCounts",
            serde_fields::of::<report::OperationCounts>(),
        ),
        (
            "ExportProgress",
            serde_fields::of::<report::ProgressEvent>(),
        ),
        ("BatchReport", serde_fields::of::<report::BatchReport>()),
        ("ReportItem", serde_fields::of::<report::ReportItem>()),
        ("AnchorChange", serde_fields::of::<report::AnchorChange>()),
        ("WatchWakeUps", serde_fields::of::<report::WakeUps>()),
        (
            "WatchSystemResult",
            serde_fields::of::<report::WatchSystemResult>(),
        ),
        ("WatchResult", serde_fields::of::<report::WatchResult>()),
    ];
    // Documents of the C ABI itself (engine options, operator calls, the queue summary with its
    // names, trigger calls) and the log record (its own change): not core types.
    let not_core = [
        "EngineOptions",
        "OperatorRequest",
        "QueueSummary",
        "StatusCount",
        "CountAnswer",
        "TriggerRequest",
        "TriggerAnswer",
        "LogRecordDocument",
    ];
    for (class, rust) in &records {
        let cs = classes
            .get(*class)
            .unwrap_or_else(|| panic!("no C# class {class}"));
        let mut rust = rust.clone();
        rust.sort_unstable();
        let mut cs = cs.clone();
        cs.sort_unstable();
        assert_eq!(cs, rust, "C# {class} differs from its Rust type");
    }
    for class in classes.keys() {
        assert!(
            records.iter().any(|(c, _)| *c == class.as_str()) || not_core.contains(&class.as_str()),
            "C# class {class} is neither checked against a Rust type nor listed as not core"
        );
    }

    // JIM's enums: the one table.
    let table: std::collections::HashMap<&str, Vec<(i64, String)>> =
        jim_export::model::JIM_ENUM_TABLE
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (name, values) = l.split_once(':').unwrap();
                let values = values
                    .split(',')
                    .map(|v| {
                        let (n, m) = v.trim().split_once(' ').unwrap();
                        (n.parse().unwrap(), m.to_string())
                    })
                    .collect();
                (name.trim(), values)
            })
            .collect();
    let jim = [
        "ExportPhase",
        "PendingExportChangeType",
        "ObjectChangeType",
        "ActivityRunProfileExecutionItemErrorType",
        "ConnectedSystemExportErrorType",
    ];
    for name in jim {
        assert_eq!(
            enums.get(name),
            table.get(name),
            "C# {name} differs from model/jim_enums.txt"
        );
    }
    // ExportItemStatus: the C# side parses the JSON name without underscores, ignoring case.
    let item_status = |s: report::ItemStatus| {
        // A new ItemStatus variant must be added to `statuses` below.
        match s {
            report::ItemStatus::Succeeded
            | report::ItemStatus::PartlyWritten
            | report::ItemStatus::Deferred
            | report::ItemStatus::Failed => {}
        }
        serde_json::to_value(s)
            .unwrap()
            .as_str()
            .unwrap()
            .replace('_', "")
    };
    let statuses = [
        report::ItemStatus::Succeeded,
        report::ItemStatus::PartlyWritten,
        report::ItemStatus::Deferred,
        report::ItemStatus::Failed,
    ];
    let mut rust: Vec<String> = statuses.into_iter().map(item_status).collect();
    let mut cs: Vec<String> = enums["ExportItemStatus"]
        .iter()
        .map(|(_, m)| m.to_lowercase())
        .collect();
    rust.sort_unstable();
    cs.sort_unstable();
    assert_eq!(
        cs, rust,
        "C# ExportItemStatus differs from report::ItemStatus"
    );

    // ExportStatus is jim_status: the same numbers under the same names.
    let c_names: Vec<(i64, String)> = (0..1000u32)
        .filter_map(|code| {
            // SAFETY: jim_status_name returns a pointer to a static NUL-terminated string.
            let name =
                unsafe { std::ffi::CStr::from_ptr(jim_export::ffi::c::jim_status_name(code)) };
            let name = name.to_str().unwrap();
            (name != "JIM_STATUS_UNKNOWN").then(|| (i64::from(code), name.to_string()))
        })
        .collect();
    let cs_names: Vec<(i64, String)> = enums["ExportStatus"]
        .iter()
        .map(|(n, m)| (*n, format!("JIM_STATUS_{}", cs::screaming_snake(m))))
        .collect();
    assert_eq!(cs_names, c_names, "C# ExportStatus differs from jim_status");

    // The log level is LOGS' part of the binding.
    let known: Vec<&str> = jim
        .iter()
        .copied()
        .chain(["ExportItemStatus", "ExportStatus", "ExportLogLevel"])
        .collect();
    for name in enums.keys() {
        assert!(
            known.contains(&name.as_str()),
            "C# enum {name} is not checked"
        );
    }
}

/// The field names a serde-derived struct deserializes, read from the `fields` serde hands to
/// `deserialize_struct` (no value is built).
mod serde_fields {
    use serde::de::{self, DeserializeOwned, Visitor};

    struct Probe(Option<&'static [&'static str]>);

    impl<'de> de::Deserializer<'de> for &mut Probe {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = Some(fields);
            Err(de::Error::custom("fields read"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }

    /// `T`'s serde field names.
    pub fn of<T: DeserializeOwned>() -> Vec<&'static str> {
        let mut probe = Probe(None);
        let _ = T::deserialize(&mut probe);
        probe.0.expect("a struct with named fields").to_vec()
    }
}

/// Just enough of C# to read the binding's `[DataMember]` classes and enums.
mod cs {
    use std::collections::HashMap;

    /// Class name to its `[DataMember(Name = "…")]` names, for classes that have any.
    pub fn data_classes(sources: &[String]) -> HashMap<String, Vec<&'static str>> {
        let mut out = HashMap::new();
        for source in sources {
            let parts: Vec<&str> = source.split(" class ").collect();
            for part in parts.iter().skip(1) {
                let name: String = part
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let members: Vec<&'static str> = part
                    .split("[DataMember(Name = \"")
                    .skip(1)
                    .map(|m| &*Box::leak(m.split('"').next().unwrap().to_string().into_boxed_str()))
                    .collect();
                if !members.is_empty() {
                    out.insert(name, members);
                }
            }
        }
        out
    }

    /// Enum name to its (value, member) pairs in declaration order.
    pub fn enums(sources: &[String]) -> HashMap<String, Vec<(i64, String)>> {
        let mut out = HashMap::new();
        for source in sources {
            for part in source.split(" enum ").skip(1) {
                let name: String = part
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let body = &part[part.find('{').unwrap() + 1..part.find('}').unwrap()];
                let members = body
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with("//"))
                    .map(|l| {
                        let (member, value) = l
                            .trim_end_matches(',')
                            .split_once('=')
                            .unwrap_or_else(|| panic!("C# enum {name}: {l} has no explicit value"));
                        (value.trim().parse().unwrap(), member.trim().to_string())
                    })
                    .collect();
                out.insert(name, members);
            }
        }
        out
    }

    /// `NullParameter` as `NULL_PARAMETER`.
    pub fn screaming_snake(name: &str) -> String {
        let mut out = String::new();
        for (i, c) in name.chars().enumerate() {
            if c.is_uppercase() && i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_uppercase());
        }
        out
    }
}
