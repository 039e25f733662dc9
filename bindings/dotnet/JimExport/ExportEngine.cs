// The engine as JIM's worker uses it: RunAsync in place of ExportExecutionServer, progress through
// IProgress, batch reports (the per-export outcomes JIM turns into RPEIs) through an async handler, log
// records through a delegate, cancellation through a CancellationToken.

using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Threading;
using System.Threading.Tasks;

namespace JimExport
{
    /// <summary>Receives the engine's log records; the level casts to Microsoft.Extensions.Logging.LogLevel,
    /// e.g. <c>(level, target, message) =&gt; logger.Log((LogLevel)(int)level, "{Target}: {Message}", target, message)</c>.
    /// Called on the engine's threads, possibly concurrently; must be quick and must not throw.</summary>
    public delegate void ExportLogHandler(ExportLogLevel level, string target, string message);

    /// <summary>The jim-export engine: a native engine with its own threads and database pools. Create one
    /// per worker process, run exports with <see cref="RunAsync(ExportRequest, IProgress{ExportProgress}, Func{BatchReport, Task}, CancellationToken)"/>
    /// (several at once for different connected systems), and dispose it before the process exits:
    /// disposing stops the native threads (Mono does not exit while they live).</summary>
    public sealed partial class ExportEngine : IDisposable
    {
        // The native callbacks are static delegates, alive for the whole process; each run's state travels
        // through user_data as a GCHandle.
        private static readonly JsonCallback ProgressTrampoline = OnProgress;
        private static readonly JsonCallback BatchTrampoline = OnBatch;
        private static readonly LogCallback LogTrampoline = OnLog;
        private static readonly IntPtr ProgressPointer = Marshal.GetFunctionPointerForDelegate(ProgressTrampoline);
        private static readonly IntPtr BatchPointer = Marshal.GetFunctionPointerForDelegate(BatchTrampoline);
        private static readonly IntPtr LogPointer = Marshal.GetFunctionPointerForDelegate(LogTrampoline);

        /// <summary>Set while a callback of this library runs on the current thread.</summary>
        [ThreadStatic] private static bool inCallback;

        private readonly EngineHandle handle;
        private readonly ExportLogHandler log;
        private readonly object gate = new object();
        private readonly HashSet<Run> runs = new HashSet<Run>();
        private bool disposed;

        /// <summary>Starts a native engine.</summary>
        /// <param name="options">Worker threads and shutdown timeout; null = defaults.</param>
        /// <param name="log">Receives every run's log records; null = dropped.</param>
        public ExportEngine(EngineOptions options = null, ExportLogHandler log = null)
        {
            uint abi = NativeMethods.jim_abi_version();
            if (abi != NativeMethods.AbiVersion)
            {
                throw new NotSupportedException("the native jim-export library implements C ABI " + abi
                    + " but this binding was written for ABI " + NativeMethods.AbiVersion);
            }
            this.log = log;
            IntPtr error;
            ExportStatus status = NativeMethods.jim_engine_new(
                options == null ? null : NativeMethods.Utf8Z(Json.Write(options)), out handle, out error);
            if (status != ExportStatus.Ok)
            {
                throw ExportException.From("jim_engine_new", status, NativeMethods.TakeString(error));
            }
        }

        /// <summary>The native library's version, e.g. <c>0.1.0</c>.</summary>
        public static string LibraryVersion
        {
            get { return NativeMethods.ReadUtf8Z(NativeMethods.jim_version()); }
        }

        /// <summary>The C ABI version of the native library.</summary>
        public static uint AbiVersion
        {
            get { return NativeMethods.jim_abi_version(); }
        }

