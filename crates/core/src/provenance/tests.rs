use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::json;
use tidegate_api::{AuditAction, AuditEntry, Promotion, PromotionPhase, RecordEvent, Release};

use super::*;

fn digest(c: char) -> Digest {
    format!("sha256:{}", c.to_string().repeat(64)).parse().expect("digest")
}

fn at(text: &str) -> Time {
    Time(text.parse().expect("time"))
}

fn condition(type_: &str, status: bool, message: &str, time: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: "R".into(),
        message: message.into(),
        last_transition_time: at(time),
        observed_generation: None,
    }
}

fn proven() -> Proven {
    Proven { approvers: vec!["alice".into(), "bob".into()], ..Proven::default() }
}

fn release() -> Release {
    serde_json::from_value(json!({
        "metadata": {"name": "shop-app-base-1", "namespace": "shop", "uid": "r-uid"},
        "spec": {"policy": "shop-app", "reason": {"type": "BaseImageUpdated", "baseImage": {
            "ref": "r.io/base:3", "oldDigest": digest('1').to_string(), "newDigest": digest('2').to_string()}}},
        "status": {"phase": "Verified", "digest": digest('d').to_string(),
            "build": {"reference": "rebase:abc"},
            "scan": {"scanner": "trivyReport", "critical": 0, "high": 1, "medium": 2, "low": 3, "blocking": 0,
                     "finishedAt": "2026-12-01T10:00:00Z"},
            "tests": [{"name": "health", "passed": true, "message": "200", "finishedAt": "2026-12-01T10:05:00Z"}]}
    }))
    .expect("release")
}

fn promotion(phase: PromotionPhase) -> Promotion {
    let mut promotion: Promotion = serde_json::from_value(json!({
        "metadata": {"name": "shop-app-1", "namespace": "shop", "uid": "p-uid",
                     "annotations": {"tidegate.dev/rejection-reason": "CVE-2026-1 still present"}},
        "spec": {"policy": "shop-app", "release": "shop-app-base-1", "digest": digest('d').to_string()},
        "status": {"phase": "AwaitingApproval", "approvedBy": ["alice", "bob"],
            "previousDigest": digest('0').to_string(), "promotedAt": "2026-12-01T11:00:00Z",
            "rules": {"image": "r.io/shop/app", "requiredApprovals": 2, "approvalValidFor": "24h",
                "monitorWindow": "10m", "autoRollback": true, "frozenAt": "2026-12-01T10:06:00Z",
                "workloads": [{"name": "web", "kind": "http",
                    "staging": {"kubernetes": {"kind": "Deployment", "namespace": "staging", "name": "web"}},
                    "production": {"kubernetes": {"kind": "Deployment", "name": "web"}}}]}}
    }))
    .expect("promotion");
    let status = promotion.status.as_mut().expect("status");
    status.phase = phase;
    status.history = vec![
        AuditEntry { action: AuditAction::Approved, user: "alice".into(), at: at("2026-12-01T10:30:00Z") },
        AuditEntry { action: AuditAction::Approved, user: "bob".into(), at: at("2026-12-01T10:40:00Z") },
    ];
    status.conditions = vec![
        condition("RolledOut", true, "done", "2026-12-01T11:02:00Z"),
        condition("Ready", phase == PromotionPhase::Succeeded, "production runs it", "2026-12-01T11:12:00Z"),
    ];
    promotion
}

