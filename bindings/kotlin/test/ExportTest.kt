// The Kotlin bindings against real servers: starts `jim-testkit serve` (throwaway PostgreSQL and
// slapd with JIM's Small template staged), then checks typed errors, the operator calls and a real
// export run through the `runExport` suspend function, whose result is checked against the database
// through the engine's queue summary, then a watch (continuous export) stopped through its CancelToken. Run by scripts/test-kotlin.sh; argument: the jim-testkit path.
package org.jim.export.test

import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicLong
import kotlin.system.exitProcess
import kotlinx.coroutines.async
import kotlinx.coroutines.coroutineScope
import kotlinx.coroutines.delay
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.jim.export.*

/** A listener counting what a run reports (called on the engine's threads). */
class Counter : RunListener {
    val progress = AtomicLong()
    val batches = AtomicLong()
    val items = AtomicLong()
    val succeeded = AtomicLong()
    val logs = AtomicLong()
    @Volatile var lastPhase: ExportPhase? = null

    override fun onProgress(event: ProgressEvent) {
        progress.incrementAndGet()
        lastPhase = event.phase
    }

    override fun onBatch(report: BatchReport) {
        batches.incrementAndGet()
        items.addAndGet(report.items.size.toLong())
        succeeded.addAndGet(report.items.count { it.status == ItemStatus.SUCCEEDED && it.provisioned }.toLong())
    }

    /** The targets (modules) of the log records, e.g. `jim_export::store::system`. */
    val targets: MutableSet<String> = java.util.concurrent.ConcurrentHashMap.newKeySet()
    /** Records below Warn (none when the request asks for warnings and errors only). */
    val belowWarn = AtomicLong()

    override fun onLog(record: LogRecord) {
        logs.incrementAndGet()
        targets.add(record.target)
        if (record.level < LogLevel.WARN) belowWarn.incrementAndGet()
    }
}

/** The value of the first `"name": <integer>` in `json`. */
fun number(json: String, name: String): Long =
    Regex("\"$name\":(-?\\d+)").find(json)?.groupValues?.get(1)?.toLong()
        ?: error("no $name in the testkit's JSON")

/** The text of the JSON object that is the value of the first `"name":` in `json`. */
fun objectField(json: String, name: String): String {
    val start = json.indexOf("\"$name\":{").takeIf { it >= 0 } ?: error("no $name object")
    var i = start + name.length + 3
    var depth = 0
    var inString = false
    while (i < json.length) {
        val c = json[i]
        if (inString) {
            if (c == '\\') i++ else if (c == '"') inString = false
        } else when (c) {
            '"' -> inString = true
            '{' -> depth++
            '}' -> if (--depth == 0) return json.substring(start + name.length + 3, i + 1)
        }
        i++
    }
    error("unterminated $name object")
}

fun check(condition: Boolean, message: () -> String) {
    if (!condition) throw AssertionError(message())
}

