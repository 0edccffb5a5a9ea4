import ArgumentParser
import FleetCore
import FleetYAML
import Foundation

/// `mcpfleet bench`: measures the manifest pipeline on a directory (see `Benchmarks/`).
///
/// Each subcommand prints one JSON line on stdout, so `Benchmarks/run.sh` can collect the figures.
/// This is a benchmark, not a test: nothing here asserts a time.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure loading and validating a manifest directory (prints one JSON line).",
        discussion: """
            `bench load` times what `mcpfleet validate` does (read + YAML parse, decode, cross-document \
            validation) and `bench raw-parse` times libyaml's bare event parse of the same files, the \
            floor any loader built on libyaml can reach. `bench plan` times rendering the desired state \
            and planning it against a live snapshot (converged, optionally with drift). Generate large \
            catalogs with `Benchmarks/gen_catalog.py` and compare them with `Benchmarks/run.sh`.
            """,
        subcommands: [Load.self, RawParse.self, PlanBench.self]
    )

    struct Common: ParsableArguments {
        @Argument(help: "A manifest directory (read recursively) or a single manifest file.")
        var path: String

        @Option(name: .long, help: "Timed iterations (the median is reported).")
        var iterations: Int = 5

        @Option(name: .long, help: "Untimed iterations run first.")
        var warmup: Int = 1

        func validate() throws {
            guard iterations >= 1 else { throw ValidationError("--iterations must be at least 1") }
            guard warmup >= 0 else { throw ValidationError("--warmup must not be negative") }
        }
    }

    struct Load: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "load",
            abstract: "Time load (read + parse) + decode + validate, as `mcpfleet validate` does.")

        @OptionGroup var common: Common

        /// As `LoadedCatalog.load`: the directory itself, or a single file's directory.
        var baseDirectory: String {
            var isDir: ObjCBool = false
            let base = FileManager.default.fileExists(atPath: common.path, isDirectory: &isDir) && !isDir.boolValue
                ? (common.path as NSString).deletingLastPathComponent : common.path
            return base.isEmpty ? "." : base
        }

        func run() throws {
            var total: [Double] = [], parse: [Double] = [], decode: [Double] = [], validate: [Double] = [], free: [Double] = []
            var raw: [Double] = [], ratio: [Double] = []
            var servers = 0, documents = 0, files = 0, bytes = 0, errors = 0
            // The raw libyaml parse of the same bytes (read once, untimed) runs right before each load, so
            // both see the same machine: on shared cores their ratio is steadier than the ratio of two
            // medians taken minutes apart (`bench raw-parse` alone still exists).
            let contents = rawParseInputs(common.path)
            for i in 0..<(common.warmup + common.iterations) {
                let r0 = BenchClock.now()
                _ = rawParse(contents)
                let r1 = BenchClock.now()
                // One iteration in a function of its own: everything it built is freed when it returns,
                // after the last timestamp (Swift may end a value's lifetime at its last use, which would
                // otherwise put freeing the node trees or the catalog inside a timed phase).
                let (t0, t1, t2, t3) = iteration(first: i == 0) { stats in
                    servers = stats.servers; documents = stats.documents; files = stats.files; bytes = stats.bytes; errors = stats.errors
                }
                let t4 = BenchClock.now()
                if i >= common.warmup {
                    total.append(t3 - t0)
                    parse.append(t1 - t0)
                    decode.append(t2 - t1)
                    validate.append(t3 - t2)
                    free.append(t4 - t3)
                    raw.append(r1 - r0)
                    ratio.append((t3 - t0) / max(r1 - r0, 1e-9))
                }
            }
            if files == 0 {
                throw CommandFailure(message: "bench load: nothing loaded from '\(common.path)'")
            }
            let median = total.median
            var out = BenchJSON()
            out["bench"] = .string("load")
            out["servers"] = .int(servers)
            out["documents"] = .int(documents)
            out["files"] = .int(files)
            out["bytes"] = .int(bytes)
            out["errors"] = .int(errors)
            out["iterations"] = .int(common.iterations)
            out["median_ms"] = .double(median)
            out["min_ms"] = .double(total.min() ?? 0)
            out["max_ms"] = .double(total.max() ?? 0)
            out["parse_median_ms"] = .double(parse.median)
            out["decode_median_ms"] = .double(decode.median)
            out["validate_median_ms"] = .double(validate.median)
            out["free_median_ms"] = .double(free.median)
            out["raw_parse_median_ms"] = .double(raw.median)
            out["paired_ratio_median"] = .double(ratio.median)
            out["threads"] = .int(Parallel.workers)
            out["documents_per_s"] = .double(median > 0 ? Double(documents) / (median / 1000) : 0)
            out["peak_rss_kib"] = .int(peakRSSKiB())
            writeStdout(out.line)
            if errors > 0 {
                writeStderr("bench load: the catalog has \(errors) errors (run `mcpfleet validate \(common.path)`); figures are not representative\n")
                throw ExitCode(1)
            }
        }

        struct Stats { var servers = 0, documents = 0, files = 0, bytes = 0, errors = 0 }

        /// Load, decode and validate once; returns the four timestamps. What was built stays alive until
        /// after the last one and is freed when this returns (the caller times that separately).
        func iteration(first: Bool, report: (Stats) -> Void) -> (Double, Double, Double, Double) {
            let t0 = BenchClock.now()
            let set = ManifestLoader.load(path: common.path)
            let t1 = BenchClock.now()
            let inputs = set.files.map { ManifestFileInput(file: $0.path, relativePath: $0.relativePath, documents: $0.documents) }
            let (catalog, decodeDiagnostics) = ManifestDecoder.decode(inputs)
            let t2 = BenchClock.now()
            // Evidence files are stat()ed as `validate` does (LoadedCatalog.load).
            let base = baseDirectory
            let validation = CatalogValidator.validate(catalog) { FileManager.default.fileExists(atPath: base + "/" + $0) }
            let t3 = BenchClock.now()
            withExtendedLifetime((set, inputs, catalog, decodeDiagnostics, validation)) {
                guard first else { return }
                var all = Diagnostics(set.diagnostics)
                all.append(contentsOf: decodeDiagnostics)
                all.append(contentsOf: validation)
                report(Stats(servers: catalog.servers.count, documents: set.files.reduce(0) { $0 + $1.documents.count },
                             files: set.files.count, bytes: set.files.reduce(0) { $0 + $1.text.utf8.count }, errors: all.errorCount))
            }
            return (t0, t1, t2, t3)
        }
    }

    struct RawParse: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "raw-parse",
            abstract: "Time libyaml's raw event parse of the same files (read first; only parsing is timed).")

        @OptionGroup var common: Common

        func run() throws {
            let contents = rawParseInputs(common.path)
            guard !contents.isEmpty else { throw CommandFailure(message: "bench raw-parse: no manifest files under '\(common.path)'") }
            var times: [Double] = []
            var events = 0
            for i in 0..<(common.warmup + common.iterations) {
                let t0 = BenchClock.now()
                let count = rawParse(contents)
                let t1 = BenchClock.now()
                if i >= common.warmup { times.append(t1 - t0) }
                events = count
            }
            let bytes = contents.reduce(0) { $0 + $1.count }
            let median = times.median
            var out = BenchJSON()
            out["bench"] = .string("raw-parse")
            out["files"] = .int(contents.count)
            out["bytes"] = .int(bytes)
            out["events"] = .int(events)
            out["iterations"] = .int(common.iterations)
            out["median_ms"] = .double(median)
            out["min_ms"] = .double(times.min() ?? 0)
            out["max_ms"] = .double(times.max() ?? 0)
            out["mib_per_s"] = .double(median > 0 ? Double(bytes) / 1_048_576 / (median / 1000) : 0)
            out["peak_rss_kib"] = .int(peakRSSKiB())
            writeStdout(out.line)
        }
    }
}

