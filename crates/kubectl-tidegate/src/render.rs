//! Pure text formatting: digests, ages, the `status` tree, the `history` listing and the
//! one-line messages of the changing commands. Nothing here does I/O except [`use_colour`].

use std::fmt::Write as _;
use std::io::IsTerminal;

use k8s_openapi::jiff::Timestamp;

/// Whether to colour standard output: only on a terminal, and never with `NO_COLOR` set or
/// `TERM=dumb`.
pub fn use_colour() -> bool {
    std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

/// Now, in Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Collapses a message onto one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An error and its causes on one line, `: `-separated, leaving out a cause whose text the line
/// already holds (many errors repeat their source in their own message).
pub fn error_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = one_line(&cause.to_string());
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// `sha256:` and the first 12 hex characters; anything else unchanged.
pub fn short_digest(digest: &str) -> String {
    match digest.strip_prefix("sha256:") {
        Some(hex) if hex.len() > 12 && hex.is_char_boundary(12) => format!("sha256:{}", &hex[..12]),
        _ => digest.to_string(),
    }
}

/// An age the way kubectl shows one: `45s`, `3m20s`, `25m`, `5h10m`, `20h`, `3d4h`, `40d`, `2y30d`.
pub fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3_600, s / 86_400);
    match () {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 => match s % 60 {
            0 => format!("{m}m"),
            rest => format!("{m}m{rest}s"),
        },
        _ if h < 3 => format!("{m}m"),
        _ if h < 8 => match m % 60 {
            0 => format!("{h}h"),
            rest => format!("{h}h{rest}m"),
        },
        _ if h < 48 => format!("{h}h"),
        _ if h < 192 => match h % 24 {
            0 => format!("{d}d"),
            rest => format!("{d}d{rest}h"),
        },
        _ if d < 365 * 2 => format!("{d}d"),
        _ if d < 365 * 8 => match d % 365 {
            0 => format!("{}y", d / 365),
            rest => format!("{}y{rest}d", d / 365),
        },
        _ => format!("{}y", d / 365),
    }
}

/// The age of a moment, or `-` when unknown.
pub fn age_since(then: Option<i64>, now: i64) -> String {
    then.map_or_else(|| "-".to_string(), |t| age(now - t))
}

/// A moment as RFC 3339 (UTC, seconds).
pub fn timestamp(seconds: i64) -> String {
    Timestamp::from_second(seconds).map_or_else(|_| seconds.to_string(), |t| t.to_string())
}

/// Pads cells into columns, two spaces apart. A row's last cell is never padded and does not
/// widen its column, so rows of different lengths stay aligned on the columns they share.
/// Column 1 (the phase) is coloured when `colour` is set.
pub fn align(rows: &[Vec<String>], colour: bool) -> Vec<String> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let last = i + 1 == row.len();
                let painted = if i == 1 && colour { paint_phase(cell) } else { cell.clone() };
                line.push_str(&painted);
                if !last {
                    line.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
                }
            }
            line.trim_end().to_string()
        })
        .collect()
}

/// A phase in the colour of its meaning: green done well, red stopped, yellow waiting for
/// someone, cyan moving.
pub fn paint_phase(phase: &str) -> String {
    let code = match phase {
        "Verified" | "Succeeded" => "32",
        "Rejected" | "Failed" | "RolledBack" | "Expired" => "31",
        "AwaitingApproval" | "Pending" => "33",
        "Superseded" | "-" => "2",
        _ => "36",
    };
    format!("\x1b[{code}m{phase}\x1b[0m")
}

/// One ImagePolicy as `status` shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyView {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `spec.image`.
    pub image: String,
    /// `status.productionDigest`.
    pub production: Option<String>,
    /// `status.stagingDigest`.
    pub staging: Option<String>,
    /// What the last rescan of production found (the `VulnerableInProduction` condition's
    /// message), when rescans are on.
    pub rescan: Option<String>,
    /// Its Releases, newest first, each with its Promotions.
    pub releases: Vec<ReleaseView>,
}