        /// <summary>Runs one export of a connected system's pending-export queue, on a thread of its own.</summary>
        /// <param name="request">The request.</param>
        /// <param name="progress">Receives progress snapshots (on the engine's threads; <see cref="Progress{T}"/> posts them on).</param>
        /// <param name="onBatch">Receives each batch report after its outcomes were persisted, one at a time in
        /// order; the run goes on meanwhile (up to 8 reports wait, then the engine waits for the handler).
        /// If it throws, the run is cancelled and RunAsync throws <see cref="ExportCallbackException"/>.</param>
        /// <param name="cancellationToken">Cancels the run: it stops claiming, finishes what is in flight,
        /// persists it, returns its claims, and RunAsync throws <see cref="ExportCancelledException"/>.</param>
        /// <returns>The result; per-export failures are in its counts and in the batch reports.</returns>
        /// <exception cref="ExportRequestException">The request is invalid, or names an unknown connected system.</exception>
        /// <exception cref="ExportDatabaseException">JIM's database is unreachable or not the expected schema.</exception>
        /// <exception cref="ExportDirectoryException">The directory is unreachable or refused the bind.</exception>
        /// <exception cref="ExportEngineClosedException">The engine was disposed during the run.</exception>
        public Task<ExportResult> RunAsync(
            ExportRequest request,
            IProgress<ExportProgress> progress = null,
            Func<BatchReport, Task> onBatch = null,
            CancellationToken cancellationToken = default(CancellationToken))
        {
            if (request == null)
            {
                throw new ArgumentNullException("request");
            }
            return RunAsync(request.ToJson(), progress, onBatch, cancellationToken);
        }

        /// <summary>Runs one export from a request JSON document (see <c>jim_engine_run</c> in jim_export.h).
        /// Otherwise as <see cref="RunAsync(ExportRequest, IProgress{ExportProgress}, Func{BatchReport, Task}, CancellationToken)"/>.</summary>
        public Task<ExportResult> RunAsync(
            string requestJson,
            IProgress<ExportProgress> progress = null,
            Func<BatchReport, Task> onBatch = null,
            CancellationToken cancellationToken = default(CancellationToken))
        {
            return StartRun(requestJson, progress, onBatch, cancellationToken, false).Completion;
        }

        /// <summary>Registers a run or a watch with the engine (so that disposing waits for it) and starts
        /// it on its own thread.</summary>
        private Run StartRun(
            string requestJson,
            IProgress<ExportProgress> progress,
            Func<BatchReport, Task> onBatch,
            CancellationToken cancellationToken,
            bool watch)
        {
            if (requestJson == null)
            {
                throw new ArgumentNullException("requestJson");
            }
            var run = new Run(this, requestJson, progress, onBatch, cancellationToken, watch);
            lock (gate)
            {
                ThrowIfDisposed();
                runs.Add(run);
            }
            run.Start();
            return run;
        }

        /// <summary>The queue of a connected system: counts by status and change type, what a run would pick
        /// up now, rows stranded in Executing past <paramref name="leaseSeconds"/>, the oldest failure. Blocks.</summary>
        public QueueSummary GetQueueSummary(DatabaseConnection database, int connectedSystemId, long leaseSeconds = 900)
        {
            var request = new OperatorRequest { Database = database, ConnectedSystemId = connectedSystemId, LeaseSeconds = leaseSeconds };
            string json = Operator("jim_engine_queue_summary", NativeMethods.jim_engine_queue_summary, request);
            return Json.Read<QueueSummary>(json);
        }

        /// <summary>Returns to Pending the rows left Executing (by a crashed run) for longer than
        /// <paramref name="olderThanSeconds"/>; 0 releases every Executing row (only when no engine runs
        /// this system). Returns how many. Blocks.</summary>
        public long ReleaseStranded(DatabaseConnection database, int connectedSystemId, long olderThanSeconds = 900)
        {
            var request = new OperatorRequest { Database = database, ConnectedSystemId = connectedSystemId, OlderThanSeconds = olderThanSeconds };
            string json = Operator("jim_engine_release_stranded", NativeMethods.jim_engine_release_stranded, request);
            return Json.Read<CountAnswer>(json).Released ?? 0;
        }

        /// <summary>Resets the Failed exports of a connected system to Pending with ErrorCount 0 and the error
        /// cleared. Returns how many. Blocks.</summary>
        public long ResetFailed(DatabaseConnection database, int connectedSystemId)
        {
            var request = new OperatorRequest { Database = database, ConnectedSystemId = connectedSystemId };
            string json = Operator("jim_engine_reset_failed", NativeMethods.jim_engine_reset_failed, request);
            return Json.Read<CountAnswer>(json).Reset ?? 0;
        }