extension BenchCommand {
    struct PlanBench: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "plan",
            abstract: "Time load, render and plan against a live snapshot (converged, with --drift percent of servers behind).",
            discussion: """
                The live snapshot is `LiveState.converged` of the catalog's own desired state; with --drift P, \
                P % of the servers (evenly spread) run an older version in it (another revision and \
                `version` field), so the plan rolls them out. Supply-chain verdicts are not computed \
                (`mcpfleet plan` adds them when the catalog has policies with evidence).
                """)

        @OptionGroup var common: Common

        @Option(name: .long, help: "The environment to plan for.")
        var env: String

        @Option(name: .long, help: "Percentage of servers whose live version differs (0-100).")
        var drift: Double = 0

        func validate() throws {
            guard (0...100).contains(drift) else { throw ValidationError("--drift must be between 0 and 100") }
        }

        func run() throws {
            let (live, drifted) = try snapshot()

            var load: [Double] = [], render: [Double] = [], plan: [Double] = [], format: [Double] = [], free: [Double] = []
            var servers = 0, summary = PlanSummary()
            for i in 0..<(common.warmup + common.iterations) {
                // As in `bench load`: one iteration per call, so freeing the catalog, the desired state and
                // the plan happens after the last timestamp, not inside the render or plan phase.
                let (t0, t1, t2, t3, t4) = try iteration(live: live) { n, s in servers = n; summary = s }
                let t5 = BenchClock.now()
                if i >= common.warmup {
                    load.append(t1 - t0)
                    render.append(t2 - t1)
                    plan.append(t3 - t2)
                    format.append(t4 - t3)
                    free.append(t5 - t4)
                }
            }
            let renderPlan = zip(render, plan).map { $0 + $1 }
            var out = BenchJSON()
            out["bench"] = .string("plan")
            out["environment"] = .string(env)
            out["servers"] = .int(servers)
            out["drift_percent"] = .double(drift)
            out["drifted_servers"] = .int(drifted)
            out["rollouts"] = .int(summary.rollout)
            out["unchanged"] = .int(summary.unchanged)
            out["iterations"] = .int(common.iterations)
            out["load_median_ms"] = .double(load.median)
            out["render_median_ms"] = .double(render.median)
            out["plan_median_ms"] = .double(plan.median)
            out["render_plan_median_ms"] = .double(renderPlan.median)
            out["render_plan_min_ms"] = .double(renderPlan.min() ?? 0)
            out["format_text_median_ms"] = .double(format.median)
            out["free_median_ms"] = .double(free.median)
            out["threads"] = .int(Parallel.workers)
            out["peak_rss_kib"] = .int(peakRSSKiB())
            writeStdout(out.line)
        }

        func iteration(live: LiveState, report: (Int, PlanSummary) -> Void) throws -> (Double, Double, Double, Double, Double) {
            let t0 = BenchClock.now()
            let loaded = CatalogLoader.load(path: common.path)
            let t1 = BenchClock.now()
            guard let e = loaded.catalog.environment(env) else { throw CommandFailure(message: "bench plan: environment `\(env)` vanished") }
            let desired = Renderer.desiredState(loaded.catalog, environment: e)
            let t2 = BenchClock.now()
            let result = Planner.plan(desired: desired, live: live, baseline: "bench")
            let t3 = BenchClock.now()
            let text = PlanFormatter(color: false).text(result)
            let t4 = BenchClock.now()
            withExtendedLifetime((loaded, desired, result, text)) {
                report(desired.servers.count, result.summary)
            }
            return (t0, t1, t2, t3, t4)
        }

        /// The live snapshot, built once from an untimed load and shared by every iteration. A function of
        /// its own so that the catalog it came from is freed before the timed runs (peak RSS).
        func snapshot() throws -> (LiveState, Int) {
            let first = CatalogLoader.load(path: common.path)
            guard !first.diagnostics.hasErrors else {
                throw CommandFailure(message: "bench plan: the catalog has \(first.diagnostics.errorCount) errors (run `mcpfleet validate \(common.path)`)")
            }
            guard let environment = first.catalog.environment(env) else {
                throw CommandFailure(message: "bench plan: no environment `\(env)` in \(common.path)")
            }
            var live = LiveState.converged(Renderer.desiredState(first.catalog, environment: environment))
            let drifted = Self.applyDrift(percent: drift, to: &live)
            return (live, drifted)
        }

        /// Moves `percent` % of the servers (evenly spread) to an older version in the snapshot: another
        /// revision and another `version` field, as if the catalog had been bumped since. Returns how many.
        static func applyDrift(percent: Double, to live: inout LiveState) -> Int {
            let n = live.servers.count
            let count = min(n, Int((Double(n) * percent / 100).rounded()))
            guard count > 0 else { return 0 }
            for k in 0..<count {
                let i = k * n / count
                for r in live.servers[i].revisions.indices {
                    let old = live.servers[i].revisions[r].revision
                    let drifted = "d" + old.dropFirst()
                    live.servers[i].revisions[r].revision = drifted == old ? "e" + old.dropFirst() : drifted
                    live.servers[i].revisions[r].version = "0.0.0-drift"
                    if let f = live.servers[i].revisions[r].fields?.firstIndex(where: { $0.path == "version" }) {
                        live.servers[i].revisions[r].fields?[f] = SpecField(path: "version", display: "\"0.0.0-drift\"")
                    }
                }
                live.servers[i].lastGoodRevision = live.servers[i].revisions.first?.revision
            }
            return count
        }
    }
}

