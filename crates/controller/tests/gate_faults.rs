//! Faults at the approval gate, on the real local control plane with the product binary, a real
//! registry on loopback and Notary Project signing: a tag moved after the scan, a signature
//! deleted before the last approval, an approval of a Promotion whose Release was superseded,
//! and a base-image push in the middle of an approved rollout. Production changes only for an approved Promotion of one digest whose Release is
//! Verified with that digest and whose signature verifies right before the write
//! (`docs/security.md`, rule 4); each test watches production's `web` Deployments and Service
//! to prove what was, and was not, written.

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::{CLEAN_REPORT, ControllerProcess, MINUTE, Scenario, http_server, wait};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::ResourceQuota;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tidegate_api::{ImagePolicy, Promotion, PromotionPhase, Release, ReleasePhase};
use tidegate_providers::rebase::{BASE_DIGEST, BASE_NAME};
use tidegate_providers::registry::{ClientOptions, RegistryClient, Repository};
use tidegate_testenv::registry::{Registry, RegistryAuth, RegistryKind, RegistryOptions, pseudo_random_bytes};

/// The artifact type of Notary Project signatures.
const SIGNATURE: &str = "application/vnd.cncf.notary.signature";
/// The tags CI gives application builds (`spec.triggers.newBuild.tagPattern`).
const BUILD_TAGS: &str = "[0-9]+\\.[0-9]+\\.[0-9]+";

/// A scenario whose `web` workloads run an image from a registry on loopback, and the product
/// binary signing with a Notary Project key and verifying against its trust policy.
struct Gate {
    registry: Registry,
    s: Scenario,
    client: RegistryClient,
    app: Repository,
    /// The digest production runs before any promotion.
    before: String,
}

impl Gate {
    /// Starts a registry holding `shop/app:1.0.0` (built on `base/runtime:3.20` v1), a scenario
    /// whose `web` workloads run it, and the policy: image in that registry, staging HTTP check,
    /// `web` only, `required_approvals` approvals, and `triggers(registry host)` as its triggers.
    async fn start(name: &str, required_approvals: u32, triggers: impl FnOnce(&str) -> serde_json::Value) -> Self {
        let registry =
            Registry::start(RegistryOptions { kind: RegistryKind::Distribution, auth: RegistryAuth::Anonymous })
                .await
                .expect("registry");
        let host = registry.host().to_string();
        let client = RegistryClient::new(ClientOptions {
            plain_http: registry.plain_http_hosts().into_iter().collect(),
            ..Default::default()
        })
        .expect("registry client");
        let base_ref = format!("{host}/base/runtime:3.20");
        let base_v1 = base_layers("1");
        let old_base = registry.client().push_layered("base/runtime", "3.20", &base_v1, &[]).await.expect("push base");
        let annotations = [(BASE_NAME, base_ref.as_str()), (BASE_DIGEST, old_base.as_str())];
        let mut layers = base_v1.to_vec();
        layers.push(pseudo_random_bytes("app", 256));
        let before =
            registry.client().push_layered("shop/app", "1.0.0", &layers, &annotations).await.expect("push app");

        let s = Scenario::new(name).await;
        let app = Repository::new(&host, "shop/app");
        s.set_workload_images(&format!("{host}/shop/app@{before}")).await;
        let (url, _) = http_server(200).await;
        let mut triggers = triggers(&host);
        triggers["rescan"] = serde_json::Value::Null;
        s.policy(json!({
            "image": format!("{host}/shop/app"),
            "triggers": triggers,
            "tests": {"http": [{"name": "health", "workload": "web", "path": "/healthz", "baseUrl": url}]},
            "workloads": [{"name": "web", "kind": "http",
                "staging": {"kubernetes": {"kind": "Deployment", "namespace": s.staging, "name": "web", "service": "web"}},
                "production": {"kubernetes": {"kind": "Deployment", "namespace": s.ns, "name": "web", "service": "web"}}}],
            "promotion": {"requiredApprovals": required_approvals, "monitorWindow": "1m"}
        }))
        .await;
        Self { registry, s, client, app, before }
    }

