// The export request and the engine options as typed objects, serialised to the JSON documents the C ABI
// takes (see jim_engine_run in include/jim_export.h). Members left null are omitted, so the engine's
// defaults apply. Enum-like members are strings with the values the header lists.

using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.Serialization;
using System.Runtime.Serialization.Json;
using System.Text;

namespace JimExport
{
    internal static class Json
    {
        // One serializer per type, built once: building one is costly, and they are thread-safe.
        private static class Serializer<T>
        {
            internal static readonly DataContractJsonSerializer Instance = new DataContractJsonSerializer(typeof(T));
        }

        internal static string Write<T>(T value)
        {
            using (var stream = new MemoryStream())
            {
                Serializer<T>.Instance.WriteObject(stream, value);
                return Encoding.UTF8.GetString(stream.ToArray());
            }
        }

        internal static T Read<T>(byte[] utf8)
        {
            using (var stream = new MemoryStream(utf8))
            {
                return (T)Serializer<T>.Instance.ReadObject(stream);
            }
        }

        internal static T Read<T>(string json)
        {
            return Read<T>(Encoding.UTF8.GetBytes(json));
        }
    }

    /// <summary>Everything one export run needs: JIM's database, the connected system, its directory,
    /// its LDAP export settings and the run's options.</summary>
    [DataContract]
    public sealed class ExportRequest
    {
        /// <summary>JIM's PostgreSQL database.</summary>
        [DataMember(Name = "database", Order = 1)]
        public DatabaseConnection Database { get; set; }

        /// <summary><c>ConnectedSystems.Id</c> of the system to export.</summary>
        [DataMember(Name = "connected_system_id", Order = 2)]
        public int ConnectedSystemId { get; set; }

        /// <summary>The target directory.</summary>
        [DataMember(Name = "directory", Order = 3)]
        public DirectoryConnection Directory { get; set; }

        /// <summary>The system's LDAP export settings (JIM's connector settings); null = defaults.</summary>
        [DataMember(Name = "settings", Order = 4, EmitDefaultValue = false)]
        public ExportSettings Settings { get; set; }

        /// <summary>Run options; null = defaults.</summary>
        [DataMember(Name = "options", Order = 5, EmitDefaultValue = false)]
        public RunOptions Options { get; set; }

        /// <summary>The request as the JSON document the engine takes. It holds the passwords: never log it.</summary>
        public string ToJson()
        {
            return Json.Write(this);
        }

        /// <summary>Never shows the passwords.</summary>
        public override string ToString()
        {
            return "ExportRequest(connected system " + ConnectedSystemId + ")";
        }
    }

    /// <summary>How to reach JIM's database.</summary>
    [DataContract]
    public sealed class DatabaseConnection
    {
        /// <summary>The Npgsql connection string JIM's worker holds (<c>Host=…;Port=…;Username=…;Password=…;Database=…</c>)
        /// or a <c>postgres://</c> URL.</summary>
        [DataMember(Name = "connection", Order = 1)]
        public string Connection { get; set; }

        /// <summary>TLS overrides; null = what the connection string says.</summary>
        [DataMember(Name = "tls", Order = 2, EmitDefaultValue = false)]
        public DatabaseTls Tls { get; set; }

        /// <summary>Connections the engine may hold open (default 4).</summary>
        [DataMember(Name = "max_connections", Order = 3, EmitDefaultValue = false)]
        public int? MaxConnections { get; set; }

        /// <summary>Connect timeout in milliseconds (default 10,000).</summary>
        [DataMember(Name = "connect_timeout_ms", Order = 4, EmitDefaultValue = false)]
        public long? ConnectTimeoutMs { get; set; }

        /// <summary>The longest a statement may run, in milliseconds (default 30,000; Npgsql's Command Timeout).</summary>
        [DataMember(Name = "statement_timeout_ms", Order = 5, EmitDefaultValue = false)]
        public long? StatementTimeoutMs { get; set; }

