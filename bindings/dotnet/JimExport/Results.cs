// What the engine reports: the run's result, progress, batch reports (what JIM turns into its run-history
// rows), log records and the queue summary, deserialised with DataContractJsonSerializer. Enum values
// cross as JIM's member names and are exposed as enums with JIM's numbers, so JIM can cast them to its
// own enums (e.g. (JIM.Models.Enums.ObjectChangeType)(int)item.ObjectChangeType).

using System;
using System.Globalization;
using System.Runtime.Serialization;

namespace JimExport
{
    /// <summary>JIM's <c>ExportPhase</c>.</summary>
    public enum ExportPhase
    {
        Preparing = 0,
        Executing = 1,
        ResolvingReferences = 2,
        Completed = 3,
    }

    /// <summary>JIM's <c>PendingExportChangeType</c>.</summary>
    public enum PendingExportChangeType
    {
        Create = 0,
        Update = 1,
        Delete = 2,
    }

    /// <summary>How one export ended in a run.</summary>
    public enum ExportItemStatus
    {
        /// <summary>Everything writable was written; the export awaits JIM's confirming import.</summary>
        Succeeded = 0,
        /// <summary>Written in part; references are still owed (JIM counts it as succeeded).</summary>
        PartlyWritten = 1,
        /// <summary>Nothing was writable now; due again in 5 minutes, no error counted.</summary>
        Deferred = 2,
        /// <summary>The attempt failed.</summary>
        Failed = 3,
    }

    /// <summary>JIM's <c>ObjectChangeType</c> (<c>ActivityRunProfileExecutionItems.ObjectChangeType</c>).</summary>
    public enum ObjectChangeType
    {
        NotSet = 0,
        Added = 1,
        Updated = 2,
        Deleted = 3,
        Projected = 4,
        Joined = 5,
        AttributeFlow = 6,
        Disconnected = 7,
        DisconnectedOutOfScope = 8,
        OutOfScopeRetainJoin = 9,
        DriftCorrection = 10,
        Exported = 11,
        Deprovisioned = 12,
        NoChange = 13,
        PendingExport = 14,
        PendingExportConfirmed = 15,
        Created = 16,
    }

    /// <summary>JIM's <c>ActivityRunProfileExecutionItemErrorType</c>.</summary>
    public enum ActivityRunProfileExecutionItemErrorType
    {
        NotSet = 0,
        AmbiguousMatch = 1,
        CouldNotMatchObjectType = 2,
        CouldNotJoinDueToExistingJoin = 3,
        DuplicateImportedAttributes = 4,
        MissingExternalIdAttributeValue = 5,
        UnexpectedAttribute = 6,
        UnresolvedReference = 7,
        UnsupportedExternalIdAttributeType = 8,
        ExportNotConfirmed = 9,
        ExportConfirmationFailed = 10,
        CsoCreationFailed = 11,
        DuplicateObject = 12,
        InvalidGeneratedExternalId = 13,
        UnhandledError = 14,
        ExpressionEvaluationError = 15,
        ExpressionMissingInput = 16,
        MultiValuedToSingleValued = 17,
        DeltaImportFallbackToFullImport = 18,
        ImportHashVerificationFailed = 19,
        ImportAttributeValueError = 20,
        ConnectorConfigurationError = 21,
        CouldNotExportDueToExistingConnectedSystemObject = 22,
    }

    /// <summary>JIM's <c>ConnectedSystemExportErrorType</c>.</summary>
    public enum ConnectedSystemExportErrorType
    {
        General = 0,
        InvalidGeneratedExternalId = 1,
        OutsideManagedScope = 2,
        PlaceholderMemberConstraintViolation = 3,
        MissingDependency = 4,
        ConcurrencyConflict = 5,
    }

