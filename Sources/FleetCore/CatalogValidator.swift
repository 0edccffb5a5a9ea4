/// Rules that span documents: names unique per kind, references resolve, port blocks do not collide,
/// tenant quotas hold. Pure: file existence is asked through `fileExists`.
/// What the file system says about a path relative to the manifest root.
public enum FileCheck: Sendable, Hashable {
    case exists
    case missing
    /// It exists, but following its links leads out of the manifest root.
    case outsideRoot
}

public enum CatalogValidator {
    public static func validate(_ catalog: Catalog, fileExists: (String) -> Bool = { _ in true }) -> Diagnostics {
        validate(catalog, files: { fileExists($0) ? .exists : .missing })
    }

    /// `files` answers for paths relative to the manifest root (evidence, keys, `${MANIFEST_DIR}/…`).
    public static func validate(_ catalog: Catalog, files check: (String) -> FileCheck) -> Diagnostics {
        var d = Diagnostics()
        duplicates(catalog, &d)
        references(catalog, &d)
        // Each environment's servers, as indices in load order, computed once for ports and quotas.
        let order = loadOrder(catalog.servers.mapInPlace { $0.pointee.source })
        let selections = catalog.servers.withUnsafeBufferPointer { all in
            catalog.environments.map { env in order.filter { env.selects(at: all.baseAddress! + $0) } }
        }
        for (environment, selected) in zip(catalog.environments, selections) where environment.driver.isHost {
            ports(catalog, environment, selected, &d)
        }
        for (environment, selected) in zip(catalog.environments, selections) where environment.driver == .kubernetes {
            namespaces(catalog, environment, selected, &d)
        }
        quotas(catalog, catalog.environments.isEmpty ? [order] : selections, &d)
        files(catalog, check, &d)
        return d
    }

    /// Indices of `sources` in load order: by file, then by document within the file. Sorting integer
    /// ranks rather than whole objects keyed by strings (files are ranked once).
    static func loadOrder(_ sources: [DocumentSource]) -> [Int] {
        let files = Set(sources.map(\.file)).sorted()
        var rank: [String: Int] = [:]
        rank.reserveCapacity(files.count)
        for (i, f) in files.enumerated() { rank[f] = i }
        let keys = sources.map { (rank[$0.file] ?? 0, $0.index) }
        // (file, index) identifies a document and a document holds one object: the keys are distinct.
        return sources.indices.sorted { keys[$0] < keys[$1] }
    }

    static func duplicates(_ c: Catalog, _ d: inout Diagnostics) {
        // Names and sources are taken out first: copying whole objects (Server has ~30 fields) per step
        // is what this check used to spend its time on.
        // Read in place (`mapInPlace`): `map` over `[Server]` copied every server, twice.
        func check<T>(_ items: [T], kind: Kind, name: (UnsafePointer<T>) -> String, source: (UnsafePointer<T>) -> DocumentSource, locations: (T) -> FieldLocations) {
            let names = items.mapInPlace(name), sources = items.mapInPlace(source)
            var seen: [String: Int] = [:]
            seen.reserveCapacity(items.count)
            for i in loadOrder(sources) {
                if let first = seen[names[i]] {
                    d.error("duplicate-name", "\(kind.rawValue) `\(names[i])` is defined twice (first in \(sources[first].file))", at: locations(items[i])["metadata.name"],
                            hint: "names are unique per kind across the whole catalog")
                } else {
                    seen[names[i]] = i
                }
            }
        }
        check(c.servers, kind: .server, name: { $0.pointee.name }, source: { $0.pointee.source }, locations: \.locations)
        check(c.policies, kind: .policy, name: { $0.pointee.name }, source: { $0.pointee.source }, locations: \.locations)
        check(c.slos, kind: .slo, name: { $0.pointee.name }, source: { $0.pointee.source }, locations: \.locations)
        check(c.tenants, kind: .tenant, name: { $0.pointee.name }, source: { $0.pointee.source }, locations: \.locations)
        check(c.environments, kind: .environment, name: { $0.pointee.name }, source: { $0.pointee.source }, locations: \.locations)
    }

