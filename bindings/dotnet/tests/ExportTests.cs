// The .NET binding against the real native library, PostgreSQL and slapd, run under Mono by
// tests/ffi_dotnet.rs (which starts the servers, seeds two connected systems, and afterwards checks the
// directory and database state these exports produced). C# 7.2.
//
// Environment (set by the Rust test):
//   JIM_DOTNET_TEST_DB               the database connection string (both systems live in it)
//   JIM_DOTNET_TEST_SYSTEM           the connected system to export fully, through a typed ExportRequest
//   JIM_DOTNET_TEST_OBJECTS          its pending exports
//   JIM_DOTNET_TEST_LDAP_URL / _BIND_DN / _PASSWORD   its directory
//   JIM_DOTNET_TEST_CANCEL_REQUEST   a file holding the JSON request of the system to cancel mid-run
//   JIM_DOTNET_TEST_CANCEL_OBJECTS   that system's pending exports
//   JIM_DOTNET_TEST_SLOW_REQUEST     the same request throttled to a few operations per second
//   JIM_DOTNET_TEST_UNKNOWN_REQUEST  a file holding a JSON request naming a connected system that does not exist
//
// Output: "ok - …" / "not ok - …" per check, "EXPORT <json>", "CANCEL <json>", "CALLBACK_FAILURE <json>",
// "DISPOSED <json>" with the results, and exit status 0 when every check passed.

using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using JimExport;

internal static class ExportTests
{
    private static int failures;

    private static void Check(bool ok, string what)
    {
        if (!ok)
        {
            failures++;
        }
        Console.WriteLine((ok ? "ok - " : "not ok - ") + what);
    }

    private static string Env(string name)
    {
        string value = Environment.GetEnvironmentVariable(name);
        if (string.IsNullOrEmpty(value))
        {
            throw new InvalidOperationException(name + " is not set");
        }
        return value;
    }

    /// <summary>Records progress synchronously (Progress&lt;T&gt; would post it to the thread pool).</summary>
    private sealed class Recorder : IProgress<ExportProgress>
    {
        public readonly ConcurrentQueue<ExportProgress> Events = new ConcurrentQueue<ExportProgress>();
        public readonly ManualResetEventSlim First = new ManualResetEventSlim(false);

        public void Report(ExportProgress value)
        {
            Events.Enqueue(value);
            First.Set();
        }
    }

    /// <summary>Expects the task to fail with TException; returns it (or null after reporting the failure).</summary>
    private static TException Throws<TException>(Func<Task> action, string what) where TException : Exception
    {
        try
        {
            action().GetAwaiter().GetResult();
            Check(false, what + ": no exception");
        }
        catch (TException e)
        {
            Check(true, what);
            return e;
        }
        catch (Exception e)
        {
            Check(false, what + ": " + e.GetType().Name + ": " + e.Message);
        }
        return null;
    }

    private static int Main()
    {
        try
        {
            Run();
        }
        catch (Exception e)
        {
            Check(false, "unexpected " + e);
        }
        Console.WriteLine(failures == 0 ? "PASS" : "FAIL " + failures);
        Console.Out.Flush();
        return failures == 0 ? 0 : 1;
    }

    private static void Run()
    {
        var database = new DatabaseConnection { Connection = Env("JIM_DOTNET_TEST_DB") };
        int system = int.Parse(Env("JIM_DOTNET_TEST_SYSTEM"));
        long objects = long.Parse(Env("JIM_DOTNET_TEST_OBJECTS"));
        string cancelJson = File.ReadAllText(Env("JIM_DOTNET_TEST_CANCEL_REQUEST"));
        long cancelObjects = long.Parse(Env("JIM_DOTNET_TEST_CANCEL_OBJECTS"));

        Check(!string.IsNullOrEmpty(ExportEngine.LibraryVersion), "the library version is " + ExportEngine.LibraryVersion);
        Check(ExportEngine.AbiVersion == 1, "C ABI version 1");

        var logs = new ConcurrentQueue<Tuple<ExportLogLevel, string, string>>();
        var engine = new ExportEngine(
            new EngineOptions { WorkerThreads = 2 },
            (level, target, message) => logs.Enqueue(Tuple.Create(level, target, message)));

        BadInput(engine, database);
        RealExport(engine, database, system, objects, logs);
        Cancellation(engine, cancelJson, cancelObjects);

        engine.Dispose();
        engine.Dispose();
        Throws<ObjectDisposedException>(() => engine.RunAsync(cancelJson), "RunAsync on a disposed engine throws ObjectDisposedException");
        Throws<ObjectDisposedException>(() => Task.FromResult(engine.GetQueueSummary(database, system)), "an operator call on a disposed engine throws ObjectDisposedException");

        DisposeDuringRun(File.ReadAllText(Env("JIM_DOTNET_TEST_SLOW_REQUEST")));
        GC.Collect();
        GC.WaitForPendingFinalizers();
    }