#[test]
fn a_promoted_record_names_everything_that_happened() {
    let statement = statement(
        RecordEvent::Promoted,
        &promotion(PromotionPhase::Succeeded),
        Some(&release()),
        "r.io/shop/app",
        &digest('d'),
        &proven(),
    )
    .expect("record");
    let value = serde_json::to_value(&statement).expect("json");
    assert_eq!(value["_type"], STATEMENT_TYPE);
    assert_eq!(value["predicateType"], PREDICATE_TYPE);
    assert_eq!(value["subject"], json!([{"name": "r.io/shop/app", "digest": {"sha256": "d".repeat(64)}}]));
    let p = &value["predicate"];
    assert_eq!(p["event"], "Promoted");
    assert_eq!(p["at"], "2026-12-01T11:12:00Z");
    assert_eq!(p["policy"], json!({"namespace": "shop", "name": "shop-app", "image": "r.io/shop/app"}));
    assert_eq!(p["promotion"], json!({"namespace": "shop", "name": "shop-app-1", "uid": "p-uid"}));
    assert_eq!(p["release"]["trigger"], "BaseImageUpdated");
    assert_eq!(p["release"]["baseImage"]["oldDigest"], digest('1').to_string());
    assert_eq!(p["release"]["baseImage"]["newDigest"], digest('2').to_string());
    assert_eq!(p["release"]["build"], "rebase:abc");
    assert_eq!(p["scan"]["scanner"], "trivyReport");
    assert_eq!(p["scan"]["high"], 1);
    assert_eq!(
        p["tests"],
        json!([{"name": "health", "passed": true, "message": "200", "finishedAt": "2026-12-01T10:05:00Z"}])
    );
    assert_eq!(
        p["approvals"],
        json!([{"user": "alice", "at": "2026-12-01T10:30:00Z"}, {"user": "bob", "at": "2026-12-01T10:40:00Z"}])
    );
    assert_eq!(p["production"]["workloads"], json!(["Deployment shop/web"]));
    assert_eq!(p["production"]["previousDigest"], digest('0').to_string());
    assert_eq!(p["production"]["changeStartedAt"], "2026-12-01T11:00:00Z");
    assert_eq!(p["production"]["runningSince"], "2026-12-01T11:02:00Z");
    assert!(p.get("rejection").is_none() && p.get("rollback").is_none());
}

#[test]
fn the_same_facts_give_the_same_bytes() {
    let make = || {
        statement(
            RecordEvent::Promoted,
            &promotion(PromotionPhase::Succeeded),
            Some(&release()),
            "r.io/shop/app",
            &digest('d'),
            &proven(),
        )
        .expect("record")
        .to_bytes()
    };
    assert_eq!(make(), make());
}

#[test]
fn a_record_is_only_of_what_the_status_says_happened() {
    for (event, phase) in [
        (RecordEvent::Promoted, PromotionPhase::Monitoring),
        (RecordEvent::RolledBack, PromotionPhase::Succeeded),
        (RecordEvent::Rejected, PromotionPhase::AwaitingApproval),
        (RecordEvent::RolledBack, PromotionPhase::RolledBack), // rollback not complete
    ] {
        assert_eq!(
            statement(event, &promotion(phase), None, "r.io/shop/app", &digest('d'), &proven()),
            Err(RecordError::NotYet(event)),
            "{event:?} in {phase:?}"
        );
    }
}

#[test]
fn rejections_and_rollbacks_say_who_and_why() {
    let mut rejected = promotion(PromotionPhase::Rejected);
    let status = rejected.status.as_mut().expect("status");
    status.history.push(AuditEntry {
        action: AuditAction::Rejected,
        user: "erin".into(),
        at: at("2026-12-01T10:50:00Z"),
    });
    let erin = Proven { rejected_by: Some("erin".into()), ..proven() };
    let record =
        statement(RecordEvent::Rejected, &rejected, None, "r.io/shop/app", &digest('d'), &erin).expect("record");
    let rejection = record.predicate.rejection.expect("rejection");
    assert_eq!(rejection.by, Some(Actor { user: "erin".into(), at: "2026-12-01T10:50:00Z".into() }));
    assert_eq!(rejection.reason, "CVE-2026-1 still present");
    assert!(record.predicate.production.is_none());

    // Refused by a gate, not a person: the reason is the controller's, never the annotation.
    let gate = statement(
        RecordEvent::Rejected,
        &promotion(PromotionPhase::Rejected),
        None,
        "r.io/shop/app",
        &digest('d'),
        &proven(),
    )
    .expect("record");
    assert_eq!(
        gate.predicate.rejection.expect("rejection"),
        Rejection { by: None, reason: "production runs it".into() }
    );

    let mut rolled_back = promotion(PromotionPhase::RolledBack);
    let status = rolled_back.status.as_mut().expect("status");
    status.history.push(AuditEntry {
        action: AuditAction::RollbackRequested,
        user: "alice".into(),
        at: at("2026-12-01T11:20:00Z"),
    });
    status.conditions.push(condition(
        "RolledBack",
        true,
        "rollback requested by alice: restoring",
        "2026-12-01T11:20:05Z",
    ));
    status.conditions.push(condition("RollbackComplete", true, "done", "2026-12-01T11:21:00Z"));
    let alice = Proven { rollback_requested_by: Some("alice".into()), ..proven() };
    let record =
        statement(RecordEvent::RolledBack, &rolled_back, None, "r.io/shop/app", &digest('d'), &alice).expect("record");
    assert_eq!(record.predicate.at, "2026-12-01T11:21:00Z");
    let rollback = record.predicate.rollback.expect("rollback");
    assert_eq!(rollback.requested_by.map(|a| a.user), Some("alice".into()));
    assert_eq!(rollback.restored_digest, Some(digest('0').to_string()));
    assert!(rollback.reason.contains("requested by alice"), "{}", rollback.reason);
}