    static func references(_ c: Catalog, _ d: inout Diagnostics) {
        let tenants = Set(c.tenants.map(\.name)), slos = Set(c.slos.map(\.name)), envs = Set(c.environments.map(\.name))
        func missing(_ what: String, _ name: String, _ known: Set<String>, at location: SourceLocation) {
            let hint = Syntax.closest(to: name, in: known.sorted()).map { "did you mean `\($0)`?" }
                ?? (known.isEmpty ? "no \(what) is defined" : "defined: \(known.sorted().joined(separator: ", "))")
            d.error("unresolved-reference", "\(what) `\(name)` is not defined", at: location, hint: hint)
        }
        c.servers.forEachInPlace { s in
            if !tenants.contains(s.pointee.tenant) { missing("Tenant", s.pointee.tenant, tenants, at: s.pointee.locations["spec.tenant"]) }
            if let slo = s.pointee.slo, !slos.contains(slo) { missing("SLO", slo, slos, at: s.pointee.locations["spec.slo"]) }
            for (i, e) in (s.pointee.environments ?? []).enumerated() where !envs.contains(e) {
                missing("Environment", e, envs, at: s.pointee.locations["spec.environments[\(i)]"])
            }
        }
        for p in c.policies {
            for (i, e) in (p.environments ?? []).enumerated() where !envs.contains(e) {
                missing("Environment", e, envs, at: p.locations["spec.environments[\(i)]"])
            }
        }
    }

    /// `selected`: the environment's servers in load order. Each server's block is checked against the
    /// port range and against the blocks of servers loaded before it.
    static func ports(_ c: Catalog, _ env: Environment, _ selected: [Int], _ d: inout Diagnostics) {
        var blocks: [(range: Range<Int>, server: Int)] = []
        blocks.reserveCapacity(selected.count)
        // The local driver runs a stdio server behind a bridge listening on its port block, so stdio
        // servers need a port there, and their blocks may collide like anyone's.
        let stdioListens = env.driver == .local
        for i in selected {
            let s = c.servers[i]
            guard let port = s.transport.port else {
                if stdioListens || s.transport.type != .stdio {
                    d.error("missing-field", "server `\(s.name)` has no `spec.transport.port`, which environment `\(env.name)` (driver \(env.driver.rawValue)) needs"
                            + (s.transport.type == .stdio ? ": its stdio server runs behind a bridge listening on that port" : ": its instances listen on port + slot"),
                            at: s.locations["spec.transport"], hint: "give it a block of free ports, e.g. `transport: {type: \(s.transport.type.rawValue), port: 9100}`")
                }
                continue
            }
            guard stdioListens || s.transport.type != .stdio else { continue }
            blocks.append((port..<(port + s.portBlockSize), i))
        }
        ephemeralRange(env, &d)
        // Blocks rarely overlap: find out with one sort, and only then look for which earlier block each
        // overlapping one meets first (the quadratic search below names the first in load order).
        let byLower = blocks.map(\.range).sorted { $0.lowerBound < $1.lowerBound }
        var reach = Int.min
        var anyOverlap = false
        for r in byLower {
            if r.lowerBound < reach { anyOverlap = true; break }
            reach = max(reach, r.upperBound)
        }
        for (k, (block, i)) in blocks.enumerated() {
            if !anyOverlap, env.portRange.map({ $0.contains(block) }) ?? true { continue } // nothing to report
            let s = c.servers[i]
            if let range = env.portRange, !range.contains(block) {
                d.error("port-collision", "server `\(s.name)` needs ports \(block.lowerBound)-\(block.upperBound - 1) (replicas + rollout surge), outside environment `\(env.name)`'s portRange \(range)", at: s.locations["spec.transport.port"])
            }
            guard anyOverlap else { continue }
            if let other = blocks[..<k].first(where: { $0.range.overlaps(block) }) {
                d.error("port-collision", "server `\(s.name)` needs ports \(block.lowerBound)-\(block.upperBound - 1), which overlap server `\(c.servers[other.server].name)`'s ports \(other.range.lowerBound)-\(other.range.upperBound - 1) in environment `\(env.name)`", at: s.locations["spec.transport.port"],
                        hint: "each replica slot of a host driver listens on port + slot; give the servers blocks at least replicas + surge apart")
            }
        }
    }

