/// Evidence documents in the exact shapes the real tools write (trimmed to a few findings).
enum Samples {
    static func cycloneDX(name: String, version: String, sha256: String?, specVersion: String = "1.5") -> String {
        let hashes = sha256.map { #","hashes":[{"alg":"SHA-256","content":"\#($0)"}]"# } ?? ""
        return """
        {
          "$schema": "http://cyclonedx.org/schema/bom-1.5.schema.json",
          "bomFormat": "CycloneDX",
          "specVersion": "\(specVersion)",
          "serialNumber": "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79",
          "version": 1,
          "metadata": {
            "timestamp": "2026-01-15T10:00:00Z",
            "tools": {"components": [{"type": "application", "name": "cyclonedx-py", "version": "5.1.1"}]},
            "component": {"bom-ref": "root", "type": "application", "name": "\(name)", "version": "\(version)"\(hashes)}
          },
          "components": [
            {"bom-ref": "pkg:pypi/mcp@1.2.0", "type": "library", "name": "mcp", "version": "1.2.0", "purl": "pkg:pypi/mcp@1.2.0"}
          ],
          "dependencies": [{"ref": "root", "dependsOn": ["pkg:pypi/mcp@1.2.0"]}]
        }
        """
    }

    static func spdx(name: String, version: String, sha256: String, describes: Bool = true, useRelationship: Bool = false) -> String {
        let dd = describes && !useRelationship ? #""documentDescribes": ["SPDXRef-Package-time"],"# : ""
        let rel = describes && useRelationship
            ? #"{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": "SPDXRef-Package-time"},"#
            : ""
        return """
        {
          "spdxVersion": "SPDX-2.3",
          "dataLicense": "CC0-1.0",
          "SPDXID": "SPDXRef-DOCUMENT",
          "name": "\(name)-\(version)",
          "documentNamespace": "https://example.com/spdx/\(name)-\(version)-5b8e1c2a",
          "creationInfo": {"created": "2026-01-15T10:00:00Z", "creators": ["Tool: spdx-tools-0.8.2"]},
          \(dd)
          "packages": [
            {
              "SPDXID": "SPDXRef-Package-time", "name": "\(name)", "versionInfo": "\(version)",
              "downloadLocation": "NOASSERTION", "filesAnalyzed": false,
              "checksums": [{"algorithm": "SHA1", "checksumValue": "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
                            {"algorithm": "SHA256", "checksumValue": "\(sha256)"}],
              "licenseConcluded": "MIT", "licenseDeclared": "MIT", "copyrightText": "NOASSERTION"
            },
            {
              "SPDXID": "SPDXRef-Package-mcp", "name": "mcp", "versionInfo": "1.2.0",
              "downloadLocation": "https://pypi.org/project/mcp/", "filesAnalyzed": false
            }
          ],
          "relationships": [
            \(rel)
            {"spdxElementId": "SPDXRef-Package-time", "relationshipType": "DEPENDS_ON", "relatedSpdxElement": "SPDXRef-Package-mcp"}
          ]
        }
        """
    }

    /// A Grype `-o json` report with one match per severity given (Grype spelling: `Critical`, ...).
    static func grype(severities: [String]) -> String {
        let matches = severities.enumerated().map { i, sev in
            """
            {
              "vulnerability": {
                "id": "CVE-2024-\(1000 + i)",
                "dataSource": "https://nvd.nist.gov/vuln/detail/CVE-2024-\(1000 + i)",
                "namespace": "debian:distro:debian:12",
                "severity": "\(sev)",
                "urls": ["https://security-tracker.debian.org/tracker/CVE-2024-\(1000 + i)"],
                "cvss": [{"source": "nvd@nist.gov", "type": "Primary", "version": "3.1",
                          "vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
                          "metrics": {"baseScore": 9.8, "exploitabilityScore": 3.9, "impactScore": 5.9}, "vendorMetadata": {}}],
                "fix": {"versions": [], "state": "not-fixed"},
                "advisories": []
              },
              "relatedVulnerabilities": [],
              "matchDetails": [{"type": "exact-direct-match", "matcher": "dpkg-matcher",
                                "searchedBy": {"distro": {"type": "debian", "version": "12"}, "namespace": "debian:distro:debian:12",
                                               "package": {"name": "zlib", "version": "1:1.2.13.dfsg-1"}},
                                "found": {"versionConstraint": "none (deb)", "vulnerabilityID": "CVE-2024-\(1000 + i)"}}],
              "artifact": {"id": "9f1c2b7a0d3e4f5a", "name": "zlib1g", "version": "1:1.2.13.dfsg-1", "type": "deb",
                           "locations": [{"path": "/var/lib/dpkg/status", "layerID": "sha256:6c4a1b2d"}],
                           "language": "", "licenses": ["Zlib"], "cpes": ["cpe:2.3:a:zlib1g:zlib1g:1\\\\:1.2.13.dfsg-1:*:*:*:*:*:*:*"],
                           "purl": "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12",
                           "upstreams": [{"name": "zlib"}]}
            }
            """
        }.joined(separator: ",\n")
        return """
        {
          "matches": [\(matches)],
          "source": {"type": "image", "target": {"userInput": "registry.example.com/mcp/time:1.2.0", "imageID": "sha256:6c4a1b2d", "manifestDigest": "sha256:1f2e", "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "tags": ["registry.example.com/mcp/time:1.2.0"], "imageSize": 52000000, "layers": [], "manifest": "", "config": "", "repoDigests": [], "architecture": "amd64", "os": "linux"}},
          "distro": {"name": "debian", "version": "12", "idLike": ["debian"]},
          "descriptor": {"name": "grype", "version": "0.87.0", "configuration": {"output": ["json"], "search": {"scope": "squashed"}},
                         "db": {"built": "2026-01-14T01:31:02Z", "schemaVersion": 5, "location": "/root/.cache/grype/db/5", "checksum": "sha256:9a1b", "error": null},
                         "timestamp": "2026-01-15T10:00:00.123456789Z"}
        }
        """
    }

    /// A Trivy `-f json` report (SchemaVersion 2) with findings per severity in two result classes.
    static func trivy(osSeverities: [String], langSeverities: [String]) -> String {
        func vulns(_ sevs: [String], pkg: String, base: Int) -> String {
            if sevs.isEmpty { return "" }
            let items = sevs.enumerated().map { i, s in
                """
                {"VulnerabilityID": "CVE-2023-\(base + i)", "PkgID": "\(pkg)@1.0", "PkgName": "\(pkg)",
                 "PkgIdentifier": {"PURL": "pkg:deb/debian/\(pkg)@1.0?arch=amd64&distro=debian-12.5", "UID": "8a3f"},
                 "InstalledVersion": "1.0", "Status": "affected", "Layer": {"DiffID": "sha256:7e4b"}, "SeveritySource": "nvd",
                 "PrimaryURL": "https://avd.aquasec.com/nvd/cve-2023-\(base + i)",
                 "DataSource": {"ID": "debian", "Name": "Debian Security Tracker", "URL": "https://salsa.debian.org/security-tracker-team/security-tracker"},
                 "Title": "\(pkg): example", "Description": "An example finding.", "Severity": "\(s)", "CweIDs": ["CWE-190"],
                 "VendorSeverity": {"debian": 1, "nvd": 4},
                 "CVSS": {"nvd": {"V3Vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "V3Score": 9.8}},
                 "References": ["https://nvd.nist.gov/vuln/detail/CVE-2023-\(base + i)"],
                 "PublishedDate": "2023-10-14T02:15:09.323Z", "LastModifiedDate": "2024-08-01T13:44:58.99Z"}
                """
            }
            return #", "Vulnerabilities": ["# + items.joined(separator: ",\n") + "]"
        }
        return """
        {
          "SchemaVersion": 2,
          "CreatedAt": "2026-01-15T10:00:00.123456789Z",
          "ArtifactName": "registry.example.com/mcp/time:1.2.0",
          "ArtifactType": "container_image",
          "Metadata": {"OS": {"Family": "debian", "Name": "12.5"}, "ImageID": "sha256:6c4a1b2d", "DiffIDs": ["sha256:7e4b"],
                       "RepoTags": ["registry.example.com/mcp/time:1.2.0"], "RepoDigests": [],
                       "ImageConfig": {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": ["sha256:7e4b"]}, "config": {}}},
          "Results": [
            {"Target": "registry.example.com/mcp/time:1.2.0 (debian 12.5)", "Class": "os-pkgs", "Type": "debian"\(vulns(osSeverities, pkg: "zlib1g", base: 45853))},
            {"Target": "Python", "Class": "lang-pkgs", "Type": "python-pkg"\(vulns(langSeverities, pkg: "urllib3", base: 43804))},
            {"Target": "usr/local/lib/python3.12/site-packages/cert.pem", "Class": "secret"}
          ]
        }
        """
    }

    static func inToto(sha256: String, type: String = "https://in-toto.io/Statement/v1") -> String {
        """
        {
          "_type": "\(type)",
          "subject": [{"name": "server.py", "digest": {"sha256": "\(sha256)"}}],
          "predicateType": "https://slsa.dev/provenance/v1",
          "predicate": {
            "buildDefinition": {"buildType": "https://example.com/mcpfleet/build@v1", "externalParameters": {"ref": "refs/tags/v1.2.0"}},
            "runDetails": {"builder": {"id": "https://github.com/example/mcp-time/.github/workflows/release.yml@refs/tags/v1.2.0"}}
          }
        }
        """
    }

    /// `openssl speed -seconds 1 ecdsap256` output from OpenSSL 3.0.
    static let opensslSpeed = """
        Doing 256 bits sign ecdsa's for 1s: 64117 256 bits ECDSA signs in 1.00s
        Doing 256 bits verify ecdsa's for 1s: 21151 256 bits ECDSA verify in 1.00s
        version: 3.0.19
        built on: Tue Jan 27 00:00:00 2026 UTC
        options: bn(64,64)
        CPUINFO: OPENSSL_ia32cap=0xfffa3203078bffff:0x405fc6f1bf07ab
                                      sign    verify    sign/s verify/s
         256 bits ecdsa (nistp256)   0.0000s   0.0000s  64117.3  21151.0
        """
}