/// One Release row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReleaseView {
    /// Name.
    pub name: String,
    /// `status.phase`, `-` for a Release that names a missing one.
    pub phase: String,
    /// `status.digest`.
    pub digest: Option<String>,
    /// `status.scan.blocking`, when scanned.
    pub blocking: Option<i32>,
    /// `status.scan.blockingIds`: what blocks.
    pub blocking_ids: Vec<String>,
    /// `spec.reason.type`.
    pub reason: String,
    /// Creation, Unix seconds.
    pub created: Option<i64>,
    /// Its Promotions, newest first.
    pub promotions: Vec<PromotionView>,
}

/// One Promotion row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromotionView {
    /// Name.
    pub name: String,
    /// `status.phase`.
    pub phase: String,
    /// `spec.digest`.
    pub digest: String,
    /// `status.approvedBy`, or else the names in the annotation.
    pub approvers: Vec<String>,
    /// `tidegate.dev/rejected-by`.
    pub rejected_by: Option<String>,
    /// `tidegate.dev/rejection-reason`.
    pub rejection_reason: Option<String>,
    /// `tidegate.dev/rollback-requested-by`.
    pub rollback_requested_by: Option<String>,
    /// Creation (for `status`) or last change (for `history`), Unix seconds.
    pub time: Option<i64>,
    /// `spec.release`.
    pub release: String,
}

impl PromotionView {
    /// `approved by alice,bob; rejected by carol (reason); rollback requested by dave`.
    pub fn people(&self) -> String {
        let mut parts = vec![match self.approvers.as_slice() {
            [] => "no approvals".to_string(),
            names => format!("approved by {}", names.join(",")),
        }];
        if let Some(by) = &self.rejected_by {
            parts.push(match &self.rejection_reason {
                Some(reason) => format!("rejected by {by}: {}", one_line(reason)),
                None => format!("rejected by {by}"),
            });
        }
        if let Some(by) = &self.rollback_requested_by {
            parts.push(format!("rollback requested by {by}"));
        }
        parts.join("; ")
    }
}

fn or_none(value: Option<&String>) -> String {
    value.cloned().unwrap_or_else(|| "(none)".to_string())
}

/// The `status` tree of every given policy.
pub fn status(policies: &[PolicyView], now: i64, colour: bool) -> String {
    let mut out = String::new();
    for (i, policy) in policies.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "ImagePolicy {}/{}", policy.namespace, policy.name);
        let _ = writeln!(out, "  image       {}", policy.image);
        let _ = writeln!(out, "  production  {}", or_none(policy.production.as_ref()));
        let _ = writeln!(out, "  staging     {}", or_none(policy.staging.as_ref()));
        if let Some(rescan) = &policy.rescan {
            let _ = writeln!(out, "  rescan      {}", one_line(rescan));
        }
        if policy.releases.is_empty() {
            let _ = writeln!(out, "  releases    (none)");
            continue;
        }
        let _ = writeln!(out, "  releases");
        let mut rows = Vec::new();
        for (r, release) in policy.releases.iter().enumerate() {
            let last_release = r + 1 == policy.releases.len();
            let (branch, trunk) = if last_release { ("└─ ", "   ") } else { ("├─ ", "│  ") };
            rows.push(vec![
                format!("  {branch}{}", release.name),
                release.phase.clone(),
                release.digest.as_deref().map_or_else(|| "-".to_string(), short_digest),
                age_since(release.created, now),
                release.blocking.map_or_else(|| "-".to_string(), |n| blocking_cell(n, &release.blocking_ids)),
                release.reason.clone(),
            ]);
            for (p, promotion) in release.promotions.iter().enumerate() {
                let twig = if p + 1 == release.promotions.len() { "└─ " } else { "├─ " };
                rows.push(vec![
                    format!("  {trunk}{twig}{}", promotion.name),
                    promotion.phase.clone(),
                    short_digest(&promotion.digest),
                    age_since(promotion.time, now),
                    promotion.people(),
                ]);
            }
        }
        for line in align(&rows, colour) {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

/// A digest that ran in production.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryEntry {
    /// The digest.
    pub digest: String,
    /// The Promotion that deployed it.
    pub promotion: Option<String>,
    /// When, Unix seconds.
    pub deployed_at: Option<i64>,
}

