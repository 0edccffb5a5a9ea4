import ArgumentParser

@main
struct MCPFleet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "mcpfleet", abstract: "Declarative controller for fleets of MCP servers.")
}