    private static void BadInput(ExportEngine engine, DatabaseConnection database)
    {
        var e = Throws<ExportRequestException>(() => engine.RunAsync("{ not json"), "invalid JSON throws ExportRequestException");
        if (e != null)
        {
            Check(e.Status == ExportStatus.InvalidJson, "… with status InvalidJson");
            Check(e.Message.Contains("not valid JSON"), "… saying so: " + e.Message);
        }

        e = Throws<ExportRequestException>(
            () => engine.RunAsync(File.ReadAllText(Env("JIM_DOTNET_TEST_UNKNOWN_REQUEST"))),
            "an unknown connected system throws ExportRequestException");
        if (e != null)
        {
            Check(e.Status == ExportStatus.InvalidRequest, "… with status InvalidRequest");
            Check(e.Message.Contains("connected system 999999 does not exist"), "… naming the system: " + e.Message);
            Check(!e.Message.Contains(Env("JIM_DOTNET_TEST_PASSWORD")), "… and no secret");
        }

        var clear = new ExportRequest
        {
            Database = database,
            ConnectedSystemId = 1,
            Directory = new DirectoryConnection
            {
                Urls = new List<string> { Env("JIM_DOTNET_TEST_LDAP_URL") },
                Bind = DirectoryBind.Simple(Env("JIM_DOTNET_TEST_BIND_DN"), Env("JIM_DOTNET_TEST_PASSWORD")),
            },
        };
        e = Throws<ExportRequestException>(() => engine.RunAsync(clear), "a password over ldap:// without TLS is refused");
        if (e != null)
        {
            Check(e.Message.Contains("directory.bind") && e.Message.Contains("allow_password_without_tls"), "… naming the field and the opt-in: " + e.Message);
            Check(!e.Message.Contains(Env("JIM_DOTNET_TEST_PASSWORD")), "… and no secret");
        }

        var bad = new ExportRequest
        {
            Database = database,
            ConnectedSystemId = 0,
            Directory = new DirectoryConnection { Urls = new List<string> { "http://nope" }, Bind = DirectoryBind.Simple("cn=x", "secret-x") },
        };
        e = Throws<ExportRequestException>(() => engine.RunAsync(bad), "bad fields throw ExportRequestException");
        if (e != null)
        {
            Check(e.Message.Contains("directory.urls[0]") && e.Message.Contains("connected_system_id"), "… naming every bad field: " + e.Message);
            Check(!e.Message.Contains("secret-x"), "… and no secret");
            Check(!bad.Directory.Bind.ToString().Contains("secret-x"), "a bind prints no password: " + bad.Directory.Bind);
        }

        var badNtlm = new ExportRequest
        {
            Database = database,
            ConnectedSystemId = 1,
            Directory = new DirectoryConnection
            {
                Urls = new List<string> { "ldaps://dc1.gentian.local" },
                Bind = DirectoryBind.Ntlm("GENTIAN\\svc\\jim", null, "secret-n"),
            },
        };
        e = Throws<ExportRequestException>(() => engine.RunAsync(badNtlm), "a bad NTLM user name throws ExportRequestException");
        if (e != null)
        {
            Check(e.Message.Contains("directory.bind.username"), "… naming the field: " + e.Message);
            Check(!e.Message.Contains("secret-n"), "… and no secret");
        }
        var ntlm = DirectoryBind.Ntlm("Administrator", "GENTIAN", "secret-n");
        Check(ntlm.ToString() == "NTLM bind as GENTIAN\\Administrator (password ***)", "an NTLM bind prints no password: " + ntlm);

        var options = Throws<ExportRequestException>(
            () => Task.FromResult(new ExportEngine(new EngineOptions { WorkerThreads = 100000 })),
            "bad engine options throw ExportRequestException");
        if (options != null)
        {
            Check(options.Message.Contains("worker_threads"), "… naming the option: " + options.Message);
        }
    }

