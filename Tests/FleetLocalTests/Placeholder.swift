import Testing

@Test func placeholder_FleetLocalTests() {}