/// Monotonic milliseconds.
enum BenchClock {
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) * 1000 + Double(ts.tv_nsec) / 1_000_000
    }
}

/// Peak resident set size of this process in KiB (`ru_maxrss`, the same figure as `VmHWM` in
/// /proc/self/status and `%M` of /usr/bin/time), 0 where unavailable.
func peakRSSKiB() -> Int {
    var usage = rusage()
    #if canImport(Darwin)
    guard getrusage(RUSAGE_SELF, &usage) == 0 else { return 0 }
    return Int(usage.ru_maxrss) / 1024  // bytes on Darwin
    #else
    guard getrusage(RUSAGE_SELF.rawValue, &usage) == 0 else { return 0 }
    return Int(usage.ru_maxrss)
    #endif
}

/// A flat JSON object whose keys keep their insertion order (the harness reads it with a JSON parser).
struct BenchJSON {
    enum Value {
        case string(String), int(Int), double(Double)
    }

    private var fields: [(String, Value)] = []

    subscript(key: String) -> Value? {
        get { fields.first { $0.0 == key }?.1 }
        set {
            fields.removeAll { $0.0 == key }
            if let newValue { fields.append((key, newValue)) }
        }
    }

    var line: String {
        let body = fields.map { key, value -> String in
            let rendered: String
            switch value {
            case .string(let s): rendered = "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
            case .int(let n): rendered = String(n)
            case .double(let d): rendered = d.isFinite ? String(format: "%.3f", d) : "null"
            }
            return "\"\(key)\":\(rendered)"
        }
        return "{" + body.joined(separator: ",") + "}\n"
    }
}

/// The manifest files `load` would read (same selection: hidden entries and `.mcpfleetignore`
/// skipped), as bytes, read up front so that only parsing is timed.
func rawParseInputs(_ path: String) -> [[UInt8]] {
    ManifestLoader.load(path: path).files.map { Array($0.text.utf8) }
}

/// libyaml's raw event parse of every file (every event pulled, nothing built): the events counted.
func rawParse(_ contents: [[UInt8]]) -> Int {
    contents.reduce(0) { $0 + YAMLLoader.rawEventCount($1) }
}

extension Array where Element == Double {
    var median: Double {
        guard !isEmpty else { return 0 }
        let s = sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
}