fun main(args: Array<String>) {
    val testkit = args.getOrNull(0) ?: error("usage: ExportTest <path to jim-testkit>")
    val process = ProcessBuilder(testkit, "serve", "--template", "Small")
        .redirectError(ProcessBuilder.Redirect.INHERIT)
        .start()
    val results = mutableListOf<Pair<String, Throwable?>>()
    try {
        val line = process.inputStream.bufferedReader().readLine() ?: error("jim-testkit exited early")
        val systemId = number(line, "connected_system_id").toInt()
        val pending = number(line, "pending_exports")
        val request = parseExportRequest(objectField(line, "request"))

        fun test(name: String, body: suspend () -> Unit) {
            val failure = try {
                runBlocking { body() }
                null
            } catch (t: Throwable) {
                t
            }
            println((if (failure == null) "PASS " else "FAIL ") + name + (failure?.let { ": $it" } ?: ""))
            results += name to failure
        }

        ExportEngine(2u).use { engine ->
            test("records carry the request and hide secrets") {
                check(request.connectedSystemId == systemId) { "system id ${request.connectedSystemId}" }
                check(request.options == defaultRunOptions()) { "defaults ${request.options}" }
                val shown = request.toString()
                check(!shown.contains("\"password\"") && shown.contains("password=***")) { shown }
            }

            test("bad input raises ExportException.InvalidRequest naming every field") {
                val bad = request.copy(
                    connectedSystemId = 0,
                    options = request.options.copy(pageSize = 0u),
                )
                try {
                    engine.runExport(bad)
                    throw AssertionError("no exception")
                } catch (e: ExportException.InvalidRequest) {
                    val paths = e.errors.map { it.path }.toSet()
                    check(paths.containsAll(listOf("connected_system_id", "options.page_size"))) { "$paths" }
                }
            }

            test("an unreachable database raises ExportException.Database") {
                val database = DatabaseConfig(
                    connection = Secret("postgres://jim:pw-k7@127.0.0.1:1/jim"),
                    connectTimeoutMs = 2000uL,
                )
                try {
                    engine.queueSummary(database, systemId)
                    throw AssertionError("no exception")
                } catch (e: ExportException.Database) {
                    check(!e.reason.contains("pw-k7")) { e.reason }
                }
            }

            test("the queue summary shows the staged creates") {
                val summary = engine.queueSummary(request.database, systemId)
                check(summary.total == pending && summary.executable == pending) { "$summary" }
                val row = summary.byStatus.single()
                check(row.knownStatus == PendingExportStatus.PENDING && row.knownChangeType == PendingExportChangeType.CREATE) { "$row" }
            }

            test("runExport exports everything and the database agrees") {
                val counter = Counter()
                val result = engine.runExport(request, counter)
                check(result.successCount == pending.toULong()) { result.message }
                check(result.failedCount == 0uL && result.deferredCount == 0uL && !result.cancelled) { result.message }
                check(result.dialect == Dialect.OPEN_LDAP) { "${result.dialect}" }
                check(counter.items.get() == pending && counter.succeeded.get() == pending) { "items ${counter.items} ${counter.succeeded}" }
                check(counter.batches.get() > 0 && counter.logs.get() > 0) { "no batches or logs" }
                // The tracing events of the directory and the store reach the listener too.
                for (module in listOf("jim_export::directory", "jim_export::store")) {
                    check(counter.targets.any { it.startsWith(module) }) { "no $module event in ${counter.targets}" }
                }
                check(counter.belowWarn.get() > 0) { "no debug or info records by default" }
                check(counter.lastPhase == ExportPhase.COMPLETED) { "last phase ${counter.lastPhase}" }
                val summary = engine.queueSummary(request.database, systemId)
                val row = summary.byStatus.single()
                check(row.knownStatus == PendingExportStatus.EXPORTED && row.count == pending) { "$summary" }
                check(summary.executable == 0L && summary.strandedExecuting == 0L) { "$summary" }
                check(engine.resetFailed(request.database, systemId) == 0uL) { "nothing failed" }
                check(engine.releaseStranded(request.database, systemId, 0uL) == 0uL) { "nothing stranded" }
            }

            test("a watch with the trigger installed waits for work and stops on its CancelToken") {
                engine.installNotifyTrigger(request.database)
                check(engine.notifyTriggerInstalled(request.database)) { "trigger not installed" }
                val cancel = CancelToken()
                // This host wants warnings and errors only.
                val quiet = request.copy(options = request.options.copy(logLevel = LogLevel.WARN))
                val counter = Counter()
                val result = coroutineScope {
                    val watch = async {
                        engine.watch(WatchRequest(listOf(quiet), defaultWatchOptions()), cancel, counter)
                    }
                    delay(1500)
                    check(engine.activeRuns() == 1u) { "active runs ${engine.activeRuns()}" }
                    cancel.cancel()
                    withTimeout(30_000) { watch.await() }
                }
                check(result.mode == WatchMode.NOTIFICATIONS && result.triggerInstalled) { result.message }
                check(result.systems.size == 1 && result.exports == 0uL) { result.message }
                check(result.wakeUps.startup >= 1uL) { "${result.wakeUps}" }
                check(counter.belowWarn.get() == 0L) { "${counter.belowWarn} records below Warn" }
                engine.removeNotifyTrigger(request.database)
                check(!engine.notifyTriggerInstalled(request.database)) { "trigger still installed" }
                val summary = engine.queueSummary(request.database, systemId)
                check(summary.strandedExecuting == 0L && summary.executable == 0L) { "$summary" }
            }

            engine.shutdown()
            check(!engine.isRunning()) { "still running" }
        }
    } finally {
        process.outputStream.close()
        if (!process.waitFor(60, TimeUnit.SECONDS)) process.destroyForcibly()
    }
    val failed = results.count { it.second != null }
    println("kotlin: ${results.size - failed} passed, $failed failed")
    exitProcess(if (failed == 0 && results.isNotEmpty()) 0 else 1)
}
