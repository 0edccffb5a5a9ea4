import FleetCore
import FleetYAML
import Foundation

extension LoadedCatalog {
    static func load(path: String) -> LoadedCatalog { CatalogLoader.load(path: path) }
}

func encodeJSON<T: Encodable>(_ value: T) throws -> String {
    try CanonicalJSON.encode(value)
}