        /// <summary><see cref="GetQueueSummary"/> off the calling thread.</summary>
        public Task<QueueSummary> GetQueueSummaryAsync(DatabaseConnection database, int connectedSystemId, long leaseSeconds = 900)
        {
            return Task.Run(() => GetQueueSummary(database, connectedSystemId, leaseSeconds));
        }

        private delegate ExportStatus OperatorCall(EngineHandle engine, byte[] request, out IntPtr json, out IntPtr error);

        private string Operator(string function, OperatorCall call, OperatorRequest request)
        {
            if (request.Database == null)
            {
                throw new ArgumentNullException("database");
            }
            ThrowIfDisposed();
            IntPtr json;
            IntPtr error;
            ExportStatus status = call(handle, NativeMethods.Utf8Z(Json.Write(request)), out json, out error);
            if (status != ExportStatus.Ok)
            {
                throw ExportException.From(function, status, NativeMethods.TakeString(error));
            }
            return NativeMethods.TakeString(json);
        }

        /// <summary>Cancels the runs in progress, waits for them to return, then stops the native engine and
        /// joins its threads. Call it before the process exits. Must not be called from inside a progress
        /// or log callback (it would wait for the run that is calling it).</summary>
        public void Dispose()
        {
            Run[] active;
            lock (gate)
            {
                if (disposed)
                {
                    return;
                }
                if (inCallback)
                {
                    throw new InvalidOperationException("an ExportEngine cannot be disposed from inside its own callbacks");
                }
                disposed = true;
                active = new Run[runs.Count];
                runs.CopyTo(active);
            }
            foreach (Run run in active)
            {
                run.CancelForDispose();
            }
            foreach (Run run in active)
            {
                try
                {
                    run.Done.Wait();
                }
                catch (AggregateException)
                {
                    // The run reports its own outcome to its caller.
                }
            }
            handle.Dispose();
        }

        private void ThrowIfDisposed()
        {
            if (disposed)
            {
                throw new ObjectDisposedException("ExportEngine");
            }
        }

        private void Finished(Run run)
        {
            lock (gate)
            {
                runs.Remove(run);
            }
        }

        private void Log(ExportLogLevel level, string target, string message)
        {
            var handler = log;
            if (handler == null)
            {
                return;
            }
            try
            {
                handler(level, target, message);
            }
            catch (Exception)
            {
                // A throwing log handler must not take the run (or the process) down.
            }
        }

        private static Run RunOf(IntPtr userData)
        {
            return (Run)GCHandle.FromIntPtr(userData).Target;
        }

        // The trampolines run on the engine's native threads. An exception must never unwind into native
        // code, so each catches everything.

        private static void OnProgress(IntPtr userData, IntPtr json, UIntPtr length)
        {
            inCallback = true;
            try
            {
                RunOf(userData).Progress(NativeMethods.Bytes(json, length));
            }
            catch (Exception)
            {
                // Reported by Run.Progress itself where possible.
            }
            finally
            {
                inCallback = false;
            }
        }

        private static void OnBatch(IntPtr userData, IntPtr json, UIntPtr length)
        {
            inCallback = true;
            try
            {
                RunOf(userData).Batch(NativeMethods.Bytes(json, length));
            }
            catch (Exception)
            {
                // Run.Batch records its failures.
            }
            finally
            {
                inCallback = false;
            }
        }

        private static void OnLog(IntPtr userData, uint level, IntPtr json, UIntPtr length)
        {
            inCallback = true;
            try
            {
                Run run = RunOf(userData);
                if (run.Engine.log != null)
                {
                    var record = Json.Read<LogRecordDocument>(NativeMethods.Bytes(json, length));
                    run.Engine.Log((ExportLogLevel)Math.Min(level, 4u), record.Target, record.Message);
                }
            }
            catch (Exception)
            {
                // A record that cannot be read is dropped.
            }
            finally
            {
                inCallback = false;
            }
        }

        /// <summary>One run: its thread, its cancellation handle, its callbacks' delegates (referenced here for
        /// the whole run) and the queue of batch reports for the handler.</summary>
        private sealed class Run
        {
            private const int BatchQueueCapacity = 8;

