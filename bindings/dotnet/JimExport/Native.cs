// The P/Invoke layer over the jim-export C ABI (include/jim_export.h). Everything here is internal:
// hosts use ExportEngine. C# 7.2, no unsafe code, nothing Mono-specific: Mono's mcs and the .NET SDK
// compile it unchanged.

using System;
using System.Runtime.InteropServices;
using System.Text;

namespace JimExport
{
    /// <summary>The status codes of the C ABI (<c>jim_status</c>); the numbers never change.</summary>
    public enum ExportStatus : uint
    {
        /// <summary>Success.</summary>
        Ok = 0,
        /// <summary>A required argument was NULL (a bug in the binding).</summary>
        NullParameter = 1,
        /// <summary>A string argument was not valid UTF-8.</summary>
        InvalidUtf8 = 2,
        /// <summary>A JSON argument is not JSON at all.</summary>
        InvalidJson = 3,
        /// <summary>A JSON argument is not a valid request, or names something that does not exist.</summary>
        InvalidRequest = 4,
        /// <summary>A native handle was freed already, or is not of the expected type.</summary>
        InvalidHandle = 5,
        /// <summary>The engine was freed before or during the call.</summary>
        EngineClosed = 6,
        /// <summary>A blocking call was made on one of the engine's own threads (inside a callback).</summary>
        WrongThread = 7,
        /// <summary>The engine's runtime could not be started.</summary>
        Runtime = 8,
        /// <summary>JIM's database could not be reached, or a statement failed.</summary>
        Database = 20,
        /// <summary>JIM's database does not have the schema the engine was built against.</summary>
        Schema = 21,
        /// <summary>A row of JIM's database holds a value the engine cannot read.</summary>
        Data = 22,
        /// <summary>The run was cancelled before it could start.</summary>
        Cancelled = 23,
        /// <summary>The directory could not be reached, or refused the bind or TLS; or it stopped answering
        /// mid-run (the exports done by then are persisted, the rest are left as they were).</summary>
        Directory = 24,
        /// <summary>Another failure; the message says why.</summary>
        Failed = 29,
        /// <summary>The native library panicked (a bug); the panic was caught.</summary>
        Panic = 99,
    }

    /// <summary>The callbacks of one run, as the C struct <c>jim_callbacks</c>.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeCallbacks
    {
        public IntPtr UserData;
        public IntPtr OnProgress;
        public IntPtr OnBatch;
        public IntPtr OnLog;
    }

    /// <summary><c>jim_json_callback</c>.</summary>
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate void JsonCallback(IntPtr userData, IntPtr json, UIntPtr jsonLength);

    /// <summary><c>jim_log_callback</c>.</summary>
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate void LogCallback(IntPtr userData, uint level, IntPtr json, UIntPtr jsonLength);

    internal static class NativeMethods
    {
        /// <summary>libjim_export.so / jim_export.dll / libjim_export.dylib.</summary>
        internal const string Library = "jim_export";

        /// <summary>The C ABI version this binding was written against (<c>JIM_EXPORT_ABI_VERSION</c>).</summary>
        internal const uint AbiVersion = 1;

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr jim_version();

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint jim_abi_version();

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr jim_status_name(uint status);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern ExportStatus jim_string_free(IntPtr s);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern ExportStatus jim_engine_new(byte[] optionsJson, out EngineHandle engine, out IntPtr error);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern ExportStatus jim_engine_free(IntPtr engine);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern ExportStatus jim_engine_run(
            EngineHandle engine,
            byte[] requestJson,
            ref NativeCallbacks callbacks,
            CancelHandle cancel,
            out IntPtr resultJson,
            out IntPtr error);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern ExportStatus jim_engine_queue_summary(EngineHandle engine, byte[] requestJson, out IntPtr json, out IntPtr error);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern ExportStatus jim_engine_release_stranded(EngineHandle engine, byte[] requestJson, out IntPtr json, out IntPtr error);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern ExportStatus jim_engine_reset_failed(EngineHandle engine, byte[] requestJson, out IntPtr json, out IntPtr error);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern ExportStatus jim_cancel_new(out CancelHandle cancel);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern ExportStatus jim_cancel_cancel(CancelHandle cancel);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
        internal static extern ExportStatus jim_cancel_free(IntPtr cancel);

        /// <summary>A NUL-terminated UTF-8 copy of <paramref name="s"/> for a <c>const char *</c> argument.</summary>
        internal static byte[] Utf8Z(string s)
        {
            var bytes = new byte[Encoding.UTF8.GetByteCount(s) + 1];
            Encoding.UTF8.GetBytes(s, 0, s.Length, bytes, 0);
            return bytes;
        }

        /// <summary>Reads <paramref name="length"/> bytes of UTF-8 at <paramref name="p"/> (a callback payload).</summary>
        internal static byte[] Bytes(IntPtr p, UIntPtr length)
        {
            var bytes = new byte[checked((int)length.ToUInt64())];
            Marshal.Copy(p, bytes, 0, bytes.Length);
            return bytes;
        }

        /// <summary>Reads a NUL-terminated UTF-8 string the library owns (static or not).</summary>
        internal static string ReadUtf8Z(IntPtr p)
        {
            if (p == IntPtr.Zero)
            {
                return null;
            }
            int length = 0;
            while (Marshal.ReadByte(p, length) != 0)
            {
                length++;
            }
            var bytes = new byte[length];
            Marshal.Copy(p, bytes, 0, length);
            return Encoding.UTF8.GetString(bytes);
        }

        /// <summary>Reads a string the library returned and frees it with <c>jim_string_free</c>.</summary>
        internal static string TakeString(IntPtr p)
        {
            if (p == IntPtr.Zero)
            {
                return null;
            }
            try
            {
                return ReadUtf8Z(p);
            }
            finally
            {
                jim_string_free(p);
            }
        }

        /// <summary>The C name of a status, e.g. <c>JIM_STATUS_INVALID_JSON</c>.</summary>
        internal static string StatusName(ExportStatus status)
        {
            return ReadUtf8Z(jim_status_name((uint)status));
        }
    }

    /// <summary>Owns a <c>jim_engine *</c>; releasing it shuts the engine's runtime down and joins its threads.</summary>
    internal sealed class EngineHandle : SafeHandle
    {
        public EngineHandle() : base(IntPtr.Zero, true)
        {
        }

        public override bool IsInvalid
        {
            get { return handle == IntPtr.Zero; }
        }

        protected override bool ReleaseHandle()
        {
            return NativeMethods.jim_engine_free(handle) == ExportStatus.Ok;
        }
    }

    /// <summary>Owns a <c>jim_cancel *</c>.</summary>
    internal sealed class CancelHandle : SafeHandle
    {
        public CancelHandle() : base(IntPtr.Zero, true)
        {
        }

        public override bool IsInvalid
        {
            get { return handle == IntPtr.Zero; }
        }

        /// <summary>Fires the handle; callable from any thread, including inside callbacks.</summary>
        public void Cancel()
        {
            if (!IsClosed)
            {
                NativeMethods.jim_cancel_cancel(this);
            }
        }

        protected override bool ReleaseHandle()
        {
            return NativeMethods.jim_cancel_free(handle) == ExportStatus.Ok;
        }
    }
}
