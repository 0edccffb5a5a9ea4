import Testing

@Test func placeholder_FleetStateTests() {}
