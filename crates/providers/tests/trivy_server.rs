//! The `trivy` scanner through a Trivy server (`--trivy-server`, client/server mode): the real
//! `trivy server` on loopback holds the database, the controller's side holds none, and several
//! scans run at once (`--trivy-concurrency`).

use std::time::Duration;

use tidegate_core::Digest;
use tidegate_providers::trivy::{TrivyOptions, TrivyScanner};
use tidegate_providers::{ProviderError, ScanRequest, Scanner};
use tidegate_testenv::registry::{Registry, RegistryAuth, RegistryKind, RegistryOptions};
use tidegate_testenv::scanner_tools::{
    Advisory, ImageOs, Package, ScannerTools, TrivyServer, alpine_advisories, file_layer, package_image_layers,
    write_vulnerability_db,
};

const OPENSSL: [Advisory; 1] = [Advisory {
    package: "openssl",
    id: "CVE-2024-0727",
    fixed: "3.1.4-r5",
    severity: "HIGH",
    title: "openssl: denial of service via null dereference",
}];

fn request<'a>(image: &'a str, digest: &'a Digest) -> ScanRequest<'a> {
    ScanRequest {
        namespace: "shop",
        image,
        digest,
        workload_namespaces: &[],
        max_age: jiff::SignedDuration::from_hours(24),
        now: jiff::Timestamp::now(),
        deadline: None,
    }
}

#[tokio::test]
async fn scans_run_at_once_through_a_trivy_server_and_report_what_its_database_says() {
    let tools = ScannerTools::locate().expect("scanner tools (run `cargo xtask tools`)");
    let registry = Registry::start(RegistryOptions { kind: RegistryKind::Distribution, auth: RegistryAuth::Anonymous })
        .await
        .expect("registry");
    let host = registry.host().to_string();
    let (server_cache, home, client_cache) =
        (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    write_vulnerability_db(&tools, &alpine_advisories(&OPENSSL), server_cache.path()).expect("vulnerability database");
    let server = TrivyServer::start(&tools, server_cache.path(), home.path()).await.expect("trivy server");

    // Four applications, each its own layer on a vulnerable or a fixed base.
    let mut images = Vec::new();
    for (i, openssl) in ["3.1.0-r0", "3.1.0-r0", "3.1.0-r0", "3.1.4-r5"].iter().enumerate() {
        let mut layers = package_image_layers(
            &ImageOs::alpine(),
            &[Package::new("musl", "1.2.5-r0"), Package::new("openssl", openssl)],
        );
        layers.push(file_layer(&format!("app/{i}"), format!("application {i}").as_bytes()));
        let digest = registry.client().push_layered(&format!("shop/app-{i}"), "1.0", &layers, &[]).await.expect("push");
        images.push((format!("{host}/shop/app-{i}@{digest}"), digest.parse::<Digest>().expect("digest"), *openssl));
    }

    let scanner = TrivyScanner::new(TrivyOptions {
        binary: tools.trivy(),
        // The client's own cache holds no database: whatever is found comes from the server.
        cache_dir: client_cache.path().to_path_buf(),
        server: Some(server.url().to_string()),
        offline: true,
        db_repository: None,
        plain_http: vec![host.clone()],
        docker_config: None,
        timeout: Duration::from_secs(180),
        concurrency: 4,
        registry: None,
    });
    let reports = futures::future::join_all(images.iter().map(|(image, digest, _)| {
        let scanner = &scanner;
        async move { scanner.scan(&request(image, digest)).await }
    }))
    .await;
    for ((image, _, openssl), report) in images.iter().zip(reports) {
        let report = report.unwrap_or_else(|e| panic!("scanning {image} through the server: {e}")).expect("a report");
        let ids: Vec<&str> = report.findings.iter().map(|f| f.id.as_str()).collect();
        match *openssl {
            "3.1.0-r0" => assert_eq!(ids, vec!["CVE-2024-0727"], "{image}"),
            _ => assert!(ids.is_empty(), "{image}: the fixed openssl has no finding, got {ids:?}"),
        }
        assert_eq!(report.database, None, "the database's version is the server's, not known here");
    }
    assert!(!client_cache.path().join("db").join("trivy.db").exists(), "the controller's side downloaded no database");

    // Without its server, a scan fails as something to retry, naming Trivy.
    drop(server);
    let (image, digest, _) = &images[0];
    match scanner.scan(&request(image, digest)).await {
        Err(ProviderError::Transient(why)) => assert!(why.contains("trivy failed"), "{why}"),
        other => panic!("a scan without its server: {other:?}"),
    }
}