    private static void RealExport(ExportEngine engine, DatabaseConnection database, int system, long objects,
        ConcurrentQueue<Tuple<ExportLogLevel, string, string>> logs)
    {
        var request = new ExportRequest
        {
            Database = database,
            ConnectedSystemId = system,
            Directory = new DirectoryConnection
            {
                Urls = new List<string> { Env("JIM_DOTNET_TEST_LDAP_URL") },
                Bind = DirectoryBind.Simple(Env("JIM_DOTNET_TEST_BIND_DN"), Env("JIM_DOTNET_TEST_PASSWORD")),
                ConnectTimeoutMs = 10000,
                // The test directory on this host speaks plain LDAP.
                AllowPasswordWithoutTls = true,
            },
            Settings = new ExportSettings { DeleteBehaviour = "delete", ModifyBatchSize = 1000 },
            Options = new RunOptions { FlushSize = 50, ProgressIntervalMs = 100 },
        };
        var progress = new Recorder();
        var items = new ConcurrentQueue<ReportItem>();
        var sequences = new List<long>();
        ExportResult result = engine.RunAsync(request, progress, async batch =>
        {
            await Task.Yield(); // an asynchronous handler, as JIM's RPEI writer is
            lock (sequences)
            {
                sequences.Add(batch.Sequence);
            }
            foreach (ReportItem item in batch.Items)
            {
                items.Enqueue(item);
            }
        }).GetAwaiter().GetResult();
        Console.WriteLine("EXPORT " + result.Json);

        Check(result.SuccessCount == objects && result.FailedCount == 0 && result.DeferredCount == 0,
            "the export succeeded for all " + objects + ": " + result.Message);
        Check(!result.Cancelled && result.TotalPendingExports == objects, "… not cancelled, every export counted");
        Check(result.Message.StartsWith("Export complete: " + objects + " succeeded"), "… with JIM's outcome message");
        Check(result.Metrics != null && result.Metrics.Operations.Add >= objects, "… and metrics");
        Check(result.CompletedAt >= result.StartedAt && result.StartedAt.Year >= 2024, "… and timestamps");

        ReportItem[] all = items.ToArray();
        Check(all.Length == objects, "one batch item per export: " + all.Length);
        Check(all.All(i => i.Status == ExportItemStatus.Succeeded && i.ChangeType == PendingExportChangeType.Create), "every item succeeded as a Create");
        Check(all.All(i => i.ObjectChangeType == ObjectChangeType.Exported && (int)i.ObjectChangeType == 11), "every RPEI is Exported (11)");
        Check(all.Select(i => i.PendingExportId).Distinct().Count() == all.Length, "pending export ids are distinct");
        Check(all.All(i => i.Provisioned && i.SourceMetaverseObjectId.HasValue && i.QueuedByRunProfileExecutionItemId.HasValue),
            "provenance for the causal edges");
        Check(all.All(i => i.AnchorChanges.Any(a => a.AttributeName == "entryUUID" && a.OldValue == null && !string.IsNullOrEmpty(a.NewValue))),
            "each item carries its new entryUUID anchor");
        Check(all.All(i => i.WrittenChangeIds.Length == i.AttributeChangeCount && i.ErrorType == null && i.RunHistoryErrorType == null),
            "every change written, no errors");
        lock (sequences)
        {
            Check(sequences.SequenceEqual(Enumerable.Range(1, sequences.Count).Select(n => (long)n)), "batch reports arrive in order: " + string.Join(",", sequences));
        }

        ExportProgress[] events = progress.Events.ToArray();
        Check(events.Length >= 2 && events.First().Phase == ExportPhase.Preparing, "progress starts at Preparing");
        Check(events.Last().Phase == ExportPhase.Completed && events.Last().Processed == objects, "… and ends at Completed with every export processed");
        Check(logs.Any(l => l.Item1 == ExportLogLevel.Information && l.Item3.StartsWith("MetricsCheckpoint")), "log records reach the delegate (MetricsCheckpoint at Information)");
        Check(!logs.Any(l => l.Item1 == ExportLogLevel.Error), "no error logged");
        foreach (string module in new[] { "jim_export::directory", "jim_export::store" })
        {
            Check(logs.Any(l => l.Item2.StartsWith(module)), "the tracing events of " + module + " reach the delegate");
        }
        Check(logs.Any(l => l.Item1 == ExportLogLevel.Debug && l.Item3.StartsWith("connected system's schema loaded")),
            "Debug records by default");
        Check(new ExportRequest { Options = new RunOptions { LogLevel = ExportLogLevel.Warning } }.ToJson().Contains("\"log_level\":\"warn\""),
            "RunOptions.LogLevel sets the engine's options.log_level");

        QueueSummary summary = engine.GetQueueSummary(database, system);
        Check(summary.Total == objects && summary.Executable == 0 && summary.StrandedExecuting == 0, "the queue summary shows nothing left to do");
        Check(summary.ByStatus.Length == 1 && summary.ByStatus[0].StatusName == "Exported" && summary.ByStatus[0].Count == objects, "… every export Exported");
        Check(engine.ReleaseStranded(database, system, 0) == 0, "nothing stranded to release");
        Check(engine.ResetFailed(database, system) == 0, "nothing failed to reset");
        Check(engine.GetQueueSummaryAsync(database, system).GetAwaiter().GetResult().Total == objects, "the async operator call agrees");
    }