    /// Starts the product binary, exactly as shipped, signing with a fresh Notary Project key that
    /// its trust policy trusts.
    fn controller(&self) -> ControllerProcess {
        let identity =
            tidegate_testenv::pki::write_code_signing_identity(&self.s.path("notary"), "gate faults", "tidegate")
                .expect("identity");
        let args = common::notary_args(&identity, &self.registry.plain_http_hosts());
        self.s.product(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// `host/shop/app@digest`.
    fn pinned(&self, digest: &str) -> String {
        format!("{}/shop/app@{digest}", self.registry.host())
    }

    /// Pushes a one-layer image made from `seed` as `shop/app:tag`; returns its digest.
    async fn push_app(&self, tag: &str, seed: &str) -> String {
        let layers = [pseudo_random_bytes(seed, 256)];
        self.registry.client().push_layered("shop/app", tag, &layers, &[]).await.expect("push app")
    }

    /// Wakes the policy and waits until the controller has looked at it: with a `newBuild`
    /// trigger, a look lists the repository's tags.
    async fn policy_looks(&self, controller: &ControllerProcess) {
        let looked = controller.reconciles("ImagePolicy").await;
        self.s.wake(&Api::<ImagePolicy>::namespaced(self.s.admin.clone(), &self.s.ns), "shop-app").await;
        controller.reconciled_since("ImagePolicy", looked).await;
    }

    /// CI pushes build `1.1.0`; the policy looks at the tags and starts its Release, which
    /// resolves the tag once and waits for its scan report. Returns (Release, digest).
    async fn new_build_waits_for_its_scan(&self, controller: &ControllerProcess) -> (String, String) {
        let built = self.push_app("1.1.0", "build-110").await;
        self.policy_looks(controller).await;
        let scanning = self.s.release_in(ReleasePhase::Scanning, MINUTE).await;
        assert_eq!(scanning.status.as_ref().and_then(|st| st.digest.as_deref()), Some(built.as_str()));
        (scanning.metadata.name.expect("release name"), built)
    }

    /// With [`base_image`] triggers: once the policy recorded the base's digest, base v2 is
    /// pushed, and Release A is rebased, scanned, signed, staged and tested, and its Promotion
    /// waits. Returns (Release A, its digest, its Promotion).
    async fn rebased_release_awaits_approval(&self, controller: &ControllerProcess) -> (String, String, Promotion) {
        let s = &self.s;
        let policies = Api::<ImagePolicy>::namespaced(s.admin.clone(), &s.ns);
        wait("the baseline base digest", MINUTE, || async {
            policies.get("shop-app").await.ok()?.status?.base_digest.map(drop)
        })
        .await;
        self.update_base(controller, "2").await;
        let digest = s.upload_scan_report(CLEAN_REPORT).await;
        let release = s.release_in(ReleasePhase::Verified, 2 * MINUTE).await.metadata.name.expect("release A");
        let promotion = promotion_of(s, &release, PromotionPhase::AwaitingApproval, MINUTE).await;
        assert_eq!(promotion.spec.digest, digest);
        (release, digest, promotion)
    }

    /// Pushes base image `version` under `base/runtime:3.20`, and the registry tells the
    /// controller about the push.
    async fn update_base(&self, controller: &ControllerProcess, version: &str) {
        let host = self.registry.host();
        let client = self.registry.client();
        let digest = client.push_layered("base/runtime", "3.20", &base_layers(version), &[]).await.expect("push base");
        let notification = json!({"events": [{"action": "push",
            "target": {"repository": "base/runtime", "tag": "3.20", "digest": digest}, "request": {"host": host}}]});
        let webhook = format!("{}/webhooks/registry", controller.metrics);
        let answer = common::http(&webhook, Some(&notification.to_string())).await;
        assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    }

    /// The digests of the Notary Project signatures that refer to `digest`.
    async fn signatures_of(&self, digest: &str) -> Vec<String> {
        let referrers = self.client.referrers(&self.app, digest, Some(SIGNATURE)).await.expect("referrers");
        referrers.into_iter().map(|d| d.digest).collect()
    }

    /// The `web` Deployments and Service in production, as they are now.
    async fn production(&self) -> Production {
        let deployments: Api<Deployment> = Api::namespaced(self.s.admin.clone(), &self.s.ns);
        let observed = |d: Option<Deployment>| {
            d.map(|d| {
                let image =
                    d.spec.and_then(|spec| spec.template.spec).and_then(|pod| pod.containers.first()?.image.clone());
                (d.metadata.generation.unwrap_or_default(), image.unwrap_or_default())
            })
        };
        Production {
            blue: observed(deployments.get_opt("web").await.expect("web")),
            green: observed(deployments.get_opt("web-green").await.expect("web-green")),
            slot: self.s.service_slot(&self.s.ns, "web").await,
        }
    }
}

/// Production's `web`: each colour's Deployment (its generation, which moves with every write of
/// its spec, and its image) and the colour the Service sends traffic to.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Production {
    blue: Option<(i64, String)>,
    green: Option<(i64, String)>,
    slot: Option<String>,
}

impl Production {
    /// The image production serves: the live colour's.
    fn live_image(&self) -> Option<&str> {
        let live = if self.slot.as_deref() == Some("green") { &self.green } else { &self.blue };
        live.as_ref().map(|(_, image)| image.as_str())
    }
}

/// The two layers of base image `version`.
fn base_layers(version: &str) -> [Vec<u8>; 2] {
    [pseudo_random_bytes(&format!("os-{version}"), 1024), pseudo_random_bytes(&format!("libs-{version}"), 512)]
}

/// The triggers of a policy that takes CI's application builds as candidates.
fn new_build(_host: &str) -> serde_json::Value {
    json!({"newBuild": {"tagPattern": BUILD_TAGS}})
}

/// The triggers of a policy rebased whenever `base/runtime:3.20` moves.
fn base_image(host: &str) -> serde_json::Value {
    json!({"baseImage": {"ref": format!("{host}/base/runtime:3.20"), "interval": "1m"}})
}

/// Waits for the Promotion of Release `release` in phase `phase`.
async fn promotion_of(s: &Scenario, release: &str, phase: PromotionPhase, timeout: Duration) -> Promotion {
    wait(&format!("the Promotion of {release} in {phase:?}"), timeout, || async {
        let list = s.promotions().list(&Default::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|p| p.spec.release == release && p.status.as_ref().is_some_and(|st| st.phase == phase))
    })
    .await
}

/// The condition `type_` of `promotion`: (status, reason, message).
fn condition(promotion: &Promotion, type_: &str) -> (String, String, String) {
    let conditions = promotion.status.as_ref().map(|st| st.conditions.as_slice()).unwrap_or_default();
    let c = conditions.iter().find(|c| c.type_ == type_).unwrap_or_else(|| panic!("no {type_} in {conditions:#?}"));
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

/// Newer means created later, the name breaking a tie within the same second (as the controller
/// orders Releases).
fn creation_key(release: &Release) -> (Option<jiff::Timestamp>, String) {
    (release.metadata.creation_timestamp.as_ref().map(|t| t.0), release.metadata.name.clone().unwrap_or_default())
}

/// CI moves the build tag twice after the controller resolved it: while the candidate waits for
/// its scan, and while its Promotion waits for approval. Nothing new starts, only the digest that
/// was scanned is signed and staged, and the approval puts exactly that digest into production,
/// pinned; the re-pushed images never get there.
#[tokio::test]
async fn a_tag_re_pushed_after_the_scan_never_reaches_production() {
    let gate = Gate::start("gate-faults-tag", 1, new_build).await;
    let s = &gate.s;
    let controller = gate.controller();

    let (release, built) = gate.new_build_waits_for_its_scan(&controller).await;

    // The tag moves before the scan report is in, and the report is for the resolved digest.
    let moved_during_scan = gate.push_app("1.1.0", "moved-during-scan").await;
    assert_ne!(moved_during_scan, built);
    let scanned = s.upload_scan_report(CLEAN_REPORT).await;
    assert_eq!(scanned, built, "the scan is of the digest the tag had when the Release started");
    let promotion = promotion_of(s, &release, PromotionPhase::AwaitingApproval, 2 * MINUTE).await;
    let name = promotion.metadata.name.clone().expect("promotion name");
    assert_eq!(promotion.spec.digest, built, "the Promotion asks approval for the scanned digest");
    assert_eq!(s.deployment_image(&s.staging, "web").await, Some(gate.pinned(&built)), "staging runs it");

    // The tag moves again while the Promotion waits; the policy looks at the tags and starts nothing.
    let moved_before_approval = gate.push_app("1.1.0", "moved-before-approval").await;
    gate.policy_looks(&controller).await;
    let head = gate.registry.client().manifest_digest("shop/app", "1.1.0").await.expect("HEAD 1.1.0");
    assert_eq!(head.as_deref(), Some(moved_before_approval.as_str()), "the tag did move");
    let releases = s.releases().list(&Default::default()).await.expect("list").items;
    assert_eq!(releases.len(), 1, "a moved tag starts no new Release: {releases:#?}");
    let verified = s.releases().get(&release).await.expect("release").status.expect("status");
    assert_eq!((verified.phase, verified.digest.clone()), (ReleasePhase::Verified, Some(built.clone())));
    let signature = verified.signature.and_then(|sig| sig.reference).expect("signature reference");
    assert_eq!(gate.signatures_of(&built).await, [signature], "the scanned digest is the one signed");
    for moved in [&moved_during_scan, &moved_before_approval] {
        assert!(gate.signatures_of(moved).await.is_empty(), "{moved} was never signed");
    }

    let alice = s.user("alice", &["tidegate-approvers"]).await;
    s.approve(&alice, &name, "alice").await.expect("alice approves");
    let promoted = wait("the Promotion to change production", 2 * MINUTE, || async {
        let p = s.promotions().get(&name).await.ok()?;
        let phase = p.status.as_ref()?.phase;
        matches!(phase, PromotionPhase::Monitoring | PromotionPhase::Succeeded).then_some(p)
    })
    .await;
    let production = gate.production().await;
    assert_eq!(
        production.live_image(),
        Some(gate.pinned(&built).as_str()),
        "production serves the approved digest, pinned: {production:?}"
    );
    for image in [&production.blue, &production.green].into_iter().flatten().map(|(_, image)| image) {
        assert!(
            !image.contains(&moved_during_scan) && !image.contains(&moved_before_approval) && !image.contains(":1.1.0"),
            "neither the tag nor a re-pushed image reaches production: {production:?}"
        );
    }
    let status = promoted.status.clone().expect("status");
    assert_eq!(status.approved_by, ["alice"]);
    assert_eq!(status.previous_digest.as_deref(), Some(gate.before.as_str()));
    // The approval is bound to the Promotion's immutable digest; the policy reports it running.
    assert_eq!(promoted.spec.digest, built);
    let policies = Api::<ImagePolicy>::namespaced(s.admin.clone(), &s.ns);
    wait("the policy to report the approved digest in production", MINUTE, || async {
        (policies.get("shop-app").await.ok()?.status?.production_digest? == built).then_some(())
    })
    .await;
    let (signature_verified, _, _) = condition(&promoted, "SignatureVerified");
    assert_eq!(signature_verified, "True", "the signature of the approved digest verified before the write");
    drop(controller);
}

/// The candidate's signature is deleted from the registry after the first of two approvals; the
/// second approval then finds no signature that verifies, the Promotion fails before production
/// with `SignatureVerified=False` naming the missing signature, and no production object is
/// written.
#[tokio::test]
async fn a_signature_deleted_before_the_last_approval_stops_the_promotion() {
    let gate = Gate::start("gate-faults-signature", 2, new_build).await;
    let s = &gate.s;
    let controller = gate.controller();
    let (release, built) = gate.new_build_waits_for_its_scan(&controller).await;
    assert_eq!(s.upload_scan_report(CLEAN_REPORT).await, built);
    let promotion = promotion_of(s, &release, PromotionPhase::AwaitingApproval, 2 * MINUTE).await;
    let name = promotion.metadata.name.clone().expect("promotion name");

    let alice = s.user("alice", &["tidegate-approvers"]).await;
    let bob = s.user("bob", &["tidegate-approvers"]).await;
    s.approve(&alice, &name, "alice").await.expect("alice approves");
    s.approval_says(&name, "1 of 2 approvals").await;

    // The signature the Release recorded is the one that refers to the candidate; it is deleted
    // (`DELETE /v2/<name>/manifests/<digest>`, as the registry allows).
    let signature = s
        .releases()
        .get(&release)
        .await
        .expect("release")
        .status
        .and_then(|st| st.signature)
        .and_then(|sig| sig.reference)
        .expect("signature reference");
    assert_eq!(gate.signatures_of(&built).await, std::slice::from_ref(&signature));
    let registry = gate.registry.client();
    let path = format!("/v2/shop/app/manifests/{signature}");
    let deleted = registry.send(Method::DELETE, &path, &[], Vec::new()).await.expect("DELETE signature");
    assert_eq!(deleted.status, StatusCode::ACCEPTED, "{}", deleted.text());
    let gone = registry.send(Method::GET, &path, &[], Vec::new()).await.expect("GET signature");
    assert_eq!(gone.status, StatusCode::NOT_FOUND, "the signature manifest is gone");

    let before = gate.production().await;
    assert_eq!(before.live_image(), Some(gate.pinned(&gate.before).as_str()));
    s.approve(&bob, &name, "bob").await.expect("bob approves");
    // Once the controller has seen both approvals the Promotion moves on, and must end Failed.
    let failed = wait("the Promotion to act on the approvals", 2 * MINUTE, || async {
        let p = s.promotions().get(&name).await.ok()?;
        let phase = p.status.as_ref()?.phase;
        (!matches!(phase, PromotionPhase::AwaitingApproval | PromotionPhase::Approved)).then_some(p)
    })
    .await;
    let phase = failed.status.as_ref().map(|st| st.phase);
    assert_eq!(phase, Some(PromotionPhase::Failed), "production: {:?}", gate.production().await);
    let (status, reason, message) = condition(&failed, "SignatureVerified");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "SignatureInvalid"), "{message}");
    let image = gate.pinned(&built);
    assert!(
        message.contains(&format!("no signature of {image} verifies")) && message.contains(&signature),
        "the condition names the candidate and the signature that is gone: {message}"
    );
    let (_, reason, message) = condition(&failed, "Ready");
    assert_eq!(reason, "SignatureInvalid", "{message}");
    assert!(message.contains("production untouched"), "{message}");
    let recorded = failed.status.clone().expect("status");
    assert!(recorded.promoted_at.is_none() && recorded.previous_digest.is_none(), "{recorded:#?}");
    assert_eq!(gate.production().await, before, "no production object was written");

