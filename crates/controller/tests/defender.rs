//! `spec.scan.scanner: defender` end to end, with the Azure stand-in's Resource Graph holding
//! Microsoft Defender for Cloud's sub-assessments: a candidate waits in `Scanning` while Defender
//! has not assessed its digest, and is rejected naming the CVE once Defender reports a blocking
//! finding; a namespace without an Azure grant reads nothing; a new Defender finding on the
//! digest production runs starts a `VulnerabilitiesFound` Release through the rescan path.

mod common;

use common::azure::{Azure, quick};
use common::{BEFORE, MINUTE, REPO, Scenario};
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use tidegate_api::release::ReasonKind;
use tidegate_api::{ImagePolicy, ReleasePhase};

const ASSESSMENT: &str = "c0b7cfc6-3172-465a-b378-53c7ff2cc0d5";

/// A Defender sub-assessment of `REPO@digest` in registry `shopacr` of `group`, in the shape
/// Microsoft documents for MDVM rows.
fn row(azure: &Azure, group: &str, cve: &str, digest: &str, code: &str, severity: &str, fixed: &str) -> Value {
    let sub = azure.standin.subscription_id();
    let registry =
        format!("/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.ContainerRegistry/registries/shopacr");
    let (host, repository) = REPO.split_once('/').expect("repo");
    json!({
        "id": format!("{registry}/providers/Microsoft.Security/assessments/{ASSESSMENT}/subassessments/{}-{}", cve.to_lowercase(), &digest[7..19]),
        "name": cve.to_lowercase(),
        "type": "microsoft.security/assessments/subassessments",
        "location": "global", "resourceGroup": group, "subscriptionId": sub,
        "properties": {
            "id": cve, "displayName": cve,
            "additionalData": {
                "assessedResourceType": "AzureContainerRegistryVulnerability",
                "vulnerabilityDetails": {"severity": severity, "cveId": cve},
                "artifactDetails": {"repositoryName": repository, "registryHost": host, "artifactType": "ContainerImage",
                    "digest": digest, "tags": []},
                "softwareDetails": {"category": "OS", "fixedVersion": fixed, "version": "3.1.0-r0", "packageName": "openssl",
                    "fixStatus": if fixed.is_empty() { "NoFixAvailable" } else { "FixAvailable" }}
            },
            "resourceDetails": {"id": format!("/repositories/{repository}/images/{digest}"), "source": "Azure"},
            "timeGenerated": jiff::Timestamp::now().to_string(),
            "status": {"code": code, "severity": severity}
        }
    })
}

fn args(azure: &Azure, s: &Scenario, group: &str) -> Vec<String> {
    azure.args(s, group)
}

async fn graph_queries(azure: &Azure) -> Vec<Value> {
    azure
        .standin
        .requests()
        .await
        .expect("request log")
        .into_iter()
        .filter(|r| r.path.eq_ignore_ascii_case("/providers/Microsoft.ResourceGraph/resources"))
        .map(|r| r.json().unwrap_or(Value::Null))
        .collect()
}

#[tokio::test]
async fn a_candidate_waits_for_defender_and_its_blocking_finding_rejects_it() {
    let azure = Azure::empty("shop", quick()).await;
    let s = Scenario::new("defender-gate").await;
    s.policy(json!({"scan": {"scanner": "defender", "blockSeverities": ["Critical", "High"], "exceptions": null}}))
        .await;
    let args = args(&azure, &s, "shop");
    let controller = s.controller_with(&args.iter().map(String::as_str).collect::<Vec<_>>());
    s.trigger("first").await;
    let scanning = s.release_in(ReleasePhase::Scanning, MINUTE).await;
    let name = kube::ResourceExt::name_any(&scanning);
    let digest = scanning.status.and_then(|s| s.digest).expect("digest while scanning");

    // Defender knows nothing of the digest yet: the Release waits, saying for what.
    common::wait("the Release to say it waits for Defender", MINUTE, || async {
        let r = s.releases().get(&name).await.ok()?;
        let ready = r.status?.conditions.into_iter().find(|c| c.type_ == "Ready")?;
        ready.message.contains("waiting for Microsoft Defender for Cloud to assess").then_some(())
    })
    .await;
    assert_eq!(s.releases().get(&name).await.expect("release").status.expect("status").phase, ReleasePhase::Scanning);

    // Defender assesses it: one fixable CRITICAL finding (and a healthy row, which is none).
    azure
        .standin
        .seed_graph_rows(
            "securityresources",
            &[
                row(&azure, "shop", "CVE-2026-1111", &digest, "Unhealthy", "Critical", "3.1.4-r0"),
                row(&azure, "shop", "CVE-2026-1112", &digest, "Healthy", "High", ""),
                // Another team's resource group in the same subscription: not the namespace's to read.
                row(&azure, "payments", "CVE-2026-1113", &digest, "Unhealthy", "Critical", "3.1.4-r0"),
            ],
        )
        .await
        .expect("seed Defender rows");
    let rejected = s.release_in(ReleasePhase::Rejected, MINUTE).await;
    let status = rejected.status.expect("status");
    let scan = status.scan.expect("scan summary");
    assert_eq!(scan.scanner.as_deref(), Some("defender"));
    assert_eq!(scan.blocking_ids, ["CVE-2026-1111"], "{scan:?}\n{}", controller.log_tail());
    assert_eq!((scan.critical, scan.high, scan.blocking), (1, 0, 1), "{scan:?}");
    let top = &scan.top[0];
    assert_eq!((top.package.as_str(), top.installed_version.as_str()), ("openssl", "3.1.0-r0"));
    assert_eq!(top.fixed_version.as_deref(), Some("3.1.4-r0"));
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").expect("Ready");
    assert_eq!(ready.reason, "BlockingVulnerabilities");
    assert!(ready.message.contains("CVE-2026-1111"), "{ready:?}");

    // Every query went to the granted subscription only.
    let queries = graph_queries(&azure).await;
    assert!(!queries.is_empty());
    for q in &queries {
        assert_eq!(q["subscriptions"], json!([azure.standin.subscription_id()]), "{q}");
        assert!(q["query"].as_str().unwrap_or_default().contains(&digest));
    }
    drop(controller);
}