        /// <summary>How long statements that failed because the database went away are retried, in milliseconds
        /// (default 120,000).</summary>
        [DataMember(Name = "retry_window_ms", Order = 6, EmitDefaultValue = false)]
        public long? RetryWindowMs { get; set; }

        /// <summary>Server-side TCP keepalive idle time in seconds (default 60; 0 = the server's setting).</summary>
        [DataMember(Name = "keepalive_seconds", Order = 7, EmitDefaultValue = false)]
        public int? KeepaliveSeconds { get; set; }

        /// <summary>Never shows the password.</summary>
        public override string ToString()
        {
            return "DatabaseConnection(***)";
        }
    }

    /// <summary>TLS to PostgreSQL.</summary>
    [DataContract]
    public sealed class DatabaseTls
    {
        /// <summary><c>disable</c>, <c>prefer</c>, <c>require</c>, <c>verify_ca</c> or <c>verify_full</c>.</summary>
        [DataMember(Name = "mode", Order = 1, EmitDefaultValue = false)]
        public string Mode { get; set; }

        /// <summary>A CA certificate (PEM).</summary>
        [DataMember(Name = "ca_pem", Order = 2, EmitDefaultValue = false)]
        public string CaPem { get; set; }

        /// <summary>A file holding the CA certificate (PEM).</summary>
        [DataMember(Name = "ca_file", Order = 3, EmitDefaultValue = false)]
        public string CaFile { get; set; }
    }

    /// <summary>How to reach and bind to the directory.</summary>
    [DataContract]
    public sealed class DirectoryConnection
    {
        /// <summary><c>ldap://host:389</c>, <c>ldaps://host:636</c> or <c>ldapi://…</c>; several name servers of one directory.</summary>
        [DataMember(Name = "urls", Order = 1)]
        public List<string> Urls { get; set; }

        /// <summary>TLS; null = <c>ldaps</c> for ldaps:// URLs, none otherwise, verification on.</summary>
        [DataMember(Name = "tls", Order = 2, EmitDefaultValue = false)]
        public DirectoryTls Tls { get; set; }

        /// <summary>How to bind.</summary>
        [DataMember(Name = "bind", Order = 3)]
        public DirectoryBind Bind { get; set; }

        /// <summary>Connect (and StartTLS and bind) timeout in milliseconds (default 10,000).</summary>
        [DataMember(Name = "connect_timeout_ms", Order = 4, EmitDefaultValue = false)]
        public long? ConnectTimeoutMs { get; set; }

        /// <summary>Timeout of one operation in milliseconds (default 60,000).</summary>
        [DataMember(Name = "operation_timeout_ms", Order = 5, EmitDefaultValue = false)]
        public long? OperationTimeoutMs { get; set; }

        /// <summary><c>active_directory</c>, <c>samba_ad</c>, <c>open_ldap</c>, <c>ds389</c> or <c>generic</c>; null = detected.</summary>
        [DataMember(Name = "dialect", Order = 6, EmitDefaultValue = false)]
        public string Dialect { get; set; }

        /// <summary>Send a simple or NTLM bind's password over ldap:// without TLS, in clear (default false: such a
        /// request is refused, as JIM's Require Secure Transport refuses it). For test directories on a trusted
        /// host; every run that does it logs a warning.</summary>
        [DataMember(Name = "allow_password_without_tls", Order = 7, EmitDefaultValue = false)]
        public bool AllowPasswordWithoutTls { get; set; }
    }

    /// <summary>TLS to the directory.</summary>
    [DataContract]
    public sealed class DirectoryTls
    {
        /// <summary><c>none</c>, <c>start_tls</c> or <c>ldaps</c>.</summary>
        [DataMember(Name = "mode", Order = 1, EmitDefaultValue = false)]
        public string Mode { get; set; }

