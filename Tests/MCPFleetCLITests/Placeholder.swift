import Testing

@Test func placeholder_MCPFleetCLITests() {}
