// Typed exceptions for the C ABI's status codes.

using System;
using System.Threading;

namespace JimExport
{
    /// <summary>A call into jim-export failed; <see cref="Status"/> says how.</summary>
    public class ExportException : Exception
    {
        public ExportException(ExportStatus status, string message) : base(message)
        {
            Status = status;
        }

        public ExportException(ExportStatus status, string message, Exception inner) : base(message, inner)
        {
            Status = status;
        }

        /// <summary>The native status code.</summary>
        public ExportStatus Status { get; private set; }

        /// <summary>The typed exception for a failed call: its message names the call, the status and the
        /// library's own message (which names the bad field or the failing server, never a secret).</summary>
        internal static ExportException From(string function, ExportStatus status, string nativeMessage)
        {
            string message = function + " failed (" + NativeMethods.StatusName(status) + "): " + (nativeMessage ?? "no message");
            switch (status)
            {
                case ExportStatus.InvalidJson:
                case ExportStatus.InvalidRequest:
                case ExportStatus.InvalidUtf8:
                    return new ExportRequestException(status, message);
                case ExportStatus.Database:
                case ExportStatus.Schema:
                case ExportStatus.Data:
                    return new ExportDatabaseException(status, message);
                case ExportStatus.Directory:
                    return new ExportDirectoryException(status, message);
                case ExportStatus.EngineClosed:
                case ExportStatus.InvalidHandle:
                    return new ExportEngineClosedException(status, message, null);
                default:
                    return new ExportException(status, message);
            }
        }
    }

    /// <summary>The request is not JSON, not a valid request (every bad field is named by its path), or
    /// names something that does not exist, such as an unknown connected system.</summary>
    public sealed class ExportRequestException : ExportException
    {
        public ExportRequestException(ExportStatus status, string message) : base(status, message)
        {
        }
    }

    /// <summary>JIM's database could not be reached, a statement failed, the schema is not the one the
    /// engine was built against, or a row holds a value the engine cannot read.</summary>
    public sealed class ExportDatabaseException : ExportException
    {
        public ExportDatabaseException(ExportStatus status, string message) : base(status, message)
        {
        }
    }

    /// <summary>The directory could not be reached, or refused the bind or TLS; or it stopped answering
    /// mid-run (the exports done by then are persisted, the rest are left as they were).</summary>
    public sealed class ExportDirectoryException : ExportException
    {
        public ExportDirectoryException(ExportStatus status, string message) : base(status, message)
        {
        }
    }

    /// <summary>The engine was disposed before or during the call. A run interrupted this way was
    /// cancelled: what it completed is persisted, its unexecuted claims returned (<see cref="Result"/>).</summary>
    public sealed class ExportEngineClosedException : ExportException
    {
        public ExportEngineClosedException(ExportStatus status, string message, ExportResult result) : base(status, message)
        {
            Result = result;
        }

        /// <summary>The interrupted run's result, when it returned one.</summary>
        public ExportResult Result { get; private set; }
    }

    /// <summary>The run was cancelled through its CancellationToken. It stopped claiming work, finished
    /// the directory operations in flight, persisted their outcomes and returned its unexecuted claims;
    /// <see cref="Result"/> holds what it did.</summary>
    public sealed class ExportCancelledException : OperationCanceledException
    {
        public ExportCancelledException(ExportResult result, CancellationToken token)
            : base("the export was cancelled: " + (result != null ? result.Message : "no result"), token)
        {
            Result = result;
        }

        /// <summary>What the run did before it stopped.</summary>
        public ExportResult Result { get; private set; }
    }

    /// <summary>A host callback (the batch handler) threw. The run was cancelled when it happened; the
    /// handler's exception is the inner exception, and <see cref="Result"/> holds what the run did.</summary>
    public sealed class ExportCallbackException : Exception
    {
        public ExportCallbackException(string message, Exception inner, ExportResult result) : base(message, inner)
        {
            Result = result;
        }

        /// <summary>What the run did.</summary>
        public ExportResult Result { get; private set; }
    }
}