    private static void Cancellation(ExportEngine engine, string cancelJson, long cancelObjects)
    {
        // Cancel through the CancellationToken once the first batch report arrives.
        var cts = new CancellationTokenSource();
        long reported = 0;
        var cancelled = Throws<OperationCanceledException>(() => engine.RunAsync(cancelJson, null, batch =>
        {
            Interlocked.Add(ref reported, batch.Items.Length);
            cts.Cancel();
            return Task.FromResult(0);
        }, cts.Token), "cancelling the token mid-run throws OperationCanceledException");
        var typed = cancelled as ExportCancelledException;
        Check(typed != null && typed.CancellationToken == cts.Token, "… an ExportCancelledException for that token");
        if (typed != null)
        {
            Console.WriteLine("CANCEL " + typed.Result.Json);
            Check(typed.Result.Cancelled, "… whose result says cancelled");
            Check(typed.Result.SuccessCount > 0 && typed.Result.SuccessCount < cancelObjects,
                "… after part of the queue: " + typed.Result.SuccessCount + " of " + cancelObjects);
            Check(Interlocked.Read(ref reported) == typed.Result.SuccessCount + typed.Result.FailedCount + typed.Result.DeferredCount,
                "… and every completed export was reported in a batch");
        }

        // A batch handler that throws cancels the run and surfaces as ExportCallbackException.
        var failure = Throws<ExportCallbackException>(() => engine.RunAsync(cancelJson, null, batch =>
        {
            throw new InvalidOperationException("the RPEI writer failed");
        }), "a throwing batch handler throws ExportCallbackException");
        if (failure != null)
        {
            Console.WriteLine("CALLBACK_FAILURE " + failure.Result.Json);
            Check(failure.InnerException is InvalidOperationException && failure.InnerException.Message == "the RPEI writer failed",
                "… carrying the handler's exception");
            Check(failure.Result.Cancelled, "… after cancelling the run");
        }
    }

    private static void DisposeDuringRun(string slowJson)
    {
        var engine = new ExportEngine(new EngineOptions { WorkerThreads = 2, ShutdownTimeoutMs = 5000 });
        var firstBatch = new ManualResetEventSlim(false);
        Task<ExportResult> run = engine.RunAsync(slowJson, null, batch =>
        {
            firstBatch.Set();
            return Task.FromResult(0);
        });
        Check(firstBatch.Wait(TimeSpan.FromMinutes(2)), "the run is under way (a first batch was persisted)");
        engine.Dispose();
        Check(run.IsCompleted, "Dispose returned after the run ended");
        if (run.Status == TaskStatus.RanToCompletion)
        {
            Console.WriteLine("# the run was not interrupted: " + run.Result.Json);
        }
        var closed = Throws<ExportEngineClosedException>(() => run, "a run on an engine disposed by another thread throws ExportEngineClosedException");
        if (closed != null && closed.Result != null)
        {
            Console.WriteLine("DISPOSED " + closed.Result.Json);
            Check(closed.Result.Cancelled, "… after cancelling the run");
        }
    }
}