        /// <summary>A CA certificate (PEM) instead of the system's roots.</summary>
        [DataMember(Name = "ca_pem", Order = 2, EmitDefaultValue = false)]
        public string CaPem { get; set; }

        /// <summary>A file holding the CA certificate (PEM).</summary>
        [DataMember(Name = "ca_file", Order = 3, EmitDefaultValue = false)]
        public string CaFile { get; set; }

        /// <summary>Verify the server's certificate (default true).</summary>
        [DataMember(Name = "verify", Order = 4, EmitDefaultValue = false)]
        public bool? Verify { get; set; }
    }

    /// <summary>The directory bind: simple (DN or UPN and the decrypted password), NTLM (account, NetBIOS domain and password; over TLS) or SASL EXTERNAL.</summary>
    [DataContract]
    public sealed class DirectoryBind
    {
        /// <summary><c>simple</c>, <c>ntlm</c> or <c>sasl_external</c>.</summary>
        [DataMember(Name = "kind", Order = 1)]
        public string Kind { get; set; }

        /// <summary>The bind DN (simple binds).</summary>
        [DataMember(Name = "dn", Order = 2, EmitDefaultValue = false)]
        public string Dn { get; set; }

        /// <summary>The password, decrypted by the host (simple and NTLM binds). Never logged by the engine.</summary>
        [DataMember(Name = "password", Order = 3, EmitDefaultValue = false)]
        public string Password { get; set; }

        /// <summary>The account name (NTLM binds); without <see cref="Domain"/> also <c>DOMAIN\user</c> or <c>user@dns.domain</c>.</summary>
        [DataMember(Name = "username", Order = 4, EmitDefaultValue = false)]
        public string Username { get; set; }

        /// <summary>The NetBIOS domain (NTLM binds, optional).</summary>
        [DataMember(Name = "domain", Order = 5, EmitDefaultValue = false)]
        public string Domain { get; set; }

        /// <summary>A simple bind.</summary>
        public static DirectoryBind Simple(string dn, string password)
        {
            return new DirectoryBind { Kind = "simple", Dn = dn, Password = password };
        }

        /// <summary>An NTLM bind as <c>domain\username</c> (domain may be null), as JIM's LDAP connector offers for Active Directory; use it over TLS.</summary>
        public static DirectoryBind Ntlm(string username, string domain, string password)
        {
            return new DirectoryBind { Kind = "ntlm", Username = username, Domain = domain, Password = password };
        }

        /// <summary>SASL EXTERNAL (ldapi:// peer identity or a TLS client certificate).</summary>
        public static DirectoryBind SaslExternal()
        {
            return new DirectoryBind { Kind = "sasl_external" };
        }

        /// <summary>Never shows the password.</summary>
        public override string ToString()
        {
            if (Kind == "simple")
            {
                return "simple bind as " + Dn + " (password ***)";
            }
            if (Kind == "ntlm")
            {
                return "NTLM bind as " + (string.IsNullOrEmpty(Domain) ? "" : Domain + "\\") + Username + " (password ***)";
            }
            return Kind;
        }
    }

    /// <summary>The connected system's LDAP export settings, as JIM's LDAP connector holds them.</summary>
    [DataContract]
    public sealed class ExportSettings
    {
        /// <summary><c>delete</c> or <c>disable</c> (Delete Behaviour).</summary>
        [DataMember(Name = "delete_behaviour", Order = 1, EmitDefaultValue = false)]
        public string DeleteBehaviour { get; set; }

        /// <summary>Disable Attribute (default userAccountControl).</summary>
        [DataMember(Name = "disable_attribute", Order = 2, EmitDefaultValue = false)]
        public string DisableAttribute { get; set; }

        /// <summary>Create containers as needed?</summary>
        [DataMember(Name = "create_containers_as_needed", Order = 3, EmitDefaultValue = false)]
        public bool? CreateContainersAsNeeded { get; set; }