/// What `history` shows for one policy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryView {
    /// Namespace.
    pub namespace: String,
    /// Policy name.
    pub name: String,
    /// `spec.image`.
    pub image: String,
    /// What runs now.
    pub current: Option<HistoryEntry>,
    /// `status.productionHistory`, newest first.
    pub history: Vec<HistoryEntry>,
    /// Promotions that ended Succeeded, RolledBack, Rejected or Expired, newest first; `time`
    /// is their last change.
    pub finished: Vec<PromotionView>,
}

fn history_row(label: &str, entry: &HistoryEntry, now: i64) -> Vec<String> {
    vec![
        format!("  {label}"),
        entry.digest.clone(),
        entry.promotion.as_ref().map_or_else(|| "-".to_string(), |p| format!("promotion {p}")),
        entry.deployed_at.map_or_else(
            || "deployed at an unknown time".to_string(),
            |t| format!("deployed {} ({} ago)", timestamp(t), age(now - t)),
        ),
    ]
}

/// The `history` listing of one policy.
pub fn history(view: &HistoryView, now: i64, colour: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "ImagePolicy {}/{}  {}", view.namespace, view.name, view.image);
    let _ = writeln!(out, "production, newest first");
    let mut rows = Vec::new();
    if let Some(current) = &view.current {
        rows.push(history_row("now", current, now));
    }
    for (i, entry) in view.history.iter().enumerate() {
        rows.push(history_row(if i == 0 { "before" } else { "" }, entry, now));
    }
    if rows.is_empty() {
        let _ = writeln!(out, "  (nothing recorded)");
    }
    // The label column is not a phase: never coloured.
    for line in align(&rows, false) {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "finished promotions, newest first");
    if view.finished.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    let rows: Vec<Vec<String>> = view
        .finished
        .iter()
        .map(|p| {
            vec![
                format!("  {}", p.name),
                p.phase.clone(),
                short_digest(&p.digest),
                format!("release {}", p.release),
                age_since(p.time, now),
                p.people(),
            ]
        })
        .collect();
    for line in align(&rows, colour) {
        let _ = writeln!(out, "{line}");
    }
    out
}

/// `promotion shop/x approved by alice (1 of 2 approvals)`, or `already approved by …`.
pub fn approval(qualified: &str, user: &str, approvers: usize, required: Option<i32>, already: bool) -> String {
    let count = match required {
        Some(required) => format!("{approvers} of {required} approval{}", if required == 1 { "" } else { "s" }),
        None => format!("{approvers} approval{} recorded", if approvers == 1 { "" } else { "s" }),
    };
    let verb = if already { "already approved" } else { "approved" };
    format!("promotion {qualified} {verb} by {user} ({count})\n")
}

/// One production target, as a summary lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetView {
    /// The workload's name in the policy.
    pub workload: String,
    /// `production.kubernetes.kind`, `-` when the target is not a Kubernetes object.
    pub kind: String,
    /// `namespace/name` of the production object, or a note.
    pub object: String,
}

/// The production targets a command changes, and where the list comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Targets {
    /// The Promotion's `status.rules.workloads`, frozen when it opened: what the controller uses.
    Frozen(Vec<TargetView>),
    /// The ImagePolicy's `spec.workloads` (those the Promotion's `spec.workloads` names): the
    /// controller freezes these when it first sees the Promotion.
    Policy(Vec<TargetView>),
    /// Neither the frozen rules nor the policy could be read.
    #[default]
    Unknown,
}

/// What a summary says about the Release behind a Promotion.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReleaseFacts {
    /// `spec.release` of the Promotion.
    pub name: String,
    /// `status.phase`; `None` when the Release is missing or unreadable.
    pub phase: Option<String>,
    /// `status.scan`.
    pub scan: Option<tidegate_api::release::ScanSummary>,
    /// How many staging tests passed.
    pub tests_passed: usize,
    /// The names of the staging tests that failed.
    pub tests_failed: Vec<String>,
}

