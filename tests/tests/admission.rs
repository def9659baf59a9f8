//! The CRDs on a real API server: they become Established, the documented examples are accepted,
//! invalid resources are rejected at admission with a message that names the field, and fields the
//! controller cannot act on yet are refused with a message that says so.

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::pinned_kind;
use serde_json::{Value, json};
use tidegate_e2e::{example, examples_dir, set};
use tidegate_testenv::{apply, crds, shared};

const DIGEST_A: &str = "sha256:ce1b317e127fb4b0d72f66285df6a71cad81e71ec2ec2512fbdce9faa94939dc";
const DIGEST_B: &str = "sha256:4c184c0d25773ebecb5b46cfb86c87aede83bf6fb921f9d21292fab3deb4aa26";

async fn api_for(client: &kube::Client, kind: &str, namespace: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("tidegate.dev", "v1alpha1", kind);
    let (resource, _) = pinned_kind(client, &gvk).await.expect("kind is served");
    Api::namespaced_with(client.clone(), namespace, &resource)
}

/// Creates `object` with a server-side dry run and returns the rejection message, if any.
async fn admission_error(client: &kube::Client, object: &Value) -> Option<String> {
    let kind = object["kind"].as_str().expect("kind");
    let api = api_for(client, kind, "admission").await;
    let object: DynamicObject = serde_json::from_value(object.clone()).expect("object");
    match api.create(&PostParams { dry_run: true, ..Default::default() }, &object).await {
        Ok(_) => None,
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "rejected as invalid, not for another reason: {status:?}");
            Some(status.message)
        }
        Err(other) => panic!("unexpected error: {other}"),
    }
}

#[tokio::test]
async fn crds_are_established() {
    let env = shared().expect("environment starts");
    let client = env.client().await.expect("client");
    let established = tidegate_testenv::established_crds(&client).await.expect("list CRDs");
    for name in ["imagepolicies.tidegate.dev", "releases.tidegate.dev", "promotions.tidegate.dev"] {
        assert!(established.iter().any(|n| n == name), "{name} not Established: {established:?}");
    }
    // And they are the checked-in files, byte for byte from the types.
    let api: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client);
    let served = api.get("promotions.tidegate.dev").await.expect("get CRD");
    assert!(crds::is_established(&served));
    let short_names = served.spec.names.short_names.unwrap_or_default();
    assert_eq!(short_names, ["promo"]);
}

#[tokio::test]
async fn documented_examples_are_accepted() {
    let env = shared().expect("environment starts");
    let client = env.client().await.expect("client");
    let applied = apply::apply_dir(&client, &examples_dir(), "default", "e2e").await.expect("docs/examples apply");
    assert!(applied.iter().any(|o| o == "ImagePolicy/shop/shop-app"), "{applied:?}");
    let manual = apply::apply_dir(&client, &examples_dir().join("manual"), "default", "e2e")
        .await
        .expect("docs/examples/manual apply");
    assert!(manual.iter().any(|o| o.starts_with("Release/shop/")), "{manual:?}");
    assert!(manual.iter().any(|o| o.starts_with("Promotion/shop/")), "{manual:?}");

    // Defaults are filled in by the schema, so `kubectl get -o yaml` shows the effective policy.
    let policies = api_for(&client, "ImagePolicy", "shop").await;
    let policy = policies.get("shop-app").await.expect("policy");
    assert_eq!(policy.data["spec"]["promotion"]["requiredApprovals"], 1);
    assert_eq!(policy.data["spec"]["tests"]["http"][0]["timeout"], "10s");
}