        /// <summary>Group Placeholder Member DN.</summary>
        [DataMember(Name = "placeholder_member_dn", Order = 4, EmitDefaultValue = false)]
        public string PlaceholderMemberDn { get; set; }

        /// <summary>Modify Batch Size (10-5000).</summary>
        [DataMember(Name = "modify_batch_size", Order = 5, EmitDefaultValue = false)]
        public int? ModifyBatchSize { get; set; }

        /// <summary>The containers the engine may write to (the selected partitions/containers).</summary>
        [DataMember(Name = "managed_scope", Order = 6, EmitDefaultValue = false)]
        public List<ScopeContainer> ManagedScope { get; set; }

        /// <summary><c>Error</c>, <c>Warn</c> or <c>Ignore</c>; null = the connected system's column.</summary>
        [DataMember(Name = "unresolved_reference_handling", Order = 7, EmitDefaultValue = false)]
        public string UnresolvedReferenceHandling { get; set; }
    }

    /// <summary>One selected (or excluded) container of the managed scope.</summary>
    [DataContract]
    public sealed class ScopeContainer
    {
        /// <summary>The container's DN.</summary>
        [DataMember(Name = "dn", Order = 1)]
        public string Dn { get; set; }

        /// <summary><c>Subtree</c> (default) or <c>OneLevel</c>.</summary>
        [DataMember(Name = "scope", Order = 2, EmitDefaultValue = false)]
        public string Scope { get; set; }

        /// <summary>True for an exclusion.</summary>
        [DataMember(Name = "excluded", Order = 3, EmitDefaultValue = false)]
        public bool? Excluded { get; set; }
    }

    /// <summary>How a run behaves; null members take the engine's defaults.</summary>
    [DataContract]
    public sealed class RunOptions
    {
        /// <summary>Pending exports claimed per statement (default 100).</summary>
        [DataMember(Name = "page_size", Order = 1, EmitDefaultValue = false)]
        public int? PageSize { get; set; }

        /// <summary>Outcomes persisted per statement at most (default 100): the size of a batch report. A flush
        /// also closes once its exports carry 16 × this many attribute changes (1,600 by default), so that exports
        /// carrying many values, large groups, are written in flushes of the usual cost side by side.</summary>
        [DataMember(Name = "flush_size", Order = 2, EmitDefaultValue = false)]
        public int? FlushSize { get; set; }

        /// <summary>A partial flush is written after this many milliseconds (default 1000).</summary>
        [DataMember(Name = "flush_interval_ms", Order = 3, EmitDefaultValue = false)]
        public long? FlushIntervalMs { get; set; }

        /// <summary>Directory connections (default: the dialect's).</summary>
        [DataMember(Name = "connections", Order = 4, EmitDefaultValue = false)]
        public int? Connections { get; set; }

        /// <summary>Outstanding operations per connection (default: the dialect's).</summary>
        [DataMember(Name = "in_flight_per_connection", Order = 5, EmitDefaultValue = false)]
        public int? InFlightPerConnection { get; set; }

        /// <summary>Cap on outstanding operations over all connections: the limit with fixed
        /// concurrency, the ceiling of the adaptive limit otherwise.</summary>
        [DataMember(Name = "max_in_flight", Order = 6, EmitDefaultValue = false)]
        public int? MaxInFlight { get; set; }

        /// <summary>Cap on directory operations per second.</summary>
        [DataMember(Name = "ops_per_second", Order = 7, EmitDefaultValue = false)]
        public int? OpsPerSecond { get; set; }

        /// <summary>Seconds after which a row left Executing by a crashed run is claimed again (default 900).</summary>
        [DataMember(Name = "lease_seconds", Order = 8, EmitDefaultValue = false)]
        public long? LeaseSeconds { get; set; }

        /// <summary>In-run retries of an operation that met a transient condition (default 3).</summary>
        [DataMember(Name = "max_operation_retries", Order = 9, EmitDefaultValue = false)]
        public int? MaxOperationRetries { get; set; }

