// Continuous export ("watch"): WatchAsync keeps exporting what JIM stages until its CancellationToken
// fires, and the operator calls for the notifying trigger that lets it react at once (see
// jim_engine_watch and jim_engine_install_notify_trigger in include/jim_export.h).

using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Runtime.Serialization;
using System.Threading;
using System.Threading.Tasks;

namespace JimExport
{
    internal static class WatchNativeMethods
    {
        [DllImport(NativeMethods.Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern ExportStatus jim_engine_watch(
            EngineHandle engine,
            byte[] requestJson,
            ref NativeCallbacks callbacks,
            CancelHandle cancel,
            out IntPtr resultJson,
            out IntPtr error);

        [DllImport(NativeMethods.Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern ExportStatus jim_engine_install_notify_trigger(EngineHandle engine, byte[] requestJson, out IntPtr json, out IntPtr error);

        [DllImport(NativeMethods.Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern ExportStatus jim_engine_remove_notify_trigger(EngineHandle engine, byte[] requestJson, out IntPtr json, out IntPtr error);

        [DllImport(NativeMethods.Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern ExportStatus jim_engine_notify_trigger_status(EngineHandle engine, byte[] requestJson, out IntPtr json, out IntPtr error);

        [DllImport(NativeMethods.Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr jim_notify_trigger_sql();

        [DllImport(NativeMethods.Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr jim_notify_trigger_removal_sql();
    }

    /// <summary>A continuous export of one or several connected systems on the same JIM database.</summary>
    [DataContract]
    public sealed class WatchRequest
    {
        /// <summary>One export request per connected system: same database, different systems, no dry run.</summary>
        [DataMember(Name = "requests", Order = 1)]
        public List<ExportRequest> Requests { get; set; }

        /// <summary>How the watch waits for work; null = defaults.</summary>
        [DataMember(Name = "watch", Order = 2, EmitDefaultValue = false)]
        public WatchOptions Watch { get; set; }

        /// <summary>The request as the JSON document the engine takes. It holds the passwords: never log it.</summary>
        public string ToJson()
        {
            return Json.Write(this);
        }

        /// <summary>Never shows the passwords.</summary>
        public override string ToString()
        {
            return "WatchRequest(" + (Requests == null ? 0 : Requests.Count) + " connected system(s))";
        }
    }

    /// <summary>How a watch waits between passes; members left null take the engine's defaults.</summary>
    [DataContract]
    public sealed class WatchOptions
    {
        /// <summary><c>auto</c> (notifications when the trigger is installed, else polling) or <c>poll</c>.</summary>
        [DataMember(Name = "wake_up", Order = 1, EmitDefaultValue = false)]
        public string WakeUp { get; set; }

        /// <summary>The poll interval after a pass that exported something, in ms (default 100).</summary>
        [DataMember(Name = "poll_min_ms", Order = 2, EmitDefaultValue = false)]
        public long? PollMinMs { get; set; }

        /// <summary>The longest poll interval, reached by doubling while idle, in ms (default 3000).</summary>
        [DataMember(Name = "poll_max_ms", Order = 3, EmitDefaultValue = false)]
        public long? PollMaxMs { get; set; }

        /// <summary>With notifications, the safety re-scan interval, in ms (default 60000).</summary>
        [DataMember(Name = "notify_recheck_ms", Order = 4, EmitDefaultValue = false)]
        public long? NotifyRecheckMs { get; set; }
    }

    /// <summary>Wake-ups of a watch by cause.</summary>
    [DataContract]
    public sealed class WatchWakeUps
    {
        [DataMember(Name = "startup")] public long Startup { get; private set; }
        [DataMember(Name = "notification")] public long Notification { get; private set; }
        [DataMember(Name = "poll")] public long Poll { get; private set; }
        [DataMember(Name = "retry_due")] public long RetryDue { get; private set; }
        [DataMember(Name = "reconnect")] public long Reconnect { get; private set; }
        [DataMember(Name = "recheck")] public long Recheck { get; private set; }
        [DataMember(Name = "after_error")] public long AfterError { get; private set; }
    }

    /// <summary>One connected system's part of a watch.</summary>
    [DataContract]
    public sealed class WatchSystemResult
    {
        [DataMember(Name = "connected_system_id")] public int ConnectedSystemId { get; private set; }
        [DataMember(Name = "passes")] public long Passes { get; private set; }
        [DataMember(Name = "failed_passes")] public long FailedPasses { get; private set; }
        [DataMember(Name = "exports")] public long Exports { get; private set; }
        [DataMember(Name = "succeeded")] public long Succeeded { get; private set; }
        [DataMember(Name = "failed")] public long Failed { get; private set; }
        [DataMember(Name = "deferred")] public long Deferred { get; private set; }
        [DataMember(Name = "wake_ups")] public WatchWakeUps WakeUps { get; private set; }
        [DataMember(Name = "last_error")] public string LastError { get; private set; }
    }

    /// <summary>What a watch did, returned when it stops.</summary>
    [DataContract]
    public sealed class WatchResult
    {
        [DataMember(Name = "started_at")] private string startedAt;
        [DataMember(Name = "completed_at")] private string completedAt;
        /// <summary><c>notifications</c> or <c>polling</c>.</summary>
        [DataMember(Name = "mode")] public string Mode { get; private set; }
        [DataMember(Name = "trigger_installed")] public bool TriggerInstalled { get; private set; }
        [DataMember(Name = "listener_reconnects")] public long ListenerReconnects { get; private set; }
        [DataMember(Name = "passes")] public long Passes { get; private set; }
        [DataMember(Name = "exports")] public long Exports { get; private set; }
        [DataMember(Name = "wake_ups")] public WatchWakeUps WakeUps { get; private set; }
        [DataMember(Name = "systems")] public WatchSystemResult[] Systems { get; private set; }
        [DataMember(Name = "message")] public string Message { get; private set; }

        public DateTimeOffset StartedAt { get { return Parse.OptionalTime(startedAt) ?? default(DateTimeOffset); } }
        public DateTimeOffset CompletedAt { get { return Parse.OptionalTime(completedAt) ?? default(DateTimeOffset); } }

        /// <summary>The result document as the engine returned it.</summary>
        public string Json { get; internal set; }
    }

    [DataContract]
    internal sealed class TriggerRequest
    {
        [DataMember(Name = "database", Order = 1)]
        public DatabaseConnection Database { get; set; }
    }

    [DataContract]
    internal sealed class TriggerAnswer
    {
        [DataMember(Name = "installed")] public bool Installed { get; private set; }
    }

    public sealed partial class ExportEngine
    {
        /// <summary>Exports continuously on a thread of its own: each pass over a system's queue is reported
        /// through <paramref name="progress"/> and <paramref name="onBatch"/> as a run's would be; staged exports are
        /// picked up within a fraction of a second (PostgreSQL notifications when the trigger of
        /// <see cref="InstallNotifyTrigger"/> is installed, polling otherwise), rows whose NextRetryAt comes due
        /// when it does.</summary>
        /// <param name="cancellationToken">Stops the watch: the passes in progress finish their in-flight
        /// operations and return their unexecuted claims, and the task completes with the result (a stopped
        /// watch is its normal end, not a cancellation).</param>
        /// <exception cref="ExportRequestException">The request is invalid, or names an unknown connected system.</exception>
        /// <exception cref="ExportDatabaseException">JIM's database is unreachable or not the expected schema at the start.</exception>
        /// <exception cref="ExportDirectoryException">A directory is unreachable or refused the bind at the start.</exception>
        /// <exception cref="ExportEngineClosedException">The engine was disposed during the watch.</exception>
        public Task<WatchResult> WatchAsync(
            WatchRequest request,
            IProgress<ExportProgress> progress = null,
            Func<BatchReport, Task> onBatch = null,
            CancellationToken cancellationToken = default(CancellationToken))
        {
            if (request == null)
            {
                throw new ArgumentNullException("request");
            }
            return WatchAsync(request.ToJson(), progress, onBatch, cancellationToken);
        }

        /// <summary>A watch from a request JSON document (see <c>jim_engine_watch</c> in jim_export.h).</summary>
        public Task<WatchResult> WatchAsync(
            string requestJson,
            IProgress<ExportProgress> progress = null,
            Func<BatchReport, Task> onBatch = null,
            CancellationToken cancellationToken = default(CancellationToken))
        {
            return StartRun(requestJson, progress, onBatch, cancellationToken, true).WatchCompletion;
        }

        /// <summary>Installs the notifying trigger on JIM's PendingExports (an operator action needing the right
        /// to create functions and triggers; idempotent). Watches started afterwards use notifications. Blocks.</summary>
        public void InstallNotifyTrigger(DatabaseConnection database)
        {
            TriggerCall("jim_engine_install_notify_trigger", WatchNativeMethods.jim_engine_install_notify_trigger, database);
        }

        /// <summary>Removes the notifying trigger and its function (idempotent). Blocks.</summary>
        public void RemoveNotifyTrigger(DatabaseConnection database)
        {
            TriggerCall("jim_engine_remove_notify_trigger", WatchNativeMethods.jim_engine_remove_notify_trigger, database);
        }

        /// <summary>True when the notifying trigger is installed and enabled. Blocks.</summary>
        public bool IsNotifyTriggerInstalled(DatabaseConnection database)
        {
            return TriggerCall("jim_engine_notify_trigger_status", WatchNativeMethods.jim_engine_notify_trigger_status, database);
        }

        /// <summary>The SQL that installs the notifying trigger, for an operator or a migration to apply by hand.</summary>
        public static string NotifyTriggerSql
        {
            get { return NativeMethods.ReadUtf8Z(WatchNativeMethods.jim_notify_trigger_sql()); }
        }

        /// <summary>The SQL that removes the notifying trigger.</summary>
        public static string NotifyTriggerRemovalSql
        {
            get { return NativeMethods.ReadUtf8Z(WatchNativeMethods.jim_notify_trigger_removal_sql()); }
        }

        private bool TriggerCall(string function, OperatorCall call, DatabaseConnection database)
        {
            if (database == null)
            {
                throw new ArgumentNullException("database");
            }
            ThrowIfDisposed();
            IntPtr json;
            IntPtr error;
            var request = new TriggerRequest { Database = database };
            ExportStatus status = call(handle, NativeMethods.Utf8Z(Json.Write(request)), out json, out error);
            if (status != ExportStatus.Ok)
            {
                throw ExportException.From(function, status, NativeMethods.TakeString(error));
            }
            return Json.Read<TriggerAnswer>(NativeMethods.TakeString(json)).Installed;
        }
    }
}
