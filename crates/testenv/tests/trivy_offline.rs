//! The real Trivy scans images pushed to the loopback registry against a vulnerability database
//! written from YAML fixtures, fully offline: no database, Java database or checks bundle is
//! downloaded, and every connection Trivy would make to a host that is not loopback goes to a
//! proxy on loopback that counts it (there must be none).

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::Path;
use std::time::Instant;

use tidegate_testenv::registry::{Registry, RegistryAuth, RegistryKind, RegistryOptions};
use tidegate_testenv::scanner_tools::{
    ImageOs, Package, ScannerTools, push_package_image, trivy_command, write_vulnerability_db,
};

/// Advisories for Alpine 3.20 and Debian 12, in Trivy's test-fixture format.
const FIXTURES: &str = r#"
- bucket: alpine 3.20
  pairs:
    - bucket: openssl
      pairs:
        - key: CVE-2023-5678
          value:
            FixedVersion: "3.1.4-r0"
        - key: CVE-2024-0727
          value:
            FixedVersion: ""
        - key: CVE-2022-0778
          value:
            FixedVersion: "3.0.2-r0"
    - bucket: musl
      pairs:
        - key: CVE-2025-26519
          value:
            FixedVersion: "1.2.4-r0"
- bucket: debian 12
  pairs:
    - bucket: openssl
      pairs:
        - key: CVE-2024-5535
          value:
            FixedVersion: "3.0.14-1~deb12u1"
        - key: CVE-2010-5298
          value:
            FixedVersion: "1.0.1g-1"
    - bucket: zlib
      pairs:
        - key: CVE-2023-45853
          value:
            FixedVersion: ""
            Status: 5
            Severity: 4
- bucket: data-source
  pairs:
    - key: alpine 3.20
      value:
        ID: "alpine"
        Name: "Alpine Secdb"
        URL: "https://secdb.alpinelinux.org/"
    - key: debian 12
      value:
        ID: "debian"
        Name: "Debian Security Tracker"
        URL: "https://salsa.debian.org/security-tracker-team/security-tracker"
- bucket: vulnerability
  pairs:
    - key: CVE-2023-5678
      value:
        Title: "openssl: Generating excessively long X9.42 DH keys is slow"
        Severity: MEDIUM
    - key: CVE-2024-0727
      value:
        Title: "openssl: denial of service via null dereference"
        Severity: LOW
    - key: CVE-2024-5535
      value:
        Title: "openssl: SSL_select_next_proto buffer overread"
        Severity: LOW
    - key: CVE-2023-45853
      value:
        Title: "zlib: integer overflow in zipOpenNewFileInZip4_6"
        Severity: CRITICAL
"#;

/// (vulnerability ID, package, installed version, fixed version) of the OS-package findings.
type Finding = (String, String, String, String);

fn findings(report: &serde_json::Value) -> BTreeSet<Finding> {
    let mut out = BTreeSet::new();
    for result in report["Results"].as_array().into_iter().flatten() {
        assert_eq!(result["Class"], "os-pkgs", "only OS packages are scanned: {result}");
        for v in result["Vulnerabilities"].as_array().into_iter().flatten() {
            let field = |name: &str| v[name].as_str().unwrap_or_default().to_string();
            out.insert((field("VulnerabilityID"), field("PkgName"), field("InstalledVersion"), field("FixedVersion")));
        }
    }
    out
}

fn finding(id: &str, package: &str, installed: &str, fixed: &str) -> Finding {
    (id.into(), package.into(), installed.into(), fixed.into())
}