    /// <summary>Log severity with Microsoft.Extensions.Logging.LogLevel's names and numbers, so a host casts
    /// it: <c>(LogLevel)(int)level</c>. (The binding builds with no NuGet package, hence its own enum.) The
    /// engine's records are Trace to Error; Critical and None exist for the mapping's sake.</summary>
    public enum ExportLogLevel
    {
        Trace = 0,
        Debug = 1,
        Information = 2,
        Warning = 3,
        Error = 4,
        Critical = 5,
        None = 6,
    }

    /// <summary>The engine's names of the levels (<c>options.log_level</c>, the records' <c>level</c>).</summary>
    internal static class LogLevels
    {
        private static readonly string[] Names = { "trace", "debug", "info", "warn", "error" };

        /// <summary>The engine's level for a threshold: Critical and None, which the engine lacks, ask for
        /// its most severe records.</summary>
        internal static string EngineName(ExportLogLevel level)
        {
            int i = (int)level;
            return Names[i < 0 ? 0 : Math.Min(i, Names.Length - 1)];
        }

        internal static ExportLogLevel FromEngineName(string name)
        {
            int i = Array.IndexOf(Names, name);
            return i < 0 ? ExportLogLevel.Debug : (ExportLogLevel)i;
        }
    }

    internal static class Parse
    {
        internal static T Enum<T>(string name, T fallback) where T : struct
        {
            T value;
            return name != null && System.Enum.TryParse(name.Replace("_", string.Empty), true, out value) ? value : fallback;
        }

        internal static T? OptionalEnum<T>(string name) where T : struct
        {
            T value;
            return name != null && System.Enum.TryParse(name.Replace("_", string.Empty), true, out value) ? value : (T?)null;
        }

        internal static Guid? OptionalGuid(string s)
        {
            return s == null ? (Guid?)null : Guid.Parse(s);
        }

        internal static DateTimeOffset? OptionalTime(string s)
        {
            return s == null ? (DateTimeOffset?)null : DateTimeOffset.Parse(s, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind);
        }
    }

    /// <summary>The result of one run: JIM's <c>ExportExecutionResult</c> fields and the engine's metrics.</summary>
    [DataContract]
    public sealed class ExportResult
    {
        [DataMember(Name = "connected_system_id")] public int ConnectedSystemId { get; private set; }
        /// <summary>True for a dry run (JIM's PreviewOnly).</summary>
        [DataMember(Name = "dry_run")] public bool DryRun { get; private set; }
        [DataMember(Name = "started_at")] private string startedAt;
        [DataMember(Name = "completed_at")] private string completedAt;
        /// <summary>Eligible exports when the run started.</summary>
        [DataMember(Name = "total_pending_exports")] public long TotalPendingExports { get; private set; }
        /// <summary>Succeeded, written-in-part included (as JIM counts them).</summary>
        [DataMember(Name = "success_count")] public long SuccessCount { get; private set; }
        [DataMember(Name = "failed_count")] public long FailedCount { get; private set; }
        [DataMember(Name = "deferred_count")] public long DeferredCount { get; private set; }
        [DataMember(Name = "partially_exported_count")] public long PartiallyExportedCount { get; private set; }
        [DataMember(Name = "unresolvable_reference_count")] public long UnresolvableReferenceCount { get; private set; }
        [DataMember(Name = "reconciled_count")] public long ReconciledCount { get; private set; }
        [DataMember(Name = "created_container_external_ids")] public string[] CreatedContainerExternalIds { get; private set; }
        [DataMember(Name = "optimistic_apply_applied_count")] public long OptimisticApplyAppliedCount { get; private set; }
        [DataMember(Name = "optimistic_apply_skipped_count")] public long OptimisticApplySkippedCount { get; private set; }
        [DataMember(Name = "optimistic_apply_failed_count")] public long OptimisticApplyFailedCount { get; private set; }
        [DataMember(Name = "optimistic_apply_unresolved_reference_count")] public long OptimisticApplyUnresolvedReferenceCount { get; private set; }
        /// <summary>True when the run was cancelled (its unexecuted claims were returned).</summary>
        [DataMember(Name = "cancelled")] public bool Cancelled { get; private set; }
        /// <summary>The Activity outcome message in JIM's wording.</summary>
        [DataMember(Name = "message")] public string Message { get; private set; }
        /// <summary>The directory's dialect, e.g. <c>open_ldap</c>.</summary>
        [DataMember(Name = "dialect")] public string Dialect { get; private set; }
        [DataMember(Name = "metrics")] public RunMetrics Metrics { get; private set; }