/// What `approve` shows before it writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApprovalSummary {
    /// `namespace/name` of the Promotion.
    pub promotion: String,
    /// Its phase.
    pub phase: String,
    /// Who approves.
    pub user: String,
    /// `spec.digest`.
    pub digest: String,
    /// `<image>@<digest>`, when the repository is known.
    pub image: Option<String>,
    /// `spec.policy`.
    pub policy: String,
    /// The Release.
    pub release: ReleaseFacts,
    /// Names in `tidegate.dev/approved-by`, in order.
    pub approvers: Vec<String>,
    /// `status.approvedBy`: approvals the controller accepted.
    pub accepted: Vec<String>,
    /// Approvals needed, when known.
    pub required: Option<i32>,
    /// How long each approval counts, when known.
    pub valid_for: Option<String>,
    /// The production targets.
    pub targets: Targets,
    /// What the approver must not miss.
    pub warnings: Vec<String>,
}

/// What `rollback` shows before it writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RollbackSummary {
    /// `namespace/name` of the Promotion.
    pub promotion: String,
    /// Its phase.
    pub phase: String,
    /// Who asks.
    pub user: String,
    /// `spec.policy`.
    pub policy: String,
    /// The repository, when known.
    pub image: Option<String>,
    /// The Promotion's `spec.digest`.
    pub promotion_digest: String,
    /// The policy's `status.productionDigest`, when known.
    pub production: Option<String>,
    /// The Promotion's `status.previousDigest`: where production goes back to.
    pub back_to: Option<String>,
    /// The production targets.
    pub targets: Targets,
    /// What the requester must not miss.
    pub warnings: Vec<String>,
}

fn field(out: &mut String, label: &str, value: &str) {
    let _ = writeln!(out, "  {label:<10}  {value}");
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn targets_lines(out: &mut String, targets: &Targets) {
    let (list, source) = match targets {
        Targets::Frozen(list) => (list, "frozen when the Promotion opened"),
        Targets::Policy(list) => (list, "from the ImagePolicy; the Promotion's rules are not frozen yet"),
        Targets::Unknown => return field(out, "production", "targets unknown"),
    };
    if list.is_empty() {
        return field(out, "production", &format!("no targets ({source})"));
    }
    field(out, "production", &format!("{} ({source}):", plural(list.len(), "target", "targets")));
    let rows: Vec<Vec<String>> =
        list.iter().map(|t| vec![format!("    {}", t.workload), t.kind.clone(), t.object.clone()]).collect();
    for line in align(&rows, false) {
        let _ = writeln!(out, "{line}");
    }
}

fn warnings_lines(out: &mut String, warnings: &[String]) {
    for warning in warnings {
        let _ = writeln!(out, "WARNING: {}", one_line(warning));
    }
}

/// `2 blocking (CVE-1, CVE-2)`: the count, and the first ids of what blocks.
fn blocking_cell(count: i32, ids: &[String]) -> String {
    match ids {
        [] => format!("{count} blocking"),
        [a] => format!("{count} blocking ({a})"),
        [a, b] => format!("{count} blocking ({a}, {b})"),
        [a, b, rest @ ..] => format!("{count} blocking ({a}, {b} and {} more)", rest.len()),
    }
}

/// `0 blocking; critical 0, high 1, medium 3, low 2; trivyReport, finished …`.
pub fn scan_line(scan: &tidegate_api::release::ScanSummary) -> String {
    let mut line = format!("{} blocking", scan.blocking);
    if !scan.blocking_ids.is_empty() {
        let shown: Vec<&str> = scan.blocking_ids.iter().take(5).map(String::as_str).collect();
        line.push_str(&format!(" ({}", shown.join(", ")));
        if scan.blocking_ids.len() > shown.len() {
            line.push_str(&format!(" and {} more", scan.blocking_ids.len() - shown.len()));
        }
        line.push(')');
    }
    line.push_str(&format!(
        "; critical {}, high {}, medium {}, low {}",
        scan.critical, scan.high, scan.medium, scan.low
    ));
    let mut by = Vec::new();
    if let Some(scanner) = scan.scanner.as_deref().filter(|s| !s.is_empty()) {
        by.push(scanner.to_string());
    }
    if let Some(finished) = &scan.finished_at {
        by.push(format!("finished {}", timestamp(finished.0.as_second())));
    }
    if !by.is_empty() {
        line.push_str(&format!("; {}", by.join(", ")));
    }
    line
}

/// The summary `approve` prints before it asks.
pub fn approval_summary(s: &ApprovalSummary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "About to approve promotion {} as {}", s.promotion, s.user);
    field(&mut out, "phase", &s.phase);
    field(&mut out, "digest", &s.digest);
    field(&mut out, "image", s.image.as_deref().unwrap_or("unknown"));
    field(&mut out, "policy", &s.policy);
    let release = &s.release;
    match &release.phase {
        Some(phase) => {
            field(&mut out, "release", &format!("{}, {phase}", release.name));
            field(&mut out, "scan", &release.scan.as_ref().map_or_else(|| "none recorded".to_string(), scan_line));
            let tests = match (release.tests_passed, release.tests_failed.as_slice()) {
                (0, []) => "none recorded".to_string(),
                (passed, []) => format!("{passed} passed"),
                (passed, failed) => format!("{passed} passed, {} failed ({})", failed.len(), failed.join(", ")),
            };
            field(&mut out, "tests", &tests);
        }
        None => {
            field(&mut out, "release", &format!("{}, unknown", release.name));
            field(&mut out, "scan", "unknown");
        }
    }
    let so_far = match s.approvers.as_slice() {
        [] => "none so far".to_string(),
        names => format!("{} so far ({})", names.len(), names.join(",")),
    };
    let mut approvals = match s.required {
        Some(required) => format!("{so_far}, {required} required; yours makes {}", s.approvers.len() + 1),
        None => format!("{so_far}; yours makes {}; the number required is unknown", s.approvers.len() + 1),
    };
    if let Some(valid_for) = &s.valid_for {
        approvals.push_str(&format!("; each counts for {valid_for}"));
    }
    field(&mut out, "approvals", &approvals);
    if !s.accepted.is_empty() && s.accepted != s.approvers {
        field(&mut out, "accepted", &format!("{} (by the controller)", s.accepted.join(",")));
    }
    targets_lines(&mut out, &s.targets);
    warnings_lines(&mut out, &s.warnings);
    out
}

