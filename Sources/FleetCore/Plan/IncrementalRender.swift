extension Renderer {
    /// The same desired state as `desiredState(_:environment:)`, rendering only the servers `reuse` has
    /// no rendering of: `reuse` gets each selected server and its rendered SLO, and returns the
    /// `DesiredServer` it rendered before from exactly these (or nil to render it now). Pure: the cache
    /// lives with the caller (the controller's manifest source), so a manifest change re-renders only
    /// the servers whose documents (or SLO) changed.
    public static func desiredState(_ catalog: Catalog, environment: Environment,
                                    reuse: (Server, DesiredSLO?) -> DesiredServer?) -> DesiredState {
        var slos: [String: DesiredSLO] = [:]
        for o in catalog.slos where slos[o.name] == nil { slos[o.name] = desiredSLO(o, environment: environment) }
        var servers: [DesiredServer] = []
        servers.reserveCapacity(catalog.servers.count)
        var scratch: [UInt8] = []
        catalog.servers.withUnsafeBufferPointer { all in
            guard let base = all.baseAddress else { return }
            for i in 0..<all.count where environment.selects(at: base + i) {
                let p = base + i
                let slo = p.pointee.slo.flatMap { slos[$0] }
                servers.append(reuse(p.pointee, slo) ?? desiredServer(at: p, slo: slo, scratch: &scratch))
            }
        }
        let tenantNames = Set(servers.map(\.tenant))
        let tenants = catalog.tenants.filter { tenantNames.contains($0.name) }.map(desiredTenant)
        var state = DesiredState(environment: environment.name, driver: environment.driver, servers: servers, tenants: tenants)
        state.objects = objects(catalog, environment: environment, sloNames: Set(servers.compactMap { $0.slo?.name }))
        return state
    }
}
