//! Rescans of what production runs (`spec.triggers.rescan`): when one is due (core), the scan
//! (through the shared cache), the Release a fixable finding starts, and the policy's
//! `status.productionScan` and `VulnerableInProduction` condition.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use tidegate_api::ImagePolicy;
use tidegate_api::image_policy::{ImagePolicyStatus, ProductionScan};
use tidegate_api::release::{ReasonKind, ReleaseReason, TopFinding};
use tidegate_core::Digest;
use tidegate_core::conditions::Wanted;
use tidegate_core::gate::Finding;
use tidegate_core::rescan::{self, LastScan, RescanDecision};
use tidegate_providers::ScanRequest;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::vulnerabilities::{self, ScanKey};
use crate::{observe, policy};

/// The condition type.
pub const CONDITION: &str = "VulnerableInProduction";
/// Findings kept per list in the status.
const SHOWN: usize = 20;

/// Rescans `production` when due, starts the Release that fixes what it finds, and records the
/// result in `status`. Returns what changed for people (for an Event), if anything.
pub async fn run(
    ctx: &Context,
    policy: &ImagePolicy,
    status: &mut ImagePolicyStatus,
    production: Option<&Digest>,
    now: jiff::Timestamp,
) -> Result<Option<String>> {
    let Some(interval) = vulnerabilities::rescan_interval(policy)? else {
        status.production_scan = None;
        return Ok(None);
    };
    // Only a production digest the policy's status already records: the Release a finding
    // starts rebuilds from `status.productionDigest`, which must name this digest by then.
    let recorded = policy.status.as_ref().and_then(|s| s.production_digest.as_deref());
    let Some(digest) = production.filter(|d| recorded == Some(d.as_str())) else { return Ok(None) };
    let kind = vulnerabilities::rescan_scanner(policy);
    let scanner = ctx.scanners.get(kind).map_err(Error::Invalid)?;
    let last = status.production_scan.as_ref().map(|s| LastScan {
        digest: s.digest.clone(),
        at: s.scanned_at.0,
        database: s.database.clone(),
    });
    let database = scanner.database();
    let Some(why) = rescan::due(last.as_ref(), digest, database.as_deref(), interval, now) else { return Ok(None) };
    let namespace = policy.namespace().unwrap_or_default();
    let image = observe::repository(policy)?.pinned(digest);
    let workloads = vulnerabilities::workload_namespaces(policy, true, &namespace)?;
    let request = ScanRequest {
        namespace: &namespace,
        image: &image,
        digest,
        workload_namespaces: &workloads,
        max_age: vulnerabilities::max_age(policy)?,
        now,
        deadline: None,
    };
    tracing::info!(%digest, why, "rescanning production");
    let key = ScanKey::new(kind, &namespace, digest);
    let Some(report) = ctx.scans.scan(key, scanner.as_ref(), &request, interval).await? else {
        tracing::info!(%digest, "no scan result of production yet");
        return Ok(None);
    };
    let decision =
        rescan::decide(&policy.name_any(), digest, &report.findings, &vulnerabilities::gate_policy(policy, None), now);
    if let Some(fix) = &decision.release {
        start(ctx, policy, digest, fix, &decision).await?;
    }
    let before = status.production_scan.as_ref().map(ids);
    let scan = ProductionScan {
        digest: digest.to_string(),
        scanned_at: Time(now),
        database: report.database.or(database),
        fixable: decision.fixable.iter().take(SHOWN).map(top).collect(),
        unfixed: decision.unfixed.iter().take(SHOWN).map(top).collect(),
        release: decision.release.as_ref().map(|r| r.name.clone()),
    };
    let changed = before.as_ref() != Some(&ids(&scan)) && !(scan.fixable.is_empty() && scan.unfixed.is_empty());
    status.production_scan = Some(scan);
    Ok(changed.then(|| rescan::describe(&decision)))
}

/// The Release that rebuilds production to fix `decision`'s fixable findings.
async fn start(
    ctx: &Context,
    policy: &ImagePolicy,
    digest: &Digest,
    fix: &rescan::FixRelease,
    decision: &RescanDecision,
) -> Result<()> {
    let fixed: Vec<String> = decision
        .fixable
        .iter()
        .take(5)
        .map(|f| {
            format!(
                "{} in {} {} (fixed in {})",
                f.id,
                f.package,
                f.installed_version,
                f.fixed_version.as_deref().unwrap_or("?")
            )
        })
        .collect();
    let message = format!("the rescan of production {digest} found {}", fixed.join(", "));
    let reason = ReleaseReason {
        kind: ReasonKind::VulnerabilitiesFound,
        base_image: None,
        vulnerabilities: Some(fix.ids.iter().take(256).cloned().collect()),
        message: Some(message.chars().take(1000).collect()),
    };
    policy::start_release(ctx, policy, fix.name.clone(), reason).await.map(drop)
}

/// The condition the last rescan asks for; `None` when rescans are off or nothing was scanned.
pub fn condition(status: &ImagePolicyStatus) -> Option<Wanted> {
    let scan = status.production_scan.as_ref()?;
    let decision = RescanDecision {
        fixable: scan.fixable.iter().map(finding).collect(),
        unfixed: scan.unfixed.iter().map(finding).collect(),
        release: None,
    };
    let mut message = rescan::describe(&decision);
    if let Some(release) = &scan.release {
        message.push_str(&format!("; release {release} fixes them"));
    }
    message.push_str(&format!(" (scanned {} at {})", scan.digest, scan.scanned_at.0));
    let (vulnerable, reason) = match (&scan.release, scan.fixable.is_empty(), scan.unfixed.is_empty()) {
        (_, true, true) => (false, "NoBlockingFindings"),
        (Some(_), false, _) => (true, "FixStarted"),
        (None, false, _) => (true, "FixableFindings"),
        (_, true, false) => (true, "NoFixAvailable"),
    };
    Some(Wanted::new(CONDITION, vulnerable, reason, message))
}

fn ids(scan: &ProductionScan) -> (String, Vec<String>, Vec<String>) {
    let list = |f: &[TopFinding]| f.iter().map(|f| f.id.clone()).collect();
    (scan.digest.clone(), list(&scan.fixable), list(&scan.unfixed))
}

fn top(f: &Finding) -> TopFinding {
    TopFinding {
        id: f.id.clone(),
        severity: format!("{:?}", f.severity).to_uppercase(),
        package: f.package.clone(),
        installed_version: f.installed_version.clone(),
        fixed_version: f.fixed_version.clone(),
        blocking: true,
    }
}

fn finding(f: &TopFinding) -> Finding {
    Finding {
        package: f.package.clone(),
        installed_version: f.installed_version.clone(),
        fixed_version: f.fixed_version.clone(),
        ..Finding::new(f.id.clone(), tidegate_providers::report::severity(&f.severity), f.fixed_version.is_some())
    }
}