            private readonly string requestJson;
            private readonly IProgress<ExportProgress> progress;
            private readonly Func<BatchReport, Task> onBatch;
            private readonly CancellationToken token;
            private readonly TaskCompletionSource<ExportResult> completion =
                new TaskCompletionSource<ExportResult>(TaskCreationOptions.RunContinuationsAsynchronously);
            // A watch (jim_engine_watch) completes this one instead; cancelling is how it ends normally.
            private readonly bool watch;
            private readonly TaskCompletionSource<WatchResult> watchCompletion =
                new TaskCompletionSource<WatchResult>(TaskCreationOptions.RunContinuationsAsynchronously);
            private readonly BlockingCollection<BatchReport> batches = new BlockingCollection<BatchReport>(BatchQueueCapacity);
            private volatile CancelHandle cancel;
            private Exception handlerFailure;
            private volatile bool disposing;

            internal Run(ExportEngine engine, string requestJson, IProgress<ExportProgress> progress, Func<BatchReport, Task> onBatch, CancellationToken token, bool watch)
            {
                Engine = engine;
                this.watch = watch;
                this.requestJson = requestJson;
                this.progress = progress;
                this.onBatch = onBatch;
                this.token = token;
            }

            internal ExportEngine Engine { get; private set; }

            internal Task<ExportResult> Completion
            {
                get { return completion.Task; }
            }

            internal Task<WatchResult> WatchCompletion
            {
                get { return watchCompletion.Task; }
            }

            /// <summary>Completes when the run or watch has returned, however it ended.</summary>
            internal Task Done
            {
                get { return watch ? (Task)watchCompletion.Task : completion.Task; }
            }

            private void SetException(Exception e)
            {
                if (watch)
                {
                    watchCompletion.TrySetException(e);
                }
                else
                {
                    completion.TrySetException(e);
                }
            }

            internal void Start()
            {
                try
                {
                    CancelHandle handle;
                    ExportStatus status = NativeMethods.jim_cancel_new(out handle);
                    if (status != ExportStatus.Ok)
                    {
                        throw ExportException.From("jim_cancel_new", status, null);
                    }
                    cancel = handle;
                    if (disposing)
                    {
                        FireCancel(); // the engine is being disposed: the run stops at once
                    }
                    // The blocking native run gets a thread of its own, so no pool thread is held for minutes.
                    var runner = new Thread(Execute) { IsBackground = true, Name = "jim-export run" };
                    runner.Start();
                }
                catch (Exception e)
                {
                    Engine.Finished(this);
                    if (cancel != null)
                    {
                        cancel.Dispose();
                    }
                    SetException(e);
                }
            }

            internal void CancelForDispose()
            {
                disposing = true;
                FireCancel();
            }

            private void FireCancel()
            {
                CancelHandle handle = cancel;
                if (handle == null)
                {
                    return; // not started yet: Start fires it
                }
                try
                {
                    handle.Cancel();
                }
                catch (ObjectDisposedException)
                {
                    // The run has ended already.
                }
            }

            private void Execute()
            {
                Thread consumer = null;
                GCHandle self = GCHandle.Alloc(this);
                try
                {
                    if (onBatch != null)
                    {
                        consumer = new Thread(ConsumeBatches) { IsBackground = true, Name = "jim-export batches" };
                        consumer.Start();
                    }
                    ExportStatus status;
                    IntPtr resultJson;
                    IntPtr error;
                    using (token.Register(FireCancel))
                    {
                        var callbacks = new NativeCallbacks
                        {
                            UserData = GCHandle.ToIntPtr(self),
                            OnProgress = progress != null ? ProgressPointer : IntPtr.Zero,
                            OnBatch = onBatch != null ? BatchPointer : IntPtr.Zero,
                            OnLog = Engine.log != null ? LogPointer : IntPtr.Zero,
                        };
                        status = watch
                            ? WatchNativeMethods.jim_engine_watch(
                                Engine.handle, NativeMethods.Utf8Z(requestJson), ref callbacks, cancel, out resultJson, out error)
                            : NativeMethods.jim_engine_run(
                                Engine.handle, NativeMethods.Utf8Z(requestJson), ref callbacks, cancel, out resultJson, out error);
                    }
                    // No callback runs once jim_engine_run has returned: the report queue is complete.
                    batches.CompleteAdding();
                    if (consumer != null)
                    {
                        consumer.Join();
                    }
                    Complete(status, NativeMethods.TakeString(resultJson), NativeMethods.TakeString(error));
                }
                catch (Exception e)
                {
                    if (!batches.IsAddingCompleted)
                    {
                        batches.CompleteAdding();
                    }
                    if (consumer != null)
                    {
                        consumer.Join();
                    }
                    SetException(e);
                }
                finally
                {
                    self.Free();
                    cancel.Dispose();
                    Engine.Finished(this);
                }
            }