    // Looked at again, it stays Failed and production stays as it was.
    let looked = controller.reconciles("Promotion").await;
    s.wake(&s.promotions(), &name).await;
    controller.reconciled_since("Promotion", looked).await;
    let again = s.promotions().get(&name).await.expect("promotion");
    assert_eq!(again.status.map(|st| st.phase), Some(PromotionPhase::Failed));
    assert_eq!(gate.production().await, before);
    drop(controller);
}

/// Release A of a base-image update waits for approval when a second update of the base starts
/// Release B: A is superseded, its Promotion ends `Superseded` saying why, and an approval
/// written on it afterwards changes nothing in production.
#[tokio::test]
async fn an_approval_of_a_promotion_whose_release_was_superseded_moves_nothing() {
    let gate = Gate::start("gate-faults-superseded", 1, base_image).await;
    let s = &gate.s;
    let controller = gate.controller();
    let (release_a, _, promotion_a) = gate.rebased_release_awaits_approval(&controller).await;
    let name = promotion_a.metadata.name.clone().expect("promotion A");
    let before = gate.production().await;
    assert_eq!(before.live_image(), Some(gate.pinned(&gate.before).as_str()));

    // Base v3: Release B starts (it waits for its scan report), and supersedes A.
    gate.update_base(&controller, "3").await;
    let release_b = wait("a second Release", MINUTE, || async {
        let items = s.releases().list(&Default::default()).await.ok()?.items;
        let newest = items.iter().max_by_key(|r| creation_key(r))?.metadata.name.clone()?;
        (items.len() == 2).then_some(newest)
    })
    .await;
    assert_ne!(release_b, release_a, "the second base update made the newer Release");
    let superseded = wait("Release A to be Superseded", MINUTE, || async {
        let status = s.releases().get(&release_a).await.ok()?.status?;
        (status.phase == ReleasePhase::Superseded).then_some(status)
    })
    .await;
    let ready = superseded.conditions.iter().find(|c| c.type_ == "Ready").expect("Ready");
    assert_eq!(ready.reason, "Superseded");
    assert!(ready.message.contains(&release_b), "{}", ready.message);

    // Promotion A ends with its Release, and says why.
    let ended = promotion_of(s, &release_a, PromotionPhase::Superseded, MINUTE).await;
    let (ready, reason, message) = condition(&ended, "Ready");
    assert_eq!((ready.as_str(), reason.as_str()), ("False", "ReleaseSuperseded"), "{message}");
    assert_eq!(message, "the release was superseded by a newer one");
    assert_eq!(gate.production().await, before);

    // alice approves A now; the controller looks at it (twice) and production stays as it was.
    let alice = s.user("alice", &["tidegate-approvers"]).await;
    let looked = controller.reconciles("Promotion").await;
    s.approve(&alice, &name, "alice").await.expect("the approval is admitted");
    controller.reconciled_since("Promotion", looked).await;
    let looked = controller.reconciles("Promotion").await;
    s.wake(&s.promotions(), &name).await;
    controller.reconciled_since("Promotion", looked).await;
    let again = s.promotions().get(&name).await.expect("promotion A");
    assert_eq!(condition(&again, "Ready").1, "ReleaseSuperseded", "the reason stays");
    let status = again.status.expect("status");
    assert_eq!(status.phase, PromotionPhase::Superseded, "the approval revives nothing");
    assert!(status.approved_by.is_empty() && status.promoted_at.is_none(), "{status:#?}");
    assert_eq!(gate.production().await, before, "no production object was written");
    // It is still on record, under alice's name: the audit lists what was written on an ended
    // Promotion too.
    let entries: Vec<_> = status.history.iter().map(|e| (e.action, e.user.as_str())).collect();
    assert_eq!(entries, [(tidegate_api::AuditAction::Approved, "alice")], "{status:#?}");
    let events: Api<Event> = Api::namespaced(s.admin.clone(), &s.ns);
    let note = wait("the ApprovalRecorded Event", MINUTE, || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items.into_iter().find_map(|e| {
            (e.reason.as_deref() == Some("ApprovalRecorded")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name.as_str()))
            .then(|| e.note.unwrap_or_default())
        })
    })
    .await;
    assert_eq!(note, format!("alice approved {}", promotion_a.spec.digest));
    drop(controller);
}

