import FleetCore
import Foundation

/// Connects the catalog's policies and evidence to the supply-chain gate. (Filled in once the gate lands.)
enum SupplyChainWiring {
    static func verdicts(for desired: DesiredState, catalog: Catalog, environment: Environment, baseDirectory: String) -> [String: PolicyVerdict] {
        [:]
    }
}
