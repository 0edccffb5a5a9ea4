import Testing

@Test func placeholder_FleetSupplyChainTests() {}