/// The base image moves again while an approved Promotion is changing production. The newer
/// Release starts, but the one being rolled out stays `Verified` until production runs its
/// digest, so the rollout's gate checks keep holding: production ends on the approved digest,
/// nothing is rolled back, and the older Release is superseded only after its rollout.
#[tokio::test]
async fn a_base_image_pushed_during_an_approved_rollout_does_not_undo_it() {
    let gate = Gate::start("gate-faults-rollout", 1, base_image).await;
    let s = &gate.s;
    let controller = gate.controller();
    let (release_a, digest_a, promotion_a) = gate.rebased_release_awaits_approval(&controller).await;
    let name = promotion_a.metadata.name.clone().expect("promotion A");

    // Production cannot start new pods for now (a quota of none), so the rollout alice approves
    // stays in progress.
    let quotas: Api<ResourceQuota> = Api::namespaced(s.admin.clone(), &s.ns);
    let quota: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": "hold-rollout"}, "spec": {"hard": {"pods": "0"}}
    }))
    .expect("quota");
    quotas.create(&Default::default(), &quota).await.expect("create the quota");
    let alice = s.user("alice", &["tidegate-approvers"]).await;
    s.approve(&alice, &name, "alice").await.expect("alice approves");
    promotion_of(s, &release_a, PromotionPhase::Promoting, MINUTE).await;

    // Base v3 mid-rollout: Release B starts; A stays Verified, the rollout stays on.
    gate.update_base(&controller, "3").await;
    wait("a second Release", MINUTE, || async {
        (s.releases().list(&Default::default()).await.ok()?.items.len() == 2).then_some(())
    })
    .await;
    let looked = controller.reconciles("Release").await;
    for _ in 0..20 {
        let a = s.releases().get(&release_a).await.expect("release A").status.expect("status");
        assert_eq!(a.phase, ReleasePhase::Verified, "superseded in the middle of its rollout: {a:#?}");
        let p = s.promotions().get(&name).await.expect("promotion A").status.expect("status");
        assert_eq!(p.phase, PromotionPhase::Promoting, "{p:#?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(controller.reconciles("Release").await > looked, "Release A was looked at meanwhile");

    // Pods may start again (the ReplicaSets are nudged to try at once): the rollout completes
    // with A's digest, and only then is A superseded.
    quotas.delete("hold-rollout", &Default::default()).await.expect("delete the quota");
    let replica_sets: Api<ReplicaSet> = Api::namespaced(s.admin.clone(), &s.ns);
    for rs in replica_sets.list(&Default::default()).await.expect("replica sets").items {
        let nudge = json!({"metadata": {"annotations": {"test.tidegate.dev/nudge": "1"}}});
        let rs_name = rs.metadata.name.expect("name");
        replica_sets.patch(&rs_name, &PatchParams::default(), &Patch::Merge(&nudge)).await.expect("nudge");
    }
    let promoted = wait("the rollout to complete", 2 * MINUTE, || async {
        let p = s.promotions().get(&name).await.ok()?;
        let phase = p.status.as_ref()?.phase;
        assert!(!matches!(phase, PromotionPhase::RolledBack | PromotionPhase::Failed), "{p:#?}");
        matches!(phase, PromotionPhase::Monitoring | PromotionPhase::Succeeded).then_some(p)
    })
    .await;
    assert_eq!(gate.production().await.live_image(), Some(gate.pinned(&digest_a).as_str()));
    assert!(promoted.status.expect("status").rollback.is_none(), "nothing was rolled back");
    wait("Release A to be superseded after its rollout", MINUTE, || async {
        (s.releases().get(&release_a).await.ok()?.status?.phase == ReleasePhase::Superseded).then_some(())
    })
    .await;
    drop(controller);
}