        public DateTimeOffset StartedAt { get { return Parse.OptionalTime(startedAt) ?? default(DateTimeOffset); } }
        public DateTimeOffset CompletedAt { get { return Parse.OptionalTime(completedAt) ?? default(DateTimeOffset); } }

        /// <summary>The result document as the engine returned it.</summary>
        public string Json { get; internal set; }
    }

    /// <summary>The engine's metrics of a run.</summary>
    [DataContract]
    public sealed class RunMetrics
    {
        [DataMember(Name = "operations")] public OperationCounts Operations { get; private set; }
        [DataMember(Name = "sql_statements")] public long SqlStatements { get; private set; }
        [DataMember(Name = "flushes")] public long Flushes { get; private set; }
        [DataMember(Name = "objects_per_second")] private double? objectsPerSecond;
        [DataMember(Name = "elapsed_ms")] public long ElapsedMs { get; private set; }
        [DataMember(Name = "time_to_first_write_ms")] public long? TimeToFirstWriteMs { get; private set; }
        [DataMember(Name = "max_in_flight")] public long MaxInFlight { get; private set; }
        [DataMember(Name = "mean_in_flight")] private double? meanInFlight;
        [DataMember(Name = "in_flight_limit")] public long InFlightLimit { get; private set; }
        [DataMember(Name = "min_in_flight_limit")] public long MinInFlightLimit { get; private set; }
        [DataMember(Name = "max_in_flight_limit")] public long MaxInFlightLimit { get; private set; }
        [DataMember(Name = "in_flight_limit_increases")] public long InFlightLimitIncreases { get; private set; }
        [DataMember(Name = "in_flight_limit_decreases")] public long InFlightLimitDecreases { get; private set; }
        [DataMember(Name = "retries")] public long Retries { get; private set; }
        [DataMember(Name = "reconnects")] public long Reconnects { get; private set; }
        [DataMember(Name = "recovered")] public long Recovered { get; private set; }
        /// <summary>Exports dropped because another engine took their rows over after this run's lease ran out.</summary>
        [DataMember(Name = "lease_lost")] public long LeaseLost { get; private set; }
        /// <summary>Median time of an export from the start of its execution to its result, in ms; null when none ran.</summary>
        [DataMember(Name = "export_latency_p50_ms")] public double? ExportLatencyP50Ms { get; private set; }
        /// <summary>99th percentile of the same, in ms.</summary>
        [DataMember(Name = "export_latency_p99_ms")] public double? ExportLatencyP99Ms { get; private set; }

        public double ObjectsPerSecond { get { return objectsPerSecond ?? 0; } }
        public double MeanInFlight { get { return meanInFlight ?? 0; } }
    }

    /// <summary>Directory operations by kind.</summary>
    [DataContract]
    public sealed class OperationCounts
    {
        [DataMember(Name = "add")] public long Add { get; private set; }
        [DataMember(Name = "modify")] public long Modify { get; private set; }
        [DataMember(Name = "modify_dn")] public long ModifyDn { get; private set; }
        [DataMember(Name = "delete")] public long Delete { get; private set; }
        [DataMember(Name = "search")] public long Search { get; private set; }
    }

