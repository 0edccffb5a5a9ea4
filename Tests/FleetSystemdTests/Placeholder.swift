import Testing

@Test func placeholder_FleetSystemdTests() {}
