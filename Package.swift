// swift-tools-version:6.1
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "mcpfleet",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "mcpfleet", targets: ["mcpfleet"]),
        .library(name: "FleetCore", targets: ["FleetCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
    ],
    targets: [
        // System libraries (Debian: libyaml-dev, libcurl4-openssl-dev, libsqlite3-dev).
        .systemLibrary(name: "CYAML", pkgConfig: "yaml-0.1", providers: [.apt(["libyaml-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),

        // Pure core: model, diagnostics, validation, render, diff, plan. No I/O.
        .target(name: "FleetCore", dependencies: [.product(name: "Crypto", package: "swift-crypto")], swiftSettings: strict),
        .target(name: "FleetYAML", dependencies: ["FleetCore", "CYAML"], swiftSettings: strict),
        .target(
            name: "FleetSupplyChain",
            dependencies: ["FleetCore", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict),
        .target(name: "FleetHTTP", dependencies: ["CCurl"], swiftSettings: strict),
        .executableTarget(
            name: "mcpfleet",
            dependencies: [
                "FleetCore", "FleetYAML", "FleetSupplyChain",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict),

        .testTarget(name: "FleetCoreTests", dependencies: ["FleetCore", "FleetYAML"]),
        .testTarget(name: "FleetYAMLTests", dependencies: ["FleetYAML", "FleetCore"]),
        .testTarget(name: "FleetSupplyChainTests", dependencies: ["FleetSupplyChain", "FleetCore"]),
        .testTarget(name: "FleetHTTPTests", dependencies: ["FleetHTTP"]),
        .testTarget(name: "MCPFleetCLITests", dependencies: ["FleetCore"]),
    ]
)
