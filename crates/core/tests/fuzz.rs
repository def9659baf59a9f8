//! Fuzzing the parsers of outside data in `tidegate-core`: digests and image references (from
//! registries, notifications, workloads and specs), durations (from specs), promotion records
//! (read back from registries) and ACR Tasks run outputs. Each must answer `Ok` or `Err`, never
//! panic; where it is cheap, a property of what parses is checked too.
//!
//! Bounded run: `cargo test -p tidegate-core --test fuzz`. Longer run: see `docs/fuzzing.md`.

use tidegate_core::acr_run::{self, OutputImage};
use tidegate_core::provenance::Statement;
use tidegate_core::{Digest, ImageRef, parse_duration};
use tidegate_fuzz::{target, text};

const HEX: &str = "ce1b317e127fb4b0d72f66285df6a71cad81e71ec2ec2512fbdce9faa94939dc";

fn seeds(items: &[String]) -> Vec<Vec<u8>> {
    items.iter().map(|s| s.as_bytes().to_vec()).collect()
}

#[test]
fn digests_parse_or_refuse_and_round_trip() {
    let seeds = seeds(&[format!("sha256:{HEX}"), "sha512:00".into(), format!("sha256:{}", HEX.to_uppercase())]);
    target("core-digest").iterations(20_000).run(&seeds, |input| {
        let input = text(input);
        let Ok(digest) = input.parse::<Digest>() else { return Ok(()) };
        if digest.to_string() != input || digest.hex().len() != 64 || digest.short().len() != 12 {
            return Err(format!("digest round trip: {input:?} parsed to {digest:?}"));
        }
        Ok(())
    });
}

#[test]
fn image_references_parse_or_refuse_and_round_trip() {
    let seeds = seeds(&[
        "127.0.0.1:5000/shop/app:1.2".into(),
        format!("registry.example.com/shop/app@sha256:{HEX}"),
        format!("localhost/app:v1@sha256:{HEX}"),
        "myregistry.azurecr.io/base/runtime:3.20".into(),
        "nginx:latest".into(),
    ]);
    target("core-image-ref").iterations(20_000).run(&seeds, |input| {
        let input = text(input);
        let Ok(reference) = input.parse::<ImageRef>() else { return Ok(()) };
        let again: ImageRef =
            reference.to_string().parse().map_err(|e| format!("reference re-parse: {input:?} → {reference}: {e}"))?;
        if again != reference {
            return Err(format!("reference round trip: {input:?} → {reference:?} → {again:?}"));
        }
        if let Some(digest) = &reference.digest {
            let pinned: ImageRef =
                reference.pinned(digest).parse().map_err(|e| format!("pinned re-parse: {input:?}: {e}"))?;
            if pinned.digest.as_ref() != Some(digest) || pinned.tag.is_some() {
                return Err(format!("pinned form: {input:?} gives {pinned:?}"));
            }
        }
        Ok(())
    });
}

#[test]
fn durations_parse_or_refuse() {
    let seeds = seeds(&["90s".into(), "1h30m".into(), "250ms".into(), "720h".into(), "4294967295h".into()]);
    target("core-duration").iterations(20_000).run(&seeds, |input| {
        let input = text(input);
        if parse_duration(&input).is_ok() && !input.bytes().all(|b| b.is_ascii_digit() || b"hms".contains(&b)) {
            return Err(format!("duration grammar: {input:?} parsed, outside the admitted grammar"));
        }
        Ok(())
    });
}

/// A promotion record as the controller writes it (written for this test).
fn record() -> Vec<u8> {
    serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "r.io/shop/app", "digest": {"sha256": HEX}}],
        "predicateType": "https://tidegate.dev/attestations/promotion/v1",
        "predicate": {
            "event": "Promoted",
            "at": "2025-01-15T08:30:00Z",
            "policy": {"namespace": "shop", "name": "web", "image": "r.io/shop/app"},
            "promotion": {"namespace": "shop", "name": "web-abc", "uid": "1234"},
            "release": {"name": "web-1", "trigger": "BaseImage", "vulnerabilities": ["CVE-2024-1"],
                        "baseImage": {"reference": "r.io/base:3", "newDigest": format!("sha256:{HEX}")}},
            "scan": {"scanner": "trivy", "critical": 0, "high": 1, "medium": 2, "low": 3, "blocking": 0},
            "tests": [{"name": "smoke", "passed": true, "finishedAt": "2025-01-15T08:00:00Z"}],
            "approvals": [{"user": "alice", "at": "2025-01-15T08:10:00Z"}]
        }
    })
    .to_string()
    .into_bytes()
}

#[test]
fn promotion_records_parse_or_refuse() {
    let digest: Digest = format!("sha256:{HEX}").parse().expect("digest");
    let seeds = vec![record()];
    assert!(Statement::parse(&seeds[0], &digest).is_ok(), "the seed is a record");
    target("core-promotion-record").iterations(5_000).run(&seeds, |input| {
        let Ok(statement) = Statement::parse(input, &digest) else { return Ok(()) };
        let again = Statement::parse(&statement.to_bytes(), &digest).map_err(|e| format!("record re-read: {e}"))?;
        if again != statement {
            return Err("record round trip: a record does not read back as itself".into());
        }
        Ok(())
    });
}

#[test]
fn acr_run_outputs_give_a_candidate_of_the_policy_repository_or_none() {
    let seeds = vec![
        serde_json::json!([
            {"registry": "myregistry.azurecr.io", "repository": "shop/web", "tag": "tg-1", "digest": format!("sha256:{HEX}")},
            {"registry": "myregistry.azurecr.io", "repository": "shop/web", "tag": "latest", "digest": format!("sha256:{}", "0".repeat(64))},
            {"registry": "other.azurecr.io", "repository": "shop/web", "tag": "tg-1", "digest": format!("sha256:{}", "1".repeat(64))}
        ])
        .to_string()
        .into_bytes(),
    ];
    target("core-acr-run-outputs").iterations(5_000).run(&seeds, |input| {
        let Ok(serde_json::Value::Array(items)) = serde_json::from_slice(input) else { return Ok(()) };
        let field = |item: &serde_json::Value, key: &str| item.get(key).and_then(|v| v.as_str()).map(str::to_string);
        let outputs: Vec<OutputImage> = items
            .iter()
            .map(|item| OutputImage {
                registry: field(item, "registry").unwrap_or_default(),
                repository: field(item, "repository").unwrap_or_default(),
                tag: field(item, "tag"),
                digest: field(item, "digest"),
            })
            .collect();
        let status = items.first().and_then(|i| field(i, "tag")).unwrap_or_default();
        let _ = acr_run::phase(&status);
        if let Ok(digest) = acr_run::candidate(&outputs, "MyRegistry.azurecr.io", "shop/web", "tg-1") {
            let ours = outputs.iter().any(|o| {
                o.registry.eq_ignore_ascii_case("myregistry.azurecr.io")
                    && o.repository == "shop/web"
                    && o.digest.as_deref() == Some(digest.as_str())
            });
            if !ours {
                return Err(format!("foreign candidate: {digest} is not an output in the policy's repository"));
            }
        }
        Ok(())
    });
}
