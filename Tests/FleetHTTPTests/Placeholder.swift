import Testing

@Test func placeholder_FleetHTTPTests() {}