    /// Linux's default ephemeral (outgoing connection) port range, `net.ipv4.ip_local_port_range`.
    public static let ephemeralPorts = 32768...60999

    /// A port range inside the kernel's ephemeral range: outgoing connections (the server's own, probes,
    /// other programs) take ports from there, and a busy machine then has replicas fail to bind.
    static func ephemeralRange(_ env: Environment, _ d: inout Diagnostics) {
        guard let range = env.portRange, range.lower <= ephemeralPorts.upperBound, range.upper >= ephemeralPorts.lowerBound else { return }
        d.append(.warning("ephemeral-ports", "environment `\(env.name)`'s portRange \(range) overlaps the kernel's ephemeral port range \(ephemeralPorts.lowerBound)-\(ephemeralPorts.upperBound) (Linux's default): outgoing connections take ports from there, and replicas fail to bind when the machine is busy",
                          at: env.locations["spec.portRange"], hint: "pick ports below 32768 (e.g. 20000-20999), or reserve them with `sysctl net.ipv4.ip_local_reserved_ports`"))
    }

    /// Every namespace a Kubernetes environment would create (tenant namespace, after the environment's
    /// prefix) must itself be a DNS label: the renderer refuses anything else.
    static func namespaces(_ c: Catalog, _ env: Environment, _ selected: [Int], _ d: inout Diagnostics) {
        let prefix = env.kubernetes?.namespacePrefix ?? ""
        var seen = Set<String>()
        for i in selected {
            let name = c.servers[i].tenant
            guard seen.insert(name).inserted, let t = c.tenant(name) else { continue }
            let ns = t.kubernetesNamespace
            let effective = prefix.isEmpty || ns.hasPrefix(prefix) ? ns : prefix + ns
            guard !Syntax.isDNSLabel(effective) else { continue }
            let at = prefix.isEmpty ? t.locations["metadata.name"] : env.locations["spec.kubernetes.namespacePrefix"]
            d.error("invalid-name", "tenant `\(name)` would get namespace `\(effective)` in environment `\(env.name)`, which is not \(Syntax.NameRule.dnsLabel.requirement)", at: at,
                    hint: prefix.isEmpty ? "set a shorter `spec.namespace` on the tenant" : "shorten the prefix or the tenant's namespace")
        }
    }

    /// `scopes`: per environment (or the whole catalog when it has none), its servers in load order.
    static func quotas(_ c: Catalog, _ scopes: [[Int]], _ d: inout Diagnostics) {
        var reported = Set<SourceLocation>()
        guard c.tenants.contains(where: { !$0.quota.isEmpty }) else { return }
        for scope in scopes {
            // One pass groups the scope's servers by tenant, keeping load order within each tenant.
            var byTenant: [String: [Int]] = [:]
            for i in scope { byTenant[c.servers[i].tenant, default: []].append(i) }
            let servers = c.servers
            for tenant in c.tenants where !tenant.quota.isEmpty {
                var cpu = 0, memory: Int64 = 0, count = 0, replicas = 0
                for i in byTenant[tenant.name] ?? [] {
                    let replicasOfServer = servers[i].replicas
                    count += 1
                    replicas += replicasOfServer
                    cpu += (servers[i].resources?.cpuMillis ?? 0) * replicasOfServer
                    memory += (servers[i].resources?.memoryBytes ?? 0) * Int64(replicasOfServer)
                    var over: [String] = []
                    let q = tenant.quota
                    if let m = q.maxServers, count > m { over.append("\(count) servers > maxServers \(m)") }
                    if let m = q.maxReplicas, replicas > m { over.append("\(replicas) replicas > maxReplicas \(m)") }
                    if let m = q.cpuMillis, cpu > m { over.append("cpu \(cpu)m > quota \(q.cpu ?? "\(m)m")") }
                    if let m = q.memoryBytes, memory > m { over.append("memory \(memory / (1 << 20))Mi > quota \(q.memory ?? "\(m)")") }
                    if !over.isEmpty {
                        let s = servers[i]
                        let location = s.locations["spec.tenant"]
                        if reported.insert(location).inserted {
                            d.error("quota-exceeded", "server `\(s.name)` pushes tenant `\(tenant.name)` over its quota: \(over.joined(separator: ", "))", at: location)
                        }
                        break
                    }
                }
            }
        }
    }