            private void Complete(ExportStatus status, string resultJson, string error)
            {
                if (watch)
                {
                    CompleteWatch(status, resultJson, error);
                    return;
                }
                if (status != ExportStatus.Ok)
                {
                    completion.TrySetException(ExportException.From("jim_engine_run", status, error));
                    return;
                }
                ExportResult result = Json.Read<ExportResult>(resultJson);
                result.Json = resultJson;
                if (handlerFailure != null)
                {
                    completion.TrySetException(new ExportCallbackException(
                        "the batch handler threw, so the export was cancelled: " + handlerFailure.Message, handlerFailure, result));
                }
                else if (disposing)
                {
                    completion.TrySetException(new ExportEngineClosedException(
                        ExportStatus.EngineClosed, "the engine was disposed during the run, which stopped: " + result.Message, result));
                }
                else if (result.Cancelled)
                {
                    completion.TrySetException(new ExportCancelledException(result, token));
                }
                else
                {
                    completion.TrySetResult(result);
                }
            }

            private void CompleteWatch(ExportStatus status, string resultJson, string error)
            {
                if (status != ExportStatus.Ok)
                {
                    watchCompletion.TrySetException(ExportException.From("jim_engine_watch", status, error));
                    return;
                }
                WatchResult result = Json.Read<WatchResult>(resultJson);
                result.Json = resultJson;
                if (handlerFailure != null)
                {
                    watchCompletion.TrySetException(new ExportCallbackException(
                        "the batch handler threw, so the watch was stopped: " + handlerFailure.Message, handlerFailure, null));
                }
                else if (disposing)
                {
                    watchCompletion.TrySetException(new ExportEngineClosedException(
                        ExportStatus.EngineClosed, "the engine was disposed during the watch, which stopped: " + result.Message, null));
                }
                else
                {
                    watchCompletion.TrySetResult(result);
                }
            }

            internal void Progress(byte[] json)
            {
                try
                {
                    progress.Report(Json.Read<ExportProgress>(json));
                }
                catch (Exception e)
                {
                    Engine.Log(ExportLogLevel.Warning, "JimExport", "the progress handler threw: " + e.Message);
                }
            }

            internal void Batch(byte[] json)
            {
                BatchReport report;
                try
                {
                    report = Json.Read<BatchReport>(json);
                }
                catch (Exception e)
                {
                    Fail(e);
                    return;
                }
                // Blocks the engine when the handler is BatchQueueCapacity reports behind: back pressure.
                batches.Add(report);
            }

            private void ConsumeBatches()
            {
                foreach (BatchReport report in batches.GetConsumingEnumerable())
                {
                    if (handlerFailure != null)
                    {
                        continue; // drain, so the engine never blocks on a full queue
                    }
                    try
                    {
                        Task handled = onBatch(report);
                        if (handled != null)
                        {
                            handled.GetAwaiter().GetResult();
                        }
                    }
                    catch (Exception e)
                    {
                        Fail(e);
                    }
                }
            }

            private void Fail(Exception e)
            {
                if (Interlocked.CompareExchange(ref handlerFailure, e, null) == null)
                {
                    Engine.Log(ExportLogLevel.Error, "JimExport", "the batch handler threw; cancelling the export: " + e.Message);
                    FireCancel();
                }
            }
        }
    }
}