    /// <summary>A progress snapshot (JIM copies it into its Activity).</summary>
    [DataContract]
    public sealed class ExportProgress
    {
        [DataMember(Name = "connected_system_id")] public int ConnectedSystemId { get; private set; }
        [DataMember(Name = "phase")] private string phase;
        [DataMember(Name = "total")] public long Total { get; private set; }
        [DataMember(Name = "processed")] public long Processed { get; private set; }
        [DataMember(Name = "succeeded")] public long Succeeded { get; private set; }
        [DataMember(Name = "failed")] public long Failed { get; private set; }
        [DataMember(Name = "deferred")] public long Deferred { get; private set; }
        [DataMember(Name = "rate")] private double? rate;
        [DataMember(Name = "in_flight")] public long InFlight { get; private set; }
        [DataMember(Name = "in_flight_limit")] public long InFlightLimit { get; private set; }
        [DataMember(Name = "elapsed_ms")] public long ElapsedMs { get; private set; }
        [DataMember(Name = "message")] public string Message { get; private set; }

        public ExportPhase Phase { get { return Parse.Enum(phase, ExportPhase.Executing); } }
        /// <summary>Objects per second since the run started.</summary>
        public double Rate { get { return rate ?? 0; } }
    }

    /// <summary>The outcomes persisted by one flush: one item per pending export.</summary>
    [DataContract]
    public sealed class BatchReport
    {
        [DataMember(Name = "connected_system_id")] public int ConnectedSystemId { get; private set; }
        /// <summary>1 for the run's first flush, then 2, 3, ...</summary>
        [DataMember(Name = "sequence")] public long Sequence { get; private set; }
        [DataMember(Name = "items")] public ReportItem[] Items { get; private set; }
    }

    /// <summary>How one pending export ended: what JIM needs for its RPEI, causal edge, change history,
    /// CSO cache and initial-password staging.</summary>
    [DataContract]
    public sealed class ReportItem
    {
        [DataMember(Name = "pending_export_id")] private string pendingExportId;
        [DataMember(Name = "change_type")] private string changeType;
        [DataMember(Name = "connected_system_object_id")] private string connectedSystemObjectId;
        [DataMember(Name = "status")] private string status;
        [DataMember(Name = "object_change_type")] private string objectChangeType;
        /// <summary>The error of a failed export (never a secret).</summary>
        [DataMember(Name = "error_message")] public string ErrorMessage { get; private set; }
        [DataMember(Name = "error_type")] private string errorType;
        [DataMember(Name = "run_history_error_type")] private string runHistoryErrorType;
        /// <summary><c>ErrorCount</c> after this attempt.</summary>
        [DataMember(Name = "error_count")] public int ErrorCount { get; private set; }
        [DataMember(Name = "written_change_ids")] private string[] writtenChangeIds;
        [DataMember(Name = "attribute_change_count")] public int AttributeChangeCount { get; private set; }
        [DataMember(Name = "source_metaverse_object_id")] private string sourceMetaverseObjectId;
        [DataMember(Name = "queued_by_run_profile_execution_item_id")] private string queuedByRunProfileExecutionItemId;
        /// <summary><c>ProvisioningSyncRuleId</c> (provisioning Creates).</summary>
        [DataMember(Name = "provisioning_sync_rule_id")] public int? ProvisioningSyncRuleId { get; private set; }
        /// <summary>True when this run created the object: stage its initial password if the sync rule asks.</summary>
        [DataMember(Name = "provisioned")] public bool Provisioned { get; private set; }
        [DataMember(Name = "anchor_changes")] public AnchorChange[] AnchorChanges { get; private set; }
        /// <summary>JIM's unresolved-reference note (under the system's Error handling).</summary>
        [DataMember(Name = "unresolved_reference_note")] public string UnresolvedReferenceNote { get; private set; }