#[tokio::test]
async fn a_namespace_without_an_azure_grant_reads_no_defender_data() {
    let azure = Azure::empty("shop", quick()).await;
    let s = Scenario::new("defender-nogrant").await;
    s.policy(json!({"scan": {"scanner": "defender", "exceptions": null}})).await;
    // The controller's operator granted another namespace, not this one.
    let args: Vec<String> =
        args(&azure, &s, "shop")
            .into_iter()
            .map(|a| {
                if a.starts_with("defender-nogrant=") { a.replacen("defender-nogrant=", "someone-else=", 1) } else { a }
            })
            .collect();
    let controller = s.controller_with(&args.iter().map(String::as_str).collect::<Vec<_>>());
    s.trigger("first").await;
    let rejected = s.release_in(ReleasePhase::Rejected, MINUTE).await;
    let ready = rejected.status.expect("status").conditions.into_iter().find(|c| c.type_ == "Ready").expect("Ready");
    assert_eq!(ready.reason, "OutOfReach", "{ready:?}\n{}", controller.log_tail());
    assert!(ready.message.contains("--azure-grant defender-nogrant="), "{}", ready.message);
    assert!(graph_queries(&azure).await.is_empty(), "a Resource Graph query was sent without a grant");
    drop(controller);
}

#[tokio::test]
async fn a_new_defender_finding_in_what_runs_starts_a_release() {
    let azure = Azure::empty("shop", quick()).await;
    let s = Scenario::new("defender-rescan").await;
    // Defender assessed what production runs: nothing but a healthy row.
    azure
        .standin
        .seed_graph_rows("securityresources", &[row(&azure, "shop", "CVE-2026-2221", BEFORE, "Healthy", "High", "")])
        .await
        .expect("seed");
    s.policy(json!({
        "triggers": {"rescan": {"interval": "1m"}},
        "scan": {"scanner": "defender", "blockSeverities": ["Critical", "High"], "exceptions": null}
    }))
    .await;
    let args = args(&azure, &s, "shop");
    let controller = s.controller_with(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let policies: Api<ImagePolicy> = Api::namespaced(s.admin.clone(), &s.ns);
    let scan_of = |policy: &ImagePolicy| policy.status.as_ref().and_then(|s| s.production_scan.clone());
    let clean = common::wait("a clean rescan of production", 2 * MINUTE, || async {
        let p = policies.get("shop-app").await.ok()?;
        scan_of(&p).filter(|s| s.digest == BEFORE).map(|_| p)
    })
    .await;
    let scan = scan_of(&clean).expect("scan");
    assert!(scan.fixable.is_empty() && scan.unfixed.is_empty() && scan.release.is_none(), "{scan:?}");
    assert!(s.releases().list(&ListParams::default()).await.expect("list").items.is_empty());

    // Defender reports a fixable HIGH finding in the running digest.
    azure
        .standin
        .seed_graph_rows(
            "securityresources",
            &[row(&azure, "shop", "CVE-2026-2222", BEFORE, "Unhealthy", "High", "3.1.4-r0")],
        )
        .await
        .expect("seed");
    let release = common::wait("a VulnerabilitiesFound Release", 3 * MINUTE, || async {
        let list = s.releases().list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|r| r.spec.reason.kind == ReasonKind::VulnerabilitiesFound)
    })
    .await;
    assert_eq!(release.spec.reason.vulnerabilities.as_deref(), Some(&["CVE-2026-2222".to_string()][..]));
    let message = release.spec.reason.message.clone().unwrap_or_default();
    assert!(message.contains("CVE-2026-2222 in openssl 3.1.0-r0 (fixed in 3.1.4-r0)"), "{message}");
    let found = common::wait("the rescan in the policy's status", MINUTE, || async {
        let p = policies.get("shop-app").await.ok()?;
        scan_of(&p).filter(|s| s.release.is_some())
    })
    .await;
    assert_eq!(found.release.as_deref(), Some(kube::ResourceExt::name_any(&release).as_str()));
    assert_eq!(found.fixable.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), ["CVE-2026-2222"]);
    // Only a Release: production changes only through an approved Promotion.
    assert!(s.promotions().list(&ListParams::default()).await.expect("list").items.is_empty());
    drop(controller);
}