/// Runs the scan with every non-loopback HTTP(S) connection sent to `trap` and returns the report.
fn scan(tools: &ScannerTools, home: &Path, cache: &Path, image: &str, trap: &TcpListener) -> serde_json::Value {
    let proxy = format!("http://{}", trap.local_addr().expect("trap address"));
    let started = Instant::now();
    let output = trivy_command(tools, home, cache, image)
        .env("HTTP_PROXY", &proxy)
        .env("HTTPS_PROXY", &proxy)
        .env("http_proxy", &proxy)
        .env("https_proxy", &proxy)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .expect("run trivy");
    eprintln!("trivy image {image}: {:.2?}", started.elapsed());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "trivy failed ({}):\n{stderr}", output.status);
    assert!(trap.accept().is_err(), "trivy tried to reach a host outside loopback:\n{stderr}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("no JSON report ({e}):\n{stderr}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn trivy_reports_the_fixture_vulnerabilities_of_alpine_and_debian_images_offline() {
    let tools = ScannerTools::locate().expect("scanner tools (run `cargo xtask tools`)");
    let registry = Registry::start(RegistryOptions { kind: RegistryKind::Distribution, auth: RegistryAuth::Anonymous })
        .await
        .expect("start the registry");
    let work = tempfile::tempdir().expect("temporary directory");
    let home = work.path().join("home");
    let cache = work.path().join("cache");
    std::fs::create_dir_all(&home).expect("home");
    write_vulnerability_db(&tools, FIXTURES, &cache).expect("write the vulnerability database");
    let metadata: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cache.join("db/metadata.json")).expect("metadata.json"))
            .expect("metadata JSON");
    assert_eq!(metadata["Version"], 2, "{metadata}");

    let trap = TcpListener::bind("127.0.0.1:0").expect("bind the proxy trap");
    trap.set_nonblocking(true).expect("non-blocking trap");

    let alpine_packages = [Package::new("musl", "1.2.4-r0"), Package::new("openssl", "3.1.0-r0")];
    let digest = push_package_image(&registry, "scan/alpine", "3.20", &ImageOs::alpine(), &alpine_packages)
        .await
        .expect("push the Alpine image");
    let image = format!("{}/scan/alpine@{digest}", registry.host());
    let report = scan(&tools, &home, &cache, &image, &trap);
    assert_eq!(report["Metadata"]["OS"]["Family"], "alpine", "{}", report["Metadata"]);
    assert_eq!(report["Metadata"]["OS"]["Name"], "3.20.3", "{}", report["Metadata"]);
    assert_eq!(
        findings(&report),
        BTreeSet::from([
            finding("CVE-2023-5678", "openssl", "3.1.0-r0", "3.1.4-r0"),
            finding("CVE-2024-0727", "openssl", "3.1.0-r0", ""),
        ]),
        "{report:#}"
    );

    let debian_packages = [
        Package::new("openssl", "3.0.11-1~deb12u2"),
        Package::new("libssl3", "3.0.11-1~deb12u2").source("openssl"),
        Package::new("zlib1g", "1:1.2.13.dfsg-1").source("zlib"),
        Package::new("base-files", "12.4+deb12u7"),
    ];
    let digest = push_package_image(&registry, "scan/debian", "12", &ImageOs::debian(), &debian_packages)
        .await
        .expect("push the Debian image");
    let image = format!("{}/scan/debian@{digest}", registry.host());
    let report = scan(&tools, &home, &cache, &image, &trap);
    assert_eq!(report["Metadata"]["OS"]["Family"], "debian", "{}", report["Metadata"]);
    assert_eq!(
        findings(&report),
        BTreeSet::from([
            finding("CVE-2024-5535", "openssl", "3.0.11-1~deb12u2", "3.0.14-1~deb12u1"),
            finding("CVE-2024-5535", "libssl3", "3.0.11-1~deb12u2", "3.0.14-1~deb12u1"),
            finding("CVE-2023-45853", "zlib1g", "1:1.2.13.dfsg-1", ""),
        ]),
        "{report:#}"
    );
    let zlib = report["Results"][0]["Vulnerabilities"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["VulnerabilityID"] == "CVE-2023-45853")
        .expect("the zlib finding");
    assert_eq!(zlib["Status"], "will_not_fix", "{zlib:#}");
}