    static func files(_ c: Catalog, _ check: (String) -> FileCheck, _ d: inout Diagnostics) {
        func outside(_ what: String, _ path: String, at location: SourceLocation) {
            d.error("link-outside-root", "\(what) names `\(path)`, a symbolic link that leads out of the manifest root; it is not read", at: location,
                    hint: "evidence, keys and `${MANIFEST_DIR}` files must live under the manifest root; copy the file in instead of linking to it")
        }
        c.servers.forEachInPlace { s in
            if let sc = s.pointee.supplyChain {
                for (key, path) in [("artifact", sc.artifact), ("signature", sc.signature), ("sbom", sc.sbom), ("scan", sc.scan), ("provenance", sc.provenance)] {
                    guard let path else { continue }
                    let at = s.pointee.locations["spec.supplyChain.\(key)"]
                    switch check(path) {
                    case .exists: break
                    case .missing: d.error("missing-file", "`spec.supplyChain.\(key)` names `\(path)`, which does not exist", at: at)
                    case .outsideRoot: outside("`spec.supplyChain.\(key)`", path, at: at)
                    }
                }
            }
            // `${MANIFEST_DIR}/…` in the command and working directory: files the host runs or reads.
            let dir = s.pointee.source.relativeDirectory
            var uses: [(String, String)] = []
            for (i, arg) in (s.pointee.artifact.command ?? []).enumerated() { uses.append(("spec.artifact.command[\(i)]", arg)) }
            if let wd = s.pointee.artifact.workingDirectory { uses.append(("spec.artifact.workingDirectory", wd)) }
            for (path, value) in uses {
                guard let rest = manifestDirRest(value) else { continue }
                let relative = rest.isEmpty ? dir : (dir.isEmpty ? rest : dir + "/" + rest)
                if !relative.isEmpty, check(relative) == .outsideRoot {
                    outside("`\(path)`", value, at: s.pointee.locations[path])
                }
            }
        }
        for p in c.policies {
            for (i, k) in p.trustedKeys.enumerated() {
                guard case .file(let path) = k.material else { continue }
                switch check(path) {
                case .exists: break
                case .missing: d.error("missing-file", "trusted key `\(k.name)` names file `\(path)`, which does not exist", at: p.locations["spec.trustedKeys[\(i)]"])
                case .outsideRoot: outside("trusted key `\(k.name)`", path, at: p.locations["spec.trustedKeys[\(i)]"])
                }
            }
        }
    }

    /// The part of a `${MANIFEST_DIR}/…` value after the directory, up to the next substitution or
    /// space (`${MANIFEST_DIR}/bin/server` → `bin/server`); nil when the value does not start so.
    static func manifestDirRest(_ value: String) -> String? {
        let prefix = "${MANIFEST_DIR}"
        guard value.hasPrefix(prefix) else { return nil }
        var rest = value.dropFirst(prefix.count)
        guard rest.isEmpty || rest.first == "/" else { return nil }
        rest = rest.drop { $0 == "/" }
        let end = rest.firstIndex { $0 == "$" || $0 == " " || $0 == "=" } ?? rest.endIndex
        return String(rest[..<end]).split(separator: "/").filter { $0 != "." }.joined(separator: "/")
    }
}