/// The summary `rollback` prints before it asks.
pub fn rollback_summary(s: &RollbackSummary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "About to request a rollback of promotion {} as {}", s.promotion, s.user);
    field(&mut out, "phase", &s.phase);
    field(&mut out, "policy", &s.policy);
    field(&mut out, "image", s.image.as_deref().unwrap_or("unknown"));
    match &s.production {
        Some(production) if *production == s.promotion_digest => {
            field(&mut out, "current", &format!("{production} (production now, from this Promotion)"));
        }
        Some(production) => {
            field(&mut out, "current", &format!("{production} (production now)"));
            field(&mut out, "promotion", &format!("{} (this Promotion's digest)", s.promotion_digest));
        }
        None => field(
            &mut out,
            "current",
            &format!(
                "{} (this Promotion's digest; the policy does not record what production runs)",
                s.promotion_digest
            ),
        ),
    }
    match &s.back_to {
        Some(back_to) => field(&mut out, "back to", &format!("{back_to} (what production ran before this Promotion)")),
        None => field(&mut out, "back to", "unknown"),
    }
    targets_lines(&mut out, &s.targets);
    warnings_lines(&mut out, &s.warnings);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:4c184c0d25773ebecb5b46cfb86c87aede83bf6fb921f9d21292fab3deb4aa26";
    const NOW: i64 = 1_800_000_000;

    #[test]
    fn digests_are_shortened_to_twelve_hex() {
        assert_eq!(short_digest(DIGEST), "sha256:4c184c0d2577");
        assert_eq!(short_digest("sha256:abc"), "sha256:abc");
        assert_eq!(short_digest("latest"), "latest");
    }

    #[test]
    fn ages_read_like_kubectl() {
        for (seconds, text) in [
            (-5, "0s"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (200, "3m20s"),
            (1_500, "25m"),
            (3 * 3_600 + 600, "3h10m"),
            (5 * 3_600, "5h"),
            (20 * 3_600, "20h"),
            (3 * 86_400 + 4 * 3_600, "3d4h"),
            (40 * 86_400, "40d"),
            (3 * 365 * 86_400 + 86_400, "3y1d"),
            (9 * 365 * 86_400, "9y"),
        ] {
            assert_eq!(age(seconds), text, "{seconds}s");
        }
        assert_eq!(age_since(None, NOW), "-");
        assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn columns_align_and_last_cells_do_not_widen() {
        let rows = vec![
            vec!["a".to_string(), "Verified".to_string(), "x".to_string()],
            vec!["longer".to_string(), "P".to_string(), "a very long last cell".to_string()],
            vec!["b".to_string(), "Pending".to_string()],
        ];
        assert_eq!(
            align(&rows, false),
            vec!["a       Verified  x", "longer  P         a very long last cell", "b       Pending"]
        );
        let painted = align(&rows, true);
        assert!(painted[0].contains("\x1b[32mVerified\x1b[0m  x"), "{:?}", painted[0]);
    }

    #[test]
    fn error_line_skips_repeated_causes() {
        let inner = std::io::Error::other("No such file");
        let error = anyhow::Error::new(inner).context("failed to read x: No such file").context("cannot connect");
        assert_eq!(error_line(&error), "cannot connect: failed to read x: No such file");
    }

    #[test]
    fn one_line_collapses_whitespace() {
        assert_eq!(one_line("denied:\n  alice\tmay not"), "denied: alice may not");
    }

    fn view() -> PolicyView {
        PolicyView {
            namespace: "shop".into(),
            name: "shop-app".into(),
            image: "registry.example.com/shop/app".into(),
            production: Some(DIGEST.into()),
            staging: None,
            rescan: None,
            releases: vec![
                ReleaseView {
                    name: "shop-app-base-7bde398e02aa".into(),
                    phase: "Verified".into(),
                    digest: Some(DIGEST.into()),
                    blocking: Some(0),
                    blocking_ids: vec![],
                    reason: "BaseImageUpdated".into(),
                    created: Some(NOW - 300),
                    promotions: vec![PromotionView {
                        name: "shop-app-base-7bde398e02aa".into(),
                        phase: "AwaitingApproval".into(),
                        digest: DIGEST.into(),
                        approvers: vec!["alice".into()],
                        time: Some(NOW - 240),
                        ..Default::default()
                    }],
                },
                ReleaseView {
                    name: "shop-app-manual-1".into(),
                    phase: "Rejected".into(),
                    digest: None,
                    blocking: Some(3),
                    blocking_ids: vec![],
                    reason: "Manual".into(),
                    created: Some(NOW - 7_200),
                    promotions: vec![],
                },
            ],
        }
    }

    #[test]
    fn status_is_a_tree_with_aligned_columns() {
        let text = status(&[view()], NOW, false);
        let expected = "\
ImagePolicy shop/shop-app
  image       registry.example.com/shop/app
  production  sha256:4c184c0d25773ebecb5b46cfb86c87aede83bf6fb921f9d21292fab3deb4aa26
  staging     (none)
  releases
  ├─ shop-app-base-7bde398e02aa     Verified          sha256:4c184c0d2577  5m    0 blocking  BaseImageUpdated
  │  └─ shop-app-base-7bde398e02aa  AwaitingApproval  sha256:4c184c0d2577  4m    approved by alice
  └─ shop-app-manual-1              Rejected          -                    120m  3 blocking  Manual
";
        assert_eq!(text, expected, "\n{text}");
        assert!(!text.contains('\x1b'), "no colour when not asked");
        assert!(status(&[view()], NOW, true).contains("\x1b[33mAwaitingApproval\x1b[0m"));
    }

    #[test]
    fn status_shows_what_the_rescan_of_production_found() {
        let mut rescanned = view();
        rescanned.rescan = Some(
            "1 blocking finding(s) with no fix yet: CVE-2024-0727 (openssl 3.1.0-r0) (nothing to rebuild for until a fix \
             is published)"
                .into(),
        );
        let text = status(&[rescanned], NOW, false);
        assert!(
            text.contains("  staging     (none)\n  rescan      1 blocking finding(s) with no fix yet: CVE-2024-0727"),
            "{text}"
        );
        assert!(!status(&[view()], NOW, false).contains("rescan"), "no line when rescans are off");
    }

    #[test]
    fn status_of_a_policy_without_releases() {
        let mut empty = view();
        empty.releases.clear();
        let text = status(&[empty.clone(), empty], NOW, false);
        assert!(text.contains("  releases    (none)\n\nImagePolicy shop/shop-app\n"), "{text}");
    }

    #[test]
    fn people_lists_approvals_rejection_and_rollback() {
        let mut p = PromotionView::default();
        assert_eq!(p.people(), "no approvals");
        p.approvers = vec!["alice".into(), "bob".into()];
        p.rejected_by = Some("carol".into());
        p.rejection_reason = Some("breaks\ncheckout".into());
        p.rollback_requested_by = Some("dave".into());
        assert_eq!(p.people(), "approved by alice,bob; rejected by carol: breaks checkout; rollback requested by dave");
    }

    #[test]
    fn history_lists_production_then_finished_promotions() {
        let view = HistoryView {
            namespace: "shop".into(),
            name: "shop-app".into(),
            image: "registry.example.com/shop/app".into(),
            current: Some(HistoryEntry {
                digest: "sha256:cccc".into(),
                promotion: Some("p3".into()),
                deployed_at: Some(NOW - 3_600),
            }),
            history: vec![
                HistoryEntry {
                    digest: "sha256:bbbb".into(),
                    promotion: Some("p2".into()),
                    deployed_at: Some(NOW - 86_400),
                },
                HistoryEntry { digest: "sha256:aaaa".into(), promotion: None, deployed_at: Some(NOW - 2 * 86_400) },
            ],
            finished: vec![
                PromotionView {
                    name: "p3".into(),
                    phase: "Succeeded".into(),
                    digest: DIGEST.into(),
                    release: "r3".into(),
                    approvers: vec!["alice".into(), "bob".into()],
                    time: Some(NOW - 3_000),
                    ..Default::default()
                },
                PromotionView {
                    name: "p1".into(),
                    phase: "Rejected".into(),
                    digest: DIGEST.into(),
                    release: "r1".into(),
                    rejected_by: Some("carol".into()),
                    time: Some(NOW - 90_000),
                    ..Default::default()
                },
            ],
        };
        let text = history(&view, NOW, false);
        let expected = "\
ImagePolicy shop/shop-app  registry.example.com/shop/app
production, newest first
  now     sha256:cccc  promotion p3  deployed 2027-01-15T07:00:00Z (60m ago)
  before  sha256:bbbb  promotion p2  deployed 2027-01-14T08:00:00Z (24h ago)
          sha256:aaaa  -             deployed 2027-01-13T08:00:00Z (2d ago)
finished promotions, newest first
  p3  Succeeded  sha256:4c184c0d2577  release r3  50m  approved by alice,bob
  p1  Rejected   sha256:4c184c0d2577  release r1  25h  no approvals; rejected by carol
";
        assert_eq!(text, expected, "\n{text}");
        let empty = history(&HistoryView { name: "x".into(), ..Default::default() }, NOW, false);
        assert!(empty.contains("(nothing recorded)") && empty.contains("  (none)"), "{empty}");
    }

    #[test]
    fn approval_messages_count_against_the_requirement() {
        assert_eq!(
            approval("shop/x", "alice", 1, Some(2), false),
            "promotion shop/x approved by alice (1 of 2 approvals)\n"
        );
        assert_eq!(
            approval("shop/x", "bob", 2, Some(1), true),
            "promotion shop/x already approved by bob (2 of 1 approval)\n"
        );
        assert_eq!(
            approval("shop/x", "bob", 2, None, false),
            "promotion shop/x approved by bob (2 approvals recorded)\n"
        );
    }
}