/// One invalid change to a valid resource and the words the rejection must contain.
struct Case {
    name: &'static str,
    base: &'static str,
    pointer: &'static str,
    value: Value,
    expect: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "promotion digest is a tag",
            base: "promotion",
            pointer: "/spec/digest",
            value: json!("latest"),
            expect: &["spec.digest", "sha256:"],
        },
        Case {
            name: "promotion digest has upper-case hex",
            base: "promotion",
            pointer: "/spec/digest",
            value: json!(DIGEST_A.to_uppercase().replace("SHA256", "sha256")),
            expect: &["spec.digest", "64 lowercase hex"],
        },
        Case {
            name: "policy image carries a tag",
            base: "policy",
            pointer: "/spec/image",
            value: json!("registry.example.com/shop/app:1.0"),
            expect: &["spec.image", "without tag or digest"],
        },
        Case {
            name: "no severity blocks",
            base: "policy",
            pointer: "/spec/scan/blockSeverities",
            value: json!([]),
            expect: &["spec.scan.blockSeverities", "at least one severity", "gate is off"],
        },
        Case {
            name: "exception without reason",
            base: "policy",
            pointer: "/spec/scan/exceptions/0/reason",
            value: Value::Null,
            expect: &["spec.scan.exceptions[0].reason", "Required value"],
        },
        Case {
            name: "exception without expiry",
            base: "policy",
            pointer: "/spec/scan/exceptions/0/expires",
            value: Value::Null,
            expect: &["spec.scan.exceptions[0].expires", "Required value"],
        },
        Case {
            name: "exception reason too thin",
            base: "policy",
            pointer: "/spec/scan/exceptions/0/reason",
            value: json!("ok"),
            expect: &["spec.scan.exceptions[0].reason", "why the finding is accepted"],
        },
        Case {
            name: "job workload with traffic split",
            base: "policy",
            pointer: "/spec/workloads/2/strategy",
            value: json!({"type": "canary", "canarySteps": [10, 50]}),
            expect: &["spec.workloads[2]", "must be direct for a job workload"],
        },
        Case {
            name: "worker workload with blue-green",
            base: "policy",
            pointer: "/spec/workloads/1/strategy",
            value: json!({"type": "blueGreen"}),
            expect: &["spec.workloads[1]", "replace or overlap"],
        },
        Case {
            name: "job workload targets a Deployment",
            base: "policy",
            pointer: "/spec/workloads/2/production/kubernetes/kind",
            value: json!("Deployment"),
            expect: &["spec.workloads[2]", "a job workload targets a CronJob"],
        },
        Case {
            name: "base image interval too short",
            base: "policy",
            pointer: "/spec/triggers/baseImage/interval",
            value: json!("10s"),
            expect: &["spec.triggers.baseImage.interval", "between 1m and 24h"],
        },
        Case {
            name: "base image interval not a duration",
            base: "policy",
            pointer: "/spec/triggers/baseImage/interval",
            value: json!("often"),
            expect: &["spec.triggers.baseImage.interval", "between 1m and 24h"],
        },
        Case {
            name: "monitor window too long",
            base: "policy",
            pointer: "/spec/promotion/monitorWindow",
            value: json!("48h"),
            expect: &["spec.promotion.monitorWindow", "between 1m and 24h"],
        },
        Case {
            name: "base image watched by digest",
            base: "policy",
            pointer: "/spec/triggers/baseImage/ref",
            value: json!(format!("registry.example.com/base/runtime@{DIGEST_A}")),
            expect: &["spec.triggers.baseImage.ref", "with a tag"],
        },
        Case {
            name: "target with two platforms",
            base: "policy",
            pointer: "/spec/workloads/0/staging/containerApp",
            value: json!({"resourceId": "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.App/containerApps/web"}),
            expect: &["spec.workloads[0].staging", "exactly one of kubernetes, containerApp or containerAppsJob"],
        },
        Case {
            name: "container app target naming a job",
            base: "policy",
            pointer: "/spec/workloads/0/production",
            value: json!({"containerApp": {"resourceId": "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.App/jobs/web"}}),
            expect: &["containerApp.resourceId must name a Microsoft.App/containerApps resource"],
        },
        Case {
            name: "label on a production container app",
            base: "policy",
            pointer: "/spec/workloads/0/production",
            value: json!({"containerApp": {"resourceId": "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.App/containerApps/web", "label": "blue"}}),
            expect: &["production.containerApp.label applies to staging only"],
        },
        Case {
            name: "production job execution",
            base: "policy",
            pointer: "/spec/workloads/2/production",
            value: json!({"containerAppsJob": {"resourceId": "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.App/jobs/report", "verifyExecution": true}}),
            expect: &["verifyExecution applies to staging only"],
        },
        Case {
            name: "container app for a job workload",
            base: "policy",
            pointer: "/spec/workloads/2/staging",
            value: json!({"containerApp": {"resourceId": "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.App/containerApps/report"}}),
            expect: &["a job workload targets a CronJob or a containerAppsJob"],
        },
        Case {
            name: "canary on a Deployment",
            base: "policy",
            pointer: "/spec/workloads/0/strategy",
            value: json!({"type": "canary", "canarySteps": [10, 50]}),
            expect: &["strategy.type canary needs a containerApp production target"],
        },
        Case {
            name: "canary without steps",
            base: "policy",
            pointer: "/spec/workloads/0/strategy",
            value: json!({"type": "canary"}),
            expect: &["canarySteps is required for type canary"],
        },
        Case {
            name: "canary steps going down",
            base: "policy",
            pointer: "/spec/workloads/0/strategy",
            value: json!({"type": "canary", "canarySteps": [50, 10]}),
            expect: &["canarySteps must be increasing percentages"],
        },
        Case {
            name: "canary steps on blue-green",
            base: "policy",
            pointer: "/spec/workloads/0/strategy",
            value: json!({"type": "blueGreen", "canarySteps": [10]}),
            expect: &["canarySteps applies to type canary only"],
        },
        Case {
            name: "policy without a scan",
            base: "policy",
            pointer: "/spec/scan",
            value: Value::Null,
            expect: &["spec.scan is required", "trivyReport"],
        },
        Case {
            name: "candidates scanned by the Trivy Operator",
            base: "policy",
            pointer: "/spec/scan/scanner",
            value: json!("trivyOperator"),
            expect: &["spec.scan.scanner cannot be trivyOperator", "spec.triggers.rescan.scanner"],
        },
        Case {
            name: "rescan with a scanner that does not exist yet",
            base: "policy",
            pointer: "/spec/triggers/rescan",
            value: json!({"interval": "24h", "scanner": "osv"}),
            expect: &[
                "spec.triggers.rescan.scanner must be trivy, trivyReport, trivyOperator, configMapReport or defender",
            ],
        },
        Case {
            name: "rescan every second",
            base: "policy",
            pointer: "/spec/triggers/rescan/interval",
            value: json!("30s"),
            expect: &["spec.triggers.rescan.interval", "between 1m and 720h"],
        },
        Case {
            name: "reports that never go stale",
            base: "policy",
            pointer: "/spec/scan/maxReportAge",
            value: json!("9000h"),
            expect: &["spec.scan.maxReportAge", "between 1m and 720h"],
        },
        Case {
            name: "scan without a scanner",
            base: "policy",
            pointer: "/spec/scan/scanner",
            value: Value::Null,
            expect: &["spec.scan.scanner", "Required value"],
        },
        Case {
            name: "zero approvers",
            base: "policy",
            pointer: "/spec/promotion/requiredApprovals",
            value: json!(0),
            expect: &["spec.promotion.requiredApprovals", "greater than or equal to 1"],
        },
        Case {
            name: "duplicate workload names",
            base: "policy",
            pointer: "/spec/workloads/1/name",
            value: json!("web"),
            expect: &["spec.workloads[1]", "Duplicate value"],
        },
        Case {
            name: "unknown workload kind",
            base: "policy",
            pointer: "/spec/workloads/0/kind",
            value: json!("daemon"),
            expect: &["spec.workloads[0].kind", "Unsupported value"],
        },
        Case {
            name: "external build without webhook",
            base: "policy",
            pointer: "/spec/build/strategy",
            value: json!("external"),
            expect: &["spec.build", "spec.build.external is required"],
        },
        Case {
            name: "defender settings with another scanner",
            base: "policy",
            pointer: "/spec/scan/defender",
            value: json!({"assessmentTimeout": "1h"}),
            expect: &["spec.scan.defender applies only with spec.scan.scanner: defender"],
        },
        Case {
            name: "defender assessment timeout out of range",
            base: "policy",
            pointer: "/spec/scan",
            value: json!({"scanner": "defender", "defender": {"assessmentTimeout": "100h"}}),
            expect: &["spec.scan.defender.assessmentTimeout must be a duration between 10m and 72h"],
        },
        Case {
            name: "acrTask strategy without its settings",
            base: "policy",
            pointer: "/spec/build",
            value: json!({"strategy": "acrTask"}),
            expect: &["spec.build.acrTask is required when spec.build.strategy is acrTask"],
        },
        Case {
            name: "acrTask settings with another strategy",
            base: "policy",
            pointer: "/spec/build",
            value: json!({"strategy": "rebase", "acrTask": {"registryId": ACR, "taskName": "rebuild"}}),
            expect: &["spec.build.acrTask applies only with spec.build.strategy: acrTask"],
        },
        Case {
            name: "acrTask with both a task name and an encoded task",
            base: "policy",
            pointer: "/spec/build",
            value: json!({"strategy": "acrTask", "acrTask": {"registryId": ACR, "taskName": "rebuild", "encodedTask": "c3RlcHM6Cg=="}}),
            expect: &["spec.build.acrTask needs exactly one of taskName"],
        },
        Case {
            name: "acrTask with neither a task name nor an encoded task",
            base: "policy",
            pointer: "/spec/build",
            value: json!({"strategy": "acrTask", "acrTask": {"registryId": ACR}}),
            expect: &["spec.build.acrTask needs exactly one of taskName"],
        },
        Case {
            name: "acrTask registry id of another resource type",
            base: "policy",
            pointer: "/spec/build",
            value: json!({"strategy": "acrTask", "acrTask": {
                "registryId": "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.App/containerApps/web", "taskName": "rebuild"}}),
            expect: &["spec.build.acrTask.registryId must be an Azure container registry resource ID"],
        },
        Case {
            name: "acrTask encoded task not base64",
            base: "policy",
            pointer: "/spec/build",
            value: json!({"strategy": "acrTask", "acrTask": {"registryId": ACR, "encodedTask": "steps: [x]"}}),
            expect: &["spec.build.acrTask.encodedTask must be base64"],
        },
        Case {
            name: "acrTask platform with a named task",
            base: "policy",
            pointer: "/spec/build",
            value: json!({"strategy": "acrTask", "acrTask": {"registryId": ACR, "taskName": "rebuild", "platform": {"os": "linux"}}}),
            expect: &["spec.build.acrTask.platform applies only with encodedTask"],
        },
        Case {
            name: "acrTask timeout out of range",
            base: "policy",
            pointer: "/spec/build",
            value: json!({"strategy": "acrTask", "acrTask": {"registryId": ACR, "taskName": "rebuild", "timeout": "7h"}}),
            expect: &["spec.build.acrTask.timeout must be a duration between 1m and 6h"],
        },
        Case {
            name: "base image release without the change",
            base: "release",
            pointer: "/spec/reason/baseImage",
            value: Value::Null,
            expect: &["spec.reason", "spec.reason.baseImage is required"],
        },
        Case {
            name: "release new base digest malformed",
            base: "release",
            pointer: "/spec/reason/baseImage/newDigest",
            value: json!("sha256:1234"),
            expect: &["spec.reason.baseImage.newDigest", "64 lowercase hex"],
        },
    ]
}

