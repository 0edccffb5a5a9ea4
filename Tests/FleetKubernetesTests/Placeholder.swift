import Testing

@Test func placeholder_FleetKubernetesTests() {}
