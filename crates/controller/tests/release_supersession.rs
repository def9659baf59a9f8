//! The Release planner's supersession on the real local control plane: a newer Release of the
//! same policy replaces one that is still on its way, which then stages nothing and opens no
//! Promotion, while the newer one goes on to Verified.

mod common;

use common::{BEFORE, CLEAN_REPORT, MINUTE, Scenario, http_server, pinned, wait};
use serde_json::json;
use tidegate_api::{Release, ReleasePhase};

fn creation_key(release: &Release) -> (Option<jiff::Timestamp>, String) {
    (release.metadata.creation_timestamp.as_ref().map(|t| t.0), release.metadata.name.clone().unwrap_or_default())
}

#[tokio::test]
async fn a_newer_release_supersedes_a_waiting_one_which_stages_nothing() {
    let s = Scenario::new("release-superseded").await;
    let (url, _) = http_server(200).await;
    s.policy(json!({"tests": {"http": [{"name": "health", "workload": "web", "path": "/healthz", "baseUrl": url}]}}))
        .await;
    let controller = s.controller();
    s.trigger("first").await;
    // No scan report yet: the first Release waits in Scanning.
    s.release_in(ReleasePhase::Scanning, MINUTE).await;
    s.trigger("second").await;
    let releases = wait("two Releases", MINUTE, || async {
        let items = s.releases().list(&Default::default()).await.ok()?.items;
        (items.len() == 2).then_some(items)
    })
    .await;
    // Newer means created later, the name breaking a tie within the same second (as the
    // controller orders them).
    let newer = releases.iter().max_by_key(|r| creation_key(r)).and_then(|r| r.metadata.name.clone()).expect("newer");
    let older = releases.iter().min_by_key(|r| creation_key(r)).and_then(|r| r.metadata.name.clone()).expect("older");

    let superseded = wait("the older Release to be Superseded", MINUTE, || async {
        let release = s.releases().get(&older).await.ok()?;
        release.status.clone().filter(|st| st.phase == ReleasePhase::Superseded)
    })
    .await;
    let condition = |type_: &str| {
        let c = superseded.conditions.iter().find(|c| c.type_ == type_).unwrap_or_else(|| panic!("{type_}"));
        (c.status.clone(), c.reason.clone(), c.message.clone())
    };
    let replaced = format!("release {newer} of the same policy replaces this one");
    assert_eq!(condition("Ready"), ("False".into(), "Superseded".into(), replaced.clone()));
    assert_eq!(condition("Blocked"), ("False".into(), "Superseded".into(), replaced));
    assert!(superseded.staging.is_none() && superseded.tests.is_empty(), "{superseded:#?}");
    assert_eq!(s.deployment_image(&s.staging, "web").await, Some(pinned(BEFORE)), "staging untouched");

    // The newer one goes on through every gate and opens the only Promotion.
    s.upload_scan_report(CLEAN_REPORT).await;
    let verified = s.release_in(ReleasePhase::Verified, MINUTE).await;
    assert_eq!(verified.metadata.name.as_deref(), Some(newer.as_str()));
    let promotions = wait("a Promotion", MINUTE, || async {
        let items = s.promotions().list(&Default::default()).await.ok()?.items;
        (!items.is_empty()).then_some(items)
    })
    .await;
    assert!(promotions.iter().all(|p| p.spec.release == newer), "only the newer Release's Promotion: {promotions:#?}");
    let staged = verified.status.as_ref().and_then(|st| st.image.clone());
    assert_eq!(s.deployment_image(&s.staging, "web").await, staged, "staging runs the newer candidate");

    // Looked at again, the superseded Release stays as it is and still opens nothing.
    let looked = controller.reconciles("Release").await;
    s.wake(&s.releases(), &older).await;
    controller.reconciled_since("Release", looked).await;
    let again = s.releases().get(&older).await.expect("older");
    assert_eq!(again.status.map(|st| st.phase), Some(ReleasePhase::Superseded));
    let promotions = s.promotions().list(&Default::default()).await.expect("list").items;
    assert!(promotions.iter().all(|p| p.spec.release == newer), "{promotions:#?}");
    assert_eq!(s.production().await.0, Some(pinned(BEFORE)), "a Release never touches production");
    drop(controller);
}