/// A container registry resource id, for `acrTask` builds.
const ACR: &str = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/shopacr";

/// Fields that stay in the schema for a later version but that this controller cannot act on: each
/// one set on the documented policy, and the field its refusal must name.
fn unsupported() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        ("/spec/triggers/schedule", json!({"cron": "0 6 * * 1"}), "spec.triggers.schedule"),
        ("/spec/scan/scanner", json!("osv"), "spec.scan.scanner osv"),
        ("/spec/sign", json!({"keySecret": "signing", "trustPolicyConfigMap": "trust"}), "spec.sign"),
        (
            "/spec/workloads/0/production/image",
            json!(format!("registry.example.com/shop/app@{DIGEST_A}")),
            "staging/production.image",
        ),
        ("/spec/workloads/0/staging/image", json!("registry.example.com/shop/app:1.0"), "staging/production.image"),
        ("/spec/tests/job", json!({"templateConfigMap": "smoke", "timeout": "10m"}), "spec.tests.job.timeout"),
    ]
}

fn base(kind: &str) -> Value {
    let mut object = match kind {
        "policy" => example("20-imagepolicy.yaml", "ImagePolicy", "shop-app"),
        "release" => example("manual/release.yaml", "Release", "shop-app-base-7bde398e02aa"),
        "promotion" => example("manual/promotion.yaml", "Promotion", "shop-app-manual-1"),
        other => panic!("no base {other}"),
    };
    object["metadata"]["namespace"] = json!("admission");
    object
}

