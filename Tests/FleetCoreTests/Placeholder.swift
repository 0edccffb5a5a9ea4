import Testing

@Test func placeholder_FleetCoreTests() {}
