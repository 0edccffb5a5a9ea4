import FleetCore
import FleetYAML
import Foundation

/// Reads the contract files servers name (`spec.contract`) from the manifest root: confined to it (a
/// link that leads out is refused, as for evidence), bounded in size, each error naming the file.
public enum ContractWiring {
    static let maxSize = 16 << 20

    /// Per server of the environment: its committed contract, the environment's contracts mode, its tools.
    public static func expectations(_ catalog: Catalog, environment: Environment, baseDirectory: String) throws -> [String: ContractExpectation] {
        let mode = catalog.contractsMode(environment: environment.name)
        var out: [String: ContractExpectation] = [:]
        for s in catalog.servers(in: environment) {
            var e = ContractExpectation(file: s.contract, mode: mode, tools: s.tools)
            if let file = s.contract {
                e.contract = try read(file, root: baseDirectory, server: s.name)
            }
            out[s.name] = e
        }
        return out
    }

    /// The contract at `rootRelative` under `root`.
    public static func read(_ rootRelative: String, root: String, server: String) throws -> ServerContract {
        let full = (root as NSString).appendingPathComponent(rootRelative)
        if RootConfinement(root: root)?.contains(full) == false {
            throw FleetFailure(message: "server \(server): spec.contract `\(rootRelative)` is a symbolic link that leads out of the manifest root; it is not read")
        }
        guard let handle = FileHandle(forReadingAtPath: full) else {
            let exists = FileManager.default.fileExists(atPath: full)
            throw FleetFailure(message: "server \(server): spec.contract `\(rootRelative)` " + (exists ? "cannot be read" : "does not exist")
                                 + (exists ? "" : " (`mcpfleet contract pull \(server)` writes it)"))
        }
        defer { try? handle.close() }
        let data = (try? handle.read(upToCount: maxSize + 1)) ?? Data()
        guard data.count <= maxSize else { throw FleetFailure(message: "server \(server): spec.contract `\(rootRelative)` is larger than \(maxSize >> 20) MiB") }
        do {
            return try ServerContract.decode(data, file: rootRelative)
        } catch {
            throw FleetFailure(message: "server \(server): \(error)")
        }
    }

    /// Where `contract pull` writes a server's contract: `spec.contract`, else `contracts/SERVER.json`.
    public static func defaultFile(_ server: Server) -> String { server.contract ?? "contracts/\(server.name).json" }
}

extension ContractWiring {
    /// What a plan compares contract files against.
    public enum Baseline {
        /// Nothing records a surface (a live-state snapshot).
        case none
        /// The contract files as they were at a git ref.
        case git(ref: String)
        /// The surfaces the serving revisions recorded when they became healthy.
        case recorded(any RolloutStore, LiveState)
    }

    /// Per server that names a contract (now or at the baseline): the differences, and its tool lists
    /// checked against the new contract. `uncompared`: some contract had no baseline to compare with.
    public static func planDiffs(_ catalog: Catalog, environment: Environment, root: String, path: String, baseline: Baseline) async throws
        -> (diffs: [ContractFileDiff], uncompared: Bool) {
        let current = try expectations(catalog, environment: environment, baseDirectory: root)
        var oldFiles: [String: String] = [:]
        var tree: GitSource.Tree?
        if case .git(let ref) = baseline {
            do {
                let t = try GitSource.Tree(directory: path, ref: ref)
                tree = t
                let old = CatalogLoader.from(set: try t.manifestSet(), baseDirectory: path) { _ in true }
                for s in old.catalog.servers(in: environment) {
                    if let f = s.contract { oldFiles[s.name] = f }
                }
            } catch {
                throw FleetFailure(message: "\(error)")
            }
        }
        var diffs: [ContractFileDiff] = []
        var uncompared = false
        for name in Set(current.keys).union(oldFiles.keys).sorted() {
            let e = current[name]
            guard e?.file != nil || oldFiles[name] != nil else { continue }
            var old: ServerContract?
            switch baseline {
            case .none:
                old = e?.contract
                uncompared = true
            case .git(let ref):
                if let file = oldFiles[name], let tree {
                    guard let resolved = try tree.resolve(file), let entry = tree.entries[resolved], entry.mode.hasPrefix("100") else {
                        // Named at the ref but not there (or a link out of the tree): nothing to compare with.
                        diffs.append(ContractFileDiff(server: name, file: e?.file ?? file, old: nil, new: e?.contract, tools: e?.tools))
                        continue
                    }
                    let data = try tree.blobs([entry.object]).first ?? Data()
                    do { old = try ServerContract.decode(data, file: "\(file) at \(ref)") } catch {
                        throw FleetFailure(message: "server \(name): \(error)")
                    }
                }
            case .recorded(let store, let live):
                if let serving = live.server(name)?.servingRevision {
                    old = try await store.revisions(server: name).last { $0.revision == serving.revision && $0.contract != nil }?.contract
                }
                if old == nil {
                    old = e?.contract
                    uncompared = true
                }
            }
            diffs.append(ContractFileDiff(server: name, file: e?.file ?? oldFiles[name] ?? "", old: old, new: e?.contract, tools: e?.tools))
        }
        return (diffs, uncompared)
    }
}

extension ContractWiring {
    /// `history`: the revision's contract digest, and with `--contract` its surface.
    public static func historyLines(_ c: ServerContract, surface: Bool) -> String {
        var out = "      contract: \(c.digest) (\(c.tools.count) tools, \(c.prompts.count) prompts, \(c.resourceTemplates.count) resource templates; \(c.server.name) \(c.server.version))\n"
        guard surface else { return out }
        for t in c.tools {
            let props = t.inputSchema["properties"]?.object ?? [:]
            let required = Set((t.inputSchema["required"]?.array ?? []).compactMap(\.string))
            let params = props.keys.sorted().map { k -> String in
                let type = props[k]?["type"]?.string ?? props[k]?["type"]?.compact ?? "any"
                return required.contains(k) ? "\(k): \(type)" : "\(k)?: \(type)"
            }
            out += "        tool \(t.name)(\(params.joined(separator: ", ")))"
            if let d = t.description { out += " — " + ContractDiff.oneLinePublic(d) }
            out += "\n"
        }
        for p in c.prompts {
            out += "        prompt \(p.name)(\(p.arguments.map { $0.required ? $0.name : $0.name + "?" }.joined(separator: ", ")))"
            if let d = p.description { out += " — " + ContractDiff.oneLinePublic(d) }
            out += "\n"
        }
        for t in c.resourceTemplates { out += "        resource template \(t.name) \(t.uriTemplate)\n" }
        return out
    }

    /// `status`: the contract each serving revision recorded when it became healthy.
    public static func statusLines(_ live: LiveState, store: any RolloutStore) async throws -> String {
        let out = try await withContracts(live, store: store).servers.compactMap { s in
            s.contract.map { "  \(s.name): contract \($0.shortDigest) of revision \($0.revision) (\($0.tools) tools)" }
        }
        return out.isEmpty ? "" : "\n" + out.joined(separator: "\n") + "\n"
    }

    /// `live` with each server's `contract`: the one recorded for its serving revision (`status -o json`).
    public static func withContracts(_ live: LiveState, store: any RolloutStore) async throws -> LiveState {
        var out = live
        for i in out.servers.indices {
            guard let serving = out.servers[i].servingRevision?.revision,
                  let c = try await store.revisions(server: out.servers[i].name).last(where: { $0.revision == serving && $0.contract != nil })?.contract else { continue }
            out.servers[i].contract = LiveContract(digest: c.digest, revision: serving, tools: c.tools.count)
        }
        return out
    }
}
