import Testing

@Test func placeholder_FleetYAMLTests() {}
