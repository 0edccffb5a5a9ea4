import Testing

@Test func placeholder_FleetControllerTests() {}