        /// <summary>Plan and report without writing anything (JIM's PreviewOnly).</summary>
        [DataMember(Name = "dry_run", Order = 10, EmitDefaultValue = false)]
        public bool? DryRun { get; set; }

        /// <summary>Run even when JIM's migration history lacks the engine's migration.</summary>
        [DataMember(Name = "skip_schema_check", Order = 11, EmitDefaultValue = false)]
        public bool? SkipSchemaCheck { get; set; }

        /// <summary>Least interval between progress reports in milliseconds (default 500).</summary>
        [DataMember(Name = "progress_interval_ms", Order = 12, EmitDefaultValue = false)]
        public long? ProgressIntervalMs { get; set; }

        /// <summary>How the in-flight limit is set: <c>adaptive</c> (default: it follows the
        /// directory's pace between MinInFlight and MaxInFlight) or <c>fixed</c>.</summary>
        [DataMember(Name = "concurrency", Order = 13, EmitDefaultValue = false)]
        public string Concurrency { get; set; }

        /// <summary>The floor of the adaptive limit (default 1).</summary>
        [DataMember(Name = "min_in_flight", Order = 14, EmitDefaultValue = false)]
        public int? MinInFlight { get; set; }

        /// <summary>How far the directory's clock may be behind the database's, in seconds (default 300): a
        /// re-attempted Create adopts an existing entry only if it was created after its first attempt.</summary>
        [DataMember(Name = "clock_skew_seconds", Order = 15, EmitDefaultValue = false)]
        public long? ClockSkewSeconds { get; set; }

        /// <summary>The least severe log record the engine hands the engine's log handler (default Debug).
        /// Levels are Microsoft.Extensions.Logging's: Critical asks for Error records (the engine's most
        /// severe); None as well (to receive no records, create the engine without a log handler).</summary>
        [IgnoreDataMember]
        public ExportLogLevel? LogLevel { get; set; }

        [DataMember(Name = "log_level", Order = 16, EmitDefaultValue = false)]
        private string LogLevelName
        {
            get { return LogLevel.HasValue ? LogLevels.EngineName(LogLevel.Value) : null; }
            set { LogLevel = value == null ? (ExportLogLevel?)null : LogLevels.FromEngineName(value); }
        }
    }

    /// <summary>Options of the native engine.</summary>
    [DataContract]
    public sealed class EngineOptions
    {
        /// <summary>Worker threads of the engine's runtime; null or 0 = one per CPU core.</summary>
        [DataMember(Name = "worker_threads", Order = 1, EmitDefaultValue = false)]
        public int? WorkerThreads { get; set; }

        /// <summary>How long disposing the engine waits for its threads to stop, in milliseconds (default 10,000).</summary>
        [DataMember(Name = "shutdown_timeout_ms", Order = 2, EmitDefaultValue = false)]
        public long? ShutdownTimeoutMs { get; set; }

        /// <summary>How long disposing the engine waits for cancelled runs to persist what they did and return their
        /// claims (and for the database to take back claims of runs it did not answer for), in milliseconds
        /// (default 30,000).</summary>
        [DataMember(Name = "close_timeout_ms", Order = 3, EmitDefaultValue = false)]
        public long? CloseTimeoutMs { get; set; }
    }

    [DataContract]
    internal sealed class OperatorRequest
    {
        [DataMember(Name = "database", Order = 1)]
        public DatabaseConnection Database { get; set; }

        [DataMember(Name = "connected_system_id", Order = 2)]
        public int ConnectedSystemId { get; set; }

        [DataMember(Name = "lease_seconds", Order = 3, EmitDefaultValue = false)]
        public long? LeaseSeconds { get; set; }

        [DataMember(Name = "older_than_seconds", Order = 4, EmitDefaultValue = false)]
        public long? OlderThanSeconds { get; set; }
    }
}