#[test]
fn readers_refuse_records_of_other_digests_and_types() {
    let record = statement(
        RecordEvent::Promoted,
        &promotion(PromotionPhase::Succeeded),
        None,
        "r.io/shop/app",
        &digest('d'),
        &proven(),
    )
    .expect("record");
    let bytes = record.to_bytes();
    assert_eq!(Statement::parse(&bytes, &digest('d')).expect("parse"), record);
    assert!(matches!(Statement::parse(&bytes, &digest('e')), Err(RecordError::Foreign { .. })));
    for (field, value) in [("_type", json!("https://in-toto.io/Statement/v0.1")), ("predicateType", json!("x"))] {
        let mut changed = serde_json::to_value(&record).expect("json");
        changed[field] = value;
        let bytes = serde_json::to_vec(&changed).expect("bytes");
        assert!(matches!(Statement::parse(&bytes, &digest('d')), Err(RecordError::Foreign { .. })), "{field}");
    }
    let mut two = serde_json::to_value(&record).expect("json");
    two["subject"] = json!([two["subject"][0], {"name": "r.io/other", "digest": {"sha256": "e".repeat(64)}}]);
    assert!(Statement::parse(&serde_json::to_vec(&two).expect("bytes"), &digest('d')).is_err(), "one subject only");
    assert!(Statement::parse(b"not json", &digest('d')).is_err());
}

#[test]
fn status_alone_never_earns_a_record() {
    let d = digest('d');
    let previous = digest('0');
    let approved = proven();
    let world = World {
        release_verified: true,
        production: Some(d.clone()),
        ran_digest: true,
        required: 2,
        ..World::default()
    };
    assert_eq!(check(RecordEvent::Promoted, &d, Some(&previous), &approved, &world), Ok(()));
    // A forged Succeeded: production does not run it, the Release is not Verified, or nobody approved.
    for (name, world, proven) in [
        ("production elsewhere", World { production: Some(previous.clone()), ..world.clone() }, approved.clone()),
        ("release not verified", World { release_verified: false, ..world.clone() }, approved.clone()),
        ("one approval of two", world.clone(), Proven { approvers: vec!["alice".into()], ..Proven::default() }),
        ("no approval at all", World { required: 0, ..world.clone() }, Proven::default()),
    ] {
        assert!(check(RecordEvent::Promoted, &d, Some(&previous), &proven, &world).is_err(), "{name}");
    }
    // A rollback record needs production back on the previous digest, and the digest to have run.
    let restored = World { production: Some(previous.clone()), ..world.clone() };
    assert_eq!(check(RecordEvent::RolledBack, &d, Some(&previous), &approved, &restored), Ok(()));
    assert!(check(RecordEvent::RolledBack, &d, Some(&previous), &approved, &world).is_err());
    assert!(
        check(RecordEvent::RolledBack, &d, Some(&previous), &approved, &World { ran_digest: false, ..restored })
            .is_err()
    );
    // A rejection record needs a proven rejection or a rejected Release.
    assert!(check(RecordEvent::Rejected, &d, None, &Proven::default(), &World::default()).is_err());
    let rejected = World { release_rejected: true, ..World::default() };
    assert_eq!(check(RecordEvent::Rejected, &d, None, &Proven::default(), &rejected), Ok(()));
    let erin = Proven { rejected_by: Some("erin".into()), ..Proven::default() };
    assert_eq!(check(RecordEvent::Rejected, &d, None, &erin, &World::default()), Ok(()));
}
