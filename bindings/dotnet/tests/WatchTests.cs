// The .NET binding's continuous export (WatchAsync) and trigger calls against the real native library,
// PostgreSQL and slapd, run under Mono by tests/ffi_dotnet_watch.rs. C# 7.2.
//
// Environment (set by the Rust test):
//   JIM_DOTNET_WATCH_DB          the database connection string
//   JIM_DOTNET_WATCH_SYSTEM      the connected system to watch (its queue is empty at the start)
//   JIM_DOTNET_WATCH_LDAP_URL / _BIND_DN / _PASSWORD   its directory
//   JIM_DOTNET_WATCH_MARKER      a file this program creates once the watch runs: the Rust test then
//                                stages JIM_DOTNET_WATCH_EXPECT pending exports
//   JIM_DOTNET_WATCH_EXPECT      how many exports to wait for before stopping the watch
//
// Output: "ok - …" / "not ok - …" per check, "WATCH <json>" with the result, and exit status 0 when
// every check passed.

using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.IO;
using System.Threading;
using System.Threading.Tasks;
using JimExport;

internal static class WatchTests
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
        var database = new DatabaseConnection { Connection = Env("JIM_DOTNET_WATCH_DB") };
        int expect = int.Parse(Env("JIM_DOTNET_WATCH_EXPECT"));
        var logs = new ConcurrentQueue<string>();
        using (var engine = new ExportEngine(new EngineOptions { WorkerThreads = 2 }, (level, target, message) => logs.Enqueue(message)))
        {
            Check(ExportEngine.NotifyTriggerSql.Contains("pg_notify"), "the trigger SQL notifies");
            Check(ExportEngine.NotifyTriggerRemovalSql.Contains("DROP TRIGGER"), "the removal SQL drops the triggers");
            Check(!engine.IsNotifyTriggerInstalled(database), "no trigger at first");
            engine.InstallNotifyTrigger(database);
            Check(engine.IsNotifyTriggerInstalled(database), "InstallNotifyTrigger installs it");

            var request = new WatchRequest
            {
                Requests = new List<ExportRequest>
                {
                    new ExportRequest
                    {
                        Database = database,
                        ConnectedSystemId = int.Parse(Env("JIM_DOTNET_WATCH_SYSTEM")),
                        Directory = new DirectoryConnection
                        {
                            Urls = new List<string> { Env("JIM_DOTNET_WATCH_LDAP_URL") },
                            Bind = DirectoryBind.Simple(Env("JIM_DOTNET_WATCH_BIND_DN"), Env("JIM_DOTNET_WATCH_PASSWORD")),
                            AllowPasswordWithoutTls = true,
                        },
                    },
                },
                Watch = new WatchOptions { NotifyRecheckMs = 600000 },
            };
            var items = new ConcurrentQueue<ReportItem>();
            var enough = new ManualResetEventSlim(false);
            var stop = new CancellationTokenSource();
            Task<WatchResult> watch = engine.WatchAsync(request, null, batch =>
            {
                foreach (ReportItem item in batch.Items)
                {
                    items.Enqueue(item);
                }
                if (items.Count >= expect)
                {
                    enough.Set();
                }
                return Task.CompletedTask;
            }, stop.Token);

            Thread.Sleep(500);
            Check(!watch.IsCompleted, "the watch keeps running on an empty queue");
            File.WriteAllText(Env("JIM_DOTNET_WATCH_MARKER"), "watching");
            Check(enough.Wait(TimeSpan.FromSeconds(60)), "the exports staged after the start are reported (" + items.Count + ")");
            stop.Cancel();
            WatchResult result = watch.GetAwaiter().GetResult();
            Console.WriteLine("WATCH " + result.Json);
            Check(result.Mode == "notifications", "the watch used notifications: " + result.Mode);
            Check(result.Exports == expect, "the watch exported " + result.Exports);
            Check(result.WakeUps.Notification >= 1, "woken by notifications: " + result.WakeUps.Notification);
            Check(result.Systems.Length == 1 && result.Systems[0].Succeeded == expect, "one system, every export succeeded");
            bool logged = false;
            foreach (string message in logs)
            {
                logged |= message.Contains("woken by PostgreSQL notifications");
            }
            Check(logged, "the log says the watch uses notifications");

            engine.RemoveNotifyTrigger(database);
            Check(!engine.IsNotifyTriggerInstalled(database), "RemoveNotifyTrigger removes it");
        }
    }
}