        public Guid PendingExportId { get { return Guid.Parse(pendingExportId); } }
        public PendingExportChangeType ChangeType { get { return Parse.Enum(changeType, PendingExportChangeType.Update); } }
        public Guid? ConnectedSystemObjectId { get { return Parse.OptionalGuid(connectedSystemObjectId); } }
        public ExportItemStatus Status { get { return Parse.Enum(status, ExportItemStatus.Failed); } }
        /// <summary>The RPEI's ObjectChangeType: Exported (11), Deprovisioned (12) or PendingExport (14).</summary>
        public ObjectChangeType ObjectChangeType { get { return Parse.Enum(objectChangeType, ObjectChangeType.NotSet); } }
        public ConnectedSystemExportErrorType? ErrorType { get { return Parse.OptionalEnum<ConnectedSystemExportErrorType>(errorType); } }
        /// <summary>The RPEI's ErrorType: InvalidGeneratedExternalId (13), UnhandledError (14) or UnresolvedReference (7).</summary>
        public ActivityRunProfileExecutionItemErrorType? RunHistoryErrorType { get { return Parse.OptionalEnum<ActivityRunProfileExecutionItemErrorType>(runHistoryErrorType); } }
        /// <summary>Attribute value changes written in this run (now ExportedPendingConfirmation).</summary>
        public Guid[] WrittenChangeIds { get { return Array.ConvertAll(writtenChangeIds ?? new string[0], Guid.Parse); } }
        public Guid? SourceMetaverseObjectId { get { return Parse.OptionalGuid(sourceMetaverseObjectId); } }
        public Guid? QueuedByRunProfileExecutionItemId { get { return Parse.OptionalGuid(queuedByRunProfileExecutionItemId); } }
    }

    /// <summary>An anchor value the export changed on the CSO (a new entryUUID/objectGUID, a new DN).</summary>
    [DataContract]
    public sealed class AnchorChange
    {
        [DataMember(Name = "attribute_id")] public int AttributeId { get; private set; }
        [DataMember(Name = "attribute_name")] public string AttributeName { get; private set; }
        [DataMember(Name = "old_value")] public string OldValue { get; private set; }
        [DataMember(Name = "new_value")] public string NewValue { get; private set; }
    }

    [DataContract]
    internal sealed class LogRecordDocument
    {
        [DataMember(Name = "level")] public string Level { get; private set; }
        [DataMember(Name = "target")] public string Target { get; private set; }
        [DataMember(Name = "message")] public string Message { get; private set; }
    }

    /// <summary>A connected system's queue at a glance.</summary>
    [DataContract]
    public sealed class QueueSummary
    {
        [DataMember(Name = "connected_system_id")] public int ConnectedSystemId { get; private set; }
        [DataMember(Name = "by_status")] public StatusCount[] ByStatus { get; private set; }
        [DataMember(Name = "total")] public long Total { get; private set; }
        /// <summary>Rows a run would pick up now.</summary>
        [DataMember(Name = "executable")] public long Executable { get; private set; }
        [DataMember(Name = "due")] public long Due { get; private set; }
        [DataMember(Name = "not_yet_due")] public long NotYetDue { get; private set; }
        /// <summary>Rows left Executing longer than the lease (a crashed run's).</summary>
        [DataMember(Name = "stranded_executing")] public long StrandedExecuting { get; private set; }
        [DataMember(Name = "with_unresolved_references")] public long WithUnresolvedReferences { get; private set; }
        [DataMember(Name = "oldest_failure")] private string oldestFailure;

        public DateTimeOffset? OldestFailure { get { return Parse.OptionalTime(oldestFailure); } }
    }

    /// <summary>The pending exports of one (status, change type) pair.</summary>
    [DataContract]
    public sealed class StatusCount
    {
        /// <summary><c>PendingExports.Status</c> as stored.</summary>
        [DataMember(Name = "status")] public int Status { get; private set; }
        [DataMember(Name = "status_name")] public string StatusName { get; private set; }
        /// <summary><c>PendingExports.ChangeType</c> as stored.</summary>
        [DataMember(Name = "change_type")] public int ChangeType { get; private set; }
        [DataMember(Name = "change_type_name")] public string ChangeTypeName { get; private set; }
        [DataMember(Name = "count")] public long Count { get; private set; }
    }

    [DataContract]
    internal sealed class CountAnswer
    {
        [DataMember(Name = "released")] public long? Released { get; private set; }
        [DataMember(Name = "reset")] public long? Reset { get; private set; }
    }
}