#[tokio::test]
async fn invalid_resources_are_rejected_with_a_message_naming_the_field() {
    let env = shared().expect("environment starts");
    env.create_namespace("admission").await.expect("namespace");
    let client = env.client().await.expect("client");
    for kind in ["policy", "release", "promotion"] {
        assert_eq!(admission_error(&client, &base(kind)).await, None, "the unmodified {kind} is valid");
    }
    let mut failures = Vec::new();
    let cases = cases();
    assert!(cases.len() >= 10);
    for case in &cases {
        let mut object = base(case.base);
        set(&mut object, case.pointer, case.value.clone());
        match admission_error(&client, &object).await {
            None => failures.push(format!("{}: accepted", case.name)),
            Some(message) => {
                let missing: Vec<_> = case.expect.iter().filter(|e| !message.contains(*e)).collect();
                if !missing.is_empty() {
                    failures.push(format!("{}: message lacks {missing:?}: {message}", case.name));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[tokio::test]
async fn unsupported_fields_are_refused_as_not_supported_yet() {
    let env = shared().expect("environment starts");
    env.create_namespace("admission").await.expect("namespace");
    let client = env.client().await.expect("client");
    let mut failures = Vec::new();
    let cases = unsupported();
    for (pointer, value, field) in &cases {
        let mut object = base("policy");
        set(&mut object, pointer, value.clone());
        let name = format!("{pointer} = {value}");
        match admission_error(&client, &object).await {
            None => failures.push(format!("{name}: accepted")),
            Some(message) => {
                let missing: Vec<_> =
                    [*field, "is not supported yet"].into_iter().filter(|e| !message.contains(e)).collect();
                if !missing.is_empty() {
                    failures.push(format!("{name}: message lacks {missing:?}: {message}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));

    // What is supported next to them is still accepted: a test Job bounded by its template, and a
    // scan section with only the scanner (the rest defaults).
    let mut object = base("policy");
    set(&mut object, "/spec/tests/job", json!({"templateConfigMap": "smoke"}));
    set(&mut object, "/spec/scan", json!({"scanner": "trivyReport"}));
    assert_eq!(admission_error(&client, &object).await, None);
    // Rescans of production, with the operator's reports, and no-regression are supported.
    set(&mut object, "/spec/triggers/rescan", json!({"interval": "12h", "scanner": "trivyOperator"}));
    set(&mut object, "/spec/scan", json!({"scanner": "trivy", "noRegression": true, "maxReportAge": "6h"}));
    assert_eq!(admission_error(&client, &object).await, None);
    set(&mut object, "/spec/scan", json!({"scanner": "configMapReport"}));
    assert_eq!(admission_error(&client, &object).await, None);
    // ACR Tasks builds: a named task, or an encoded task on a platform.
    set(
        &mut object,
        "/spec/build",
        json!({"strategy": "acrTask", "acrTask": {"registryId": ACR, "taskName": "rebuild"}}),
    );
    assert_eq!(admission_error(&client, &object).await, None);
    set(
        &mut object,
        "/spec/build",
        json!({"strategy": "acrTask", "acrTask": {"registryId": ACR, "encodedTask": "c3RlcHM6Cg==",
            "platform": {"os": "linux", "architecture": "arm64"}, "timeout": "30m"}}),
    );
    assert_eq!(admission_error(&client, &object).await, None);
    set(&mut object, "/spec/build", json!({"strategy": "rebase"}));
    // Microsoft Defender for Cloud, for candidates (with or without its settings) and rescans.
    set(&mut object, "/spec/scan", json!({"scanner": "defender"}));
    assert_eq!(admission_error(&client, &object).await, None);
    set(&mut object, "/spec/scan", json!({"scanner": "defender", "defender": {"assessmentTimeout": "2h"}}));
    set(&mut object, "/spec/triggers/rescan", json!({"interval": "12h", "scanner": "defender"}));
    assert_eq!(admission_error(&client, &object).await, None);
}

#[tokio::test]
async fn promotion_release_and_digest_are_immutable() {
    let env = shared().expect("environment starts");
    env.create_namespace("immutable").await.expect("namespace");
    let client = env.client().await.expect("client");
    let api = api_for(&client, "Promotion", "immutable").await;
    let mut promotion = base("promotion");
    promotion["metadata"]["namespace"] = json!("immutable");
    let object: DynamicObject = serde_json::from_value(promotion).expect("object");
    api.create(&PostParams::default(), &object).await.expect("create");

    for (field, value, expect) in [
        ("release", json!("another-release"), "spec.release is immutable"),
        ("digest", json!(DIGEST_A), "spec.digest is immutable"),
    ] {
        let patch = json!({"spec": {field: value}});
        let err = api
            .patch("shop-app-manual-1", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect_err("changing spec.{field} is rejected");
        match err {
            kube::Error::Api(s) => assert!(s.message.contains(expect), "{}", s.message),
            other => panic!("{other}"),
        }
    }
    // Annotations (approvals) and the unchanged digest are still fine.
    let ok = json!({"metadata": {"annotations": {"example.com/note": "x"}}, "spec": {"digest": DIGEST_B}});
    api.patch("shop-app-manual-1", &PatchParams::default(), &Patch::Merge(&ok)).await.expect("no-op spec patch");
}

#[tokio::test]
async fn release_spec_is_immutable() {
    let env = shared().expect("environment starts");
    env.create_namespace("immutable-release").await.expect("namespace");
    let client = env.client().await.expect("client");
    let api = api_for(&client, "Release", "immutable-release").await;
    let mut release = base("release");
    release["metadata"]["namespace"] = json!("immutable-release");
    let object: DynamicObject = serde_json::from_value(release).expect("object");
    api.create(&PostParams::default(), &object).await.expect("create");
    let patch = json!({"spec": {"policy": "another-policy"}});
    let err = api
        .patch("shop-app-base-7bde398e02aa", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect_err("changing a Release's spec is rejected");
    match err {
        kube::Error::Api(s) => assert!(s.message.contains("spec is immutable"), "{}", s.message),
        other => panic!("{other}"),
    }
}
