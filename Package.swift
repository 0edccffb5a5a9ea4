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
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        // The official MCP Swift SDK: its `mcp-everything-server` is the real MCP server the example fleet and the tests run.
        .package(url: "https://github.com/modelcontextprotocol/swift-sdk.git", from: "0.12.1"),
        // The gateway's HTTP stack (server and upstream client). Already built for the SDK's everything-server,
        // so it adds no packages to a build (docs/designs/0005-gateway.md).
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
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
        // Durable rollout state and revision history for host drivers (system SQLite, WAL).
        .target(name: "FleetState", dependencies: ["FleetCore", "CSQLite"], swiftSettings: strict),
        // Drivers.
        .target(name: "FleetLocal", dependencies: ["FleetCore", "FleetState"], swiftSettings: strict),
        .target(name: "FleetSystemd", dependencies: ["FleetCore", "FleetState"], swiftSettings: strict),
        .target(name: "FleetKubernetes", dependencies: ["FleetCore", "FleetHTTP", "FleetYAML"], swiftSettings: strict),
        // The reconcile loop; it knows drivers only through `RuntimeDriver`.
        .target(
            name: "FleetController",
            dependencies: [
                "FleetCore", "FleetHTTP",
                // Probes speak MCP with the official SDK's client (docs/designs/0010-tool-contracts.md).
                .product(name: "MCP", package: "swift-sdk"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict),
        // The data plane: one HTTP stack (NIO) for the MCP gateway and the controller's /metrics, /healthz, /readyz.
        .target(
            name: "FleetGateway",
            dependencies: [
                "FleetCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict),
        // The composition root as a library: the catalog target, the driver factory, the watched and
        // incrementally rendered manifest source, and the one converge path `run` and `apply` share.
        .target(
            name: "FleetApp",
            dependencies: [
                "FleetCore", "FleetYAML", "FleetSupplyChain", "FleetHTTP", "FleetState", "FleetLocal", "FleetSystemd",
                "FleetKubernetes", "FleetController",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict),
        // The read-only dashboard (/ui, /api/v1/*, server-sent events) on the gateway's HTTP stack; its
        // page, style and script are embedded in the binary (docs/designs/0011-dashboard.md).
        .target(
            name: "FleetDashboard",
            dependencies: ["FleetCore", "FleetController", "FleetGateway"],
            resources: [.embedInCode("Resources/index.html"), .embedInCode("Resources/dashboard.css"), .embedInCode("Resources/dashboard.js")],
            swiftSettings: strict),
        // Test doubles shared by test targets: in-memory driver and store, manual clock, sandboxes.
        .target(name: "FleetTesting", dependencies: ["FleetCore"], swiftSettings: strict),
        .executableTarget(
            name: "mcpfleet",
            dependencies: [
                "FleetCore", "FleetYAML", "FleetSupplyChain", "FleetHTTP", "FleetState", "FleetLocal", "FleetSystemd",
                "FleetKubernetes", "FleetController", "FleetGateway", "FleetApp", "FleetDashboard",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict),

        .testTarget(name: "FleetCoreTests", dependencies: ["FleetCore", "FleetYAML"]),
        .testTarget(name: "FleetYAMLTests", dependencies: ["FleetYAML", "FleetCore"]),
        .testTarget(name: "FleetSupplyChainTests", dependencies: ["FleetSupplyChain", "FleetCore"]),
        .testTarget(name: "FleetHTTPTests", dependencies: ["FleetHTTP"]),
        .testTarget(name: "FleetStateTests", dependencies: ["FleetState", "FleetCore", "FleetTesting"]),
        .testTarget(name: "FleetLocalTests", dependencies: ["FleetLocal", "FleetState", "FleetCore", "FleetTesting"]),
        .testTarget(name: "FleetSystemdTests", dependencies: ["FleetSystemd", "FleetState", "FleetCore", "FleetTesting"]),
        .testTarget(name: "FleetKubernetesTests", dependencies: ["FleetKubernetes", "FleetHTTP", "FleetCore", "FleetYAML", "FleetTesting", "FleetGateway",
                                                         "FleetController", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "FleetControllerTests", dependencies: ["FleetController", "FleetCore", "FleetHTTP", "FleetTesting", "FleetGateway"]),
        .testTarget(
            name: "FleetDashboardTests",
            dependencies: ["FleetDashboard", "FleetController", "FleetGateway", "FleetCore", "FleetTesting", .product(name: "Logging", package: "swift-log")]),
        .testTarget(
            name: "FleetGatewayTests",
            dependencies: [
                "FleetGateway", "FleetCore", "FleetYAML", "FleetHTTP", "FleetTesting",
                .product(name: "MCP", package: "swift-sdk"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            exclude: ["mcp_client.py", "py_server.py"]),
        .testTarget(name: "MCPFleetCLITests", dependencies: ["FleetCore", "FleetTesting"]),
        .testTarget(name: "FleetAppTests", dependencies: ["FleetApp", "FleetController", "FleetCore", "FleetTesting"]),
    ]
)
