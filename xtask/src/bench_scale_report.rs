//! The numbers and the Markdown of `cargo xtask bench scale`: percentiles and medians, one
//! labelled section per run of the bench, and `docs/benchmarks.md` put together from the sections
//! of every label so that "before" and "after" sit side by side.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use crate::bench_scale_peer::{self as peer, PeerRun, PeerSummary};

/// What one run at one N measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct RunResult {
    /// ImagePolicies (each with a staging and a production Deployment).
    pub(crate) policies: usize,
    /// Base image push → every Release Verified and every Promotion AwaitingApproval.
    pub(crate) to_awaiting: Duration,
    /// Approval written → the production Deployment's pod template image changed, per Promotion.
    pub(crate) to_production: Vec<Duration>,
    /// Approval written → the Promotion left AwaitingApproval, per Promotion.
    pub(crate) to_promoting: Vec<Duration>,
    /// Controller VmRSS and VmHWM at the end, KiB.
    pub(crate) rss_kib: u64,
    pub(crate) hwm_kib: u64,
    /// Controller requests from the push until every Promotion Succeeded.
    pub(crate) requests: u64,
    /// Of them, by `(verb, resource)`.
    pub(crate) by_verb_resource: BTreeMap<(String, String), u64>,
    /// Idle: controller requests, status writes, other writes (Lease renewals apart), Lease
    /// writes, over `idle_seconds`.
    pub(crate) idle_requests: u64,
    pub(crate) idle_status_writes: u64,
    pub(crate) idle_other_writes: u64,
    pub(crate) idle_lease_writes: u64,
    pub(crate) idle_seconds: u64,
    /// Idle requests by `(verb, resource)`.
    pub(crate) idle_by_verb_resource: BTreeMap<(String, String), u64>,
    /// Registry requests from the push until the end of the idle window: by the controller, by
    /// Trivy (which the controller runs).
    pub(crate) registry_controller: u64,
    pub(crate) registry_trivy: u64,
    /// Registry requests during the idle window (both).
    pub(crate) registry_idle: u64,
    /// The controller's registry requests by `(method, kind)`.
    pub(crate) registry_by_kind: BTreeMap<(String, String), u64>,
    /// The machine's 1-minute load average when the base was pushed (others share the machine).
    pub(crate) load_at_push: Option<f64>,
    /// The peer measured after Tidegate on the same control plane (`--peer`).
    pub(crate) peer: Option<PeerRun>,
}

impl RunResult {
    pub(crate) fn requests_per_policy(&self) -> f64 {
        self.requests as f64 / self.policies.max(1) as f64
    }

    pub(crate) fn idle_per_minute(&self) -> f64 {
        self.idle_requests as f64 * 60.0 / self.idle_seconds.max(1) as f64
    }
}

/// The `p`-th percentile (0 < p ≤ 100) by nearest rank: the smallest sample with at least p % of
/// the samples at or below it. `None` without samples.
pub(crate) fn percentile(samples: &[Duration], p: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The median of numbers (the mean of the two middle ones for an even count); 0 for none.
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The medians over the runs of one N: what a report row shows, and what is kept as data in the
/// section so that other labels' rows can be shown beside it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Summary {
    pub(crate) policies: usize,
    pub(crate) runs: usize,
    pub(crate) to_awaiting_s: f64,
    pub(crate) production_p50_s: f64,
    pub(crate) production_p99_s: f64,
    pub(crate) promoting_p50_s: f64,
    pub(crate) promoting_p99_s: f64,
    pub(crate) rss_mib: f64,
    pub(crate) hwm_mib: f64,
    pub(crate) requests_per_policy: f64,
    pub(crate) idle_per_minute: f64,
    pub(crate) idle_status_writes: f64,
    pub(crate) idle_other_writes: f64,
    pub(crate) registry_requests: f64,
    /// The peer's medians, when the runs measured one.
    pub(crate) peer: Option<PeerSummary>,
}

const FIELDS: [&str; 13] = [
    "to_awaiting_s",
    "production_p50_s",
    "production_p99_s",
    "promoting_p50_s",
    "promoting_p99_s",
    "rss_mib",
    "hwm_mib",
    "requests_per_policy",
    "idle_per_minute",
    "idle_status_writes",
    "idle_other_writes",
    "registry_requests",
    "runs",
];

impl Summary {
    /// Medians over `runs` (all of one N; at least one).
    pub(crate) fn of(runs: &[RunResult]) -> Self {
        // Rounded as the section's data keeps them, so both tables show the same digits.
        let m =
            |f: &dyn Fn(&RunResult) -> f64| (median(&runs.iter().map(f).collect::<Vec<_>>()) * 1000.0).round() / 1000.0;
        let secs = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64());
        Self {
            policies: runs.first().map_or(0, |r| r.policies),
            runs: runs.len(),
            to_awaiting_s: m(&|r| r.to_awaiting.as_secs_f64()),
            production_p50_s: m(&|r| secs(percentile(&r.to_production, 50.0))),
            production_p99_s: m(&|r| secs(percentile(&r.to_production, 99.0))),
            promoting_p50_s: m(&|r| secs(percentile(&r.to_promoting, 50.0))),
            promoting_p99_s: m(&|r| secs(percentile(&r.to_promoting, 99.0))),
            rss_mib: m(&|r| r.rss_kib as f64 / 1024.0),
            hwm_mib: m(&|r| r.hwm_kib as f64 / 1024.0),
            requests_per_policy: m(&|r| r.requests_per_policy()),
            idle_per_minute: m(&|r| r.idle_per_minute()),
            idle_status_writes: m(&|r| r.idle_status_writes as f64),
            idle_other_writes: m(&|r| r.idle_other_writes as f64),
            registry_requests: m(&|r| (r.registry_controller + r.registry_trivy) as f64),
            peer: PeerSummary::of(&runs.iter().filter_map(|r| r.peer.as_ref()).collect::<Vec<_>>()),
        }
    }

    fn values(&self) -> [f64; 13] {
        [
            self.to_awaiting_s,
            self.production_p50_s,
            self.production_p99_s,
            self.promoting_p50_s,
            self.promoting_p99_s,
            self.rss_mib,
            self.hwm_mib,
            self.requests_per_policy,
            self.idle_per_minute,
            self.idle_status_writes,
            self.idle_other_writes,
            self.registry_requests,
            self.runs as f64,
        ]
    }

    fn to_json(&self) -> Value {
        let mut object = serde_json::Map::new();
        object.insert("policies".into(), json!(self.policies));
        for (name, value) in FIELDS.iter().zip(self.values()) {
            object.insert((*name).into(), json!((value * 1000.0).round() / 1000.0));
        }
        if let Some(peer) = &self.peer {
            object.insert("peer".into(), peer.to_json());
        }
        Value::Object(object)
    }

    fn from_json(value: &Value) -> Option<Self> {
        let f = |name: &str| value[name].as_f64();
        Some(Self {
            policies: usize::try_from(value["policies"].as_u64()?).ok()?,
            runs: f("runs")? as usize,
            to_awaiting_s: f("to_awaiting_s")?,
            production_p50_s: f("production_p50_s")?,
            production_p99_s: f("production_p99_s")?,
            promoting_p50_s: f("promoting_p50_s")?,
            promoting_p99_s: f("promoting_p99_s")?,
            rss_mib: f("rss_mib")?,
            hwm_mib: f("hwm_mib")?,
            requests_per_policy: f("requests_per_policy")?,
            idle_per_minute: f("idle_per_minute")?,
            idle_status_writes: f("idle_status_writes")?,
            idle_other_writes: f("idle_other_writes")?,
            registry_requests: f("registry_requests")?,
            peer: PeerSummary::from_json(&value["peer"]),
        })
    }
}

/// The row of the side-by-side table for one label and N.
fn summary_row(label: &str, s: &Summary) -> String {
    format!(
        "| {} | {label} | {:.1} s | {} / {} s | {} / {} s | {:.0} / {:.0} MiB | {:.0} | {:.0} | {:.0} / {:.0} | {:.0} |",
        s.policies,
        s.to_awaiting_s,
        seconds(s.production_p50_s),
        seconds(s.production_p99_s),
        seconds(s.promoting_p50_s),
        seconds(s.promoting_p99_s),
        s.rss_mib,
        s.hwm_mib,
        s.requests_per_policy,
        s.idle_per_minute,
        s.idle_status_writes,
        s.idle_other_writes,
        s.registry_requests,
    )
}

fn seconds(s: f64) -> String {
    if s.is_finite() { format!("{s:.2}") } else { "–".into() }
}

const TABLE_HEAD: &str = "| N | label | push → all AwaitingApproval | approval → production write p50 / p99 | approval → Promotion leaves AwaitingApproval p50 / p99 | controller VmRSS / VmHWM | controller requests per policy | idle requests per minute | idle writes: status / other | registry requests |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|";

/// A labelled section: its heading, facts, tables, and the summaries as data (an HTML comment
/// that [`merge`] reads back for the side-by-side table).
pub(crate) struct Section<'a> {
    pub(crate) label: &'a str,
    pub(crate) date: &'a str,
    pub(crate) command: &'a str,
    pub(crate) facts: &'a [String],
    pub(crate) results: &'a [Vec<RunResult>],
}

pub(crate) fn render_section(section: &Section<'_>) -> String {
    let label = section.label;
    let summaries: Vec<Summary> = section.results.iter().filter(|r| !r.is_empty()).map(|r| Summary::of(r)).collect();
    let mut out = String::new();
    let _ = writeln!(out, "{}", begin_marker(label));
    let _ = writeln!(out, "## `{label}`\n");
    let _ = writeln!(out, "- date: {}", section.date);
    let _ = writeln!(out, "- command: `{}`", section.command);
    for fact in section.facts {
        let _ = writeln!(out, "- {fact}");
    }
    let _ = writeln!(out, "\nMedians over the runs of each N:\n");
    let _ = writeln!(out, "{TABLE_HEAD}");
    for s in &summaries {
        let _ = writeln!(out, "{}", summary_row(label, s));
    }
    write_comparison(&mut out, summaries.iter().map(|s| (label, s)));
    let _ = writeln!(out, "\nEvery run:\n");
    let _ = writeln!(
        out,
        "| N | run | load average at the push | push → all AwaitingApproval | approval → production p50 / p99 / max | controller requests (push → all Succeeded) | idle requests / Lease writes / status writes / other writes | registry requests: controller / Trivy / idle |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|");
    for runs in section.results {
        for (i, r) in runs.iter().enumerate() {
            let p = |q: f64| seconds(percentile(&r.to_production, q).map_or(f64::NAN, |d| d.as_secs_f64()));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.1} s | {} / {} / {} s | {} | {} / {} / {} / {} in {} s | {} / {} / {} |",
                r.policies,
                i + 1,
                r.load_at_push.map_or("–".into(), |l| format!("{l:.1}")),
                r.to_awaiting.as_secs_f64(),
                p(50.0),
                p(99.0),
                p(100.0),
                r.requests,
                r.idle_requests,
                r.idle_lease_writes,
                r.idle_status_writes,
                r.idle_other_writes,
                r.idle_seconds,
                r.registry_controller,
                r.registry_trivy,
                r.registry_idle,
            );
        }
    }
    let peers: Vec<String> = section
        .results
        .iter()
        .flat_map(|runs| runs.iter().enumerate())
        .filter_map(|(i, r)| r.peer.as_ref().map(|p| peer::run_row(r.policies, i + 1, p)))
        .collect();
    if !peers.is_empty() {
        let _ = writeln!(out, "\nThe peer, every run:\n\n{}", peer::RUNS_HEAD);
        for row in peers {
            let _ = writeln!(out, "{row}");
        }
    }
    // Requests by verb and resource, of the first run of each N, side by side.
    if let Some(largest) = section.results.iter().filter_map(|r| r.first()).max_by_key(|r| r.policies) {
        let firsts: Vec<&RunResult> = section.results.iter().filter_map(|r| r.first()).collect();
        for (title, columns, pick) in [
            (
                "Controller requests from the push until every Promotion Succeeded, by verb and resource (first run of each N; divide by N for per policy)",
                "| verb | resource |",
                (|r: &RunResult| &r.by_verb_resource) as fn(&RunResult) -> &BTreeMap<(String, String), u64>,
            ),
            (
                "Controller requests in the idle window, by verb and resource (first run of each N)",
                "| verb | resource |",
                |r: &RunResult| &r.idle_by_verb_resource,
            ),
            (
                "Controller registry requests from the push until the end of the idle window, by method and kind (first run of each N; Trivy's apart)",
                "| method | kind |",
                |r: &RunResult| &r.registry_by_kind,
            ),
        ] {
            let mut keys: Vec<&(String, String)> = firsts.iter().flat_map(|r| pick(r).keys()).collect();
            keys.sort();
            keys.dedup();
            keys.sort_by_key(|k| std::cmp::Reverse(pick(largest).get(*k).copied().unwrap_or(0)));
            let _ = writeln!(out, "\n{title}:\n");
            let heads: Vec<String> = firsts.iter().map(|r| format!("N={}", r.policies)).collect();
            let _ = writeln!(out, "{columns} {} |", heads.join(" | "));
            let _ = writeln!(out, "|---|---|{}", "---:|".repeat(firsts.len()));
            if keys.is_empty() {
                let _ = writeln!(out, "| – | – |{}", " 0 |".repeat(firsts.len()));
            }
            for key in keys {
                let cells: Vec<String> =
                    firsts.iter().map(|r| pick(r).get(key).copied().unwrap_or(0).to_string()).collect();
                let _ = writeln!(out, "| {} | {} | {} |", key.0, key.1, cells.join(" | "));
            }
        }
    }
    let data: Vec<Value> = summaries.iter().map(Summary::to_json).collect();
    let _ = writeln!(out, "\n<!-- bench-scale:data {} -->", Value::Array(data));
    let _ = writeln!(out, "{}", end_marker(label));
    out
}

/// The table that puts a peer beside Tidegate, for the summaries that measured one; nothing when
/// none did.
fn write_comparison<'a>(out: &mut String, summaries: impl Iterator<Item = (&'a str, &'a Summary)>) {
    let rows: Vec<String> = summaries.filter_map(|(label, s)| peer::comparison_row(label, s)).collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nBeside a peer (medians):\n\n{}", peer::COMPARISON_HEAD);
    for row in rows {
        let _ = writeln!(out, "{row}");
    }
    let _ = writeln!(out, "\n{}", peer::COMPARISON_NOTE);
}

fn begin_marker(label: &str) -> String {
    format!("<!-- bench-scale:begin {label} -->")
}

fn end_marker(label: &str) -> String {
    format!("<!-- bench-scale:end {label} -->")
}

/// The labelled sections of an existing report, in order: `(label, text)`.
fn sections(existing: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = existing;
    while let Some(start) = rest.find("<!-- bench-scale:begin ") {
        let after = &rest[start + "<!-- bench-scale:begin ".len()..];
        let Some(label_end) = after.find(" -->") else { break };
        let label = after[..label_end].to_string();
        let end = end_marker(&label);
        let Some(stop) = rest[start..].find(&end) else { break };
        let stop = start + stop + end.len();
        found.push((label, format!("{}\n", &rest[start..stop])));
        rest = &rest[stop..];
    }
    found
}

/// The summaries kept in a section.
fn section_data(text: &str) -> Vec<Summary> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("<!-- bench-scale:data ")?.strip_suffix(" -->"))
        .and_then(|json| serde_json::from_str::<Value>(json).ok())
        .and_then(|v| v.as_array().map(|a| a.iter().filter_map(Summary::from_json).collect()))
        .unwrap_or_default()
}

/// The whole report: `preamble` (title and method), the side-by-side table of every label's
/// medians with the targets, then every label's section; `section` (for `label`) replaces that
/// label's section in `existing`, or comes last when the label is new.
pub(crate) fn merge(existing: &str, preamble: &str, label: &str, section: &str) -> String {
    let mut all = sections(existing);
    match all.iter_mut().find(|(l, _)| l == label) {
        Some(slot) => slot.1 = section.to_string(),
        None => all.push((label.to_string(), section.to_string())),
    }
    let mut data: Vec<(usize, usize, &str, Summary)> = Vec::new();
    for (order, (label, text)) in all.iter().enumerate() {
        for s in section_data(text) {
            data.push((s.policies, order, label, s));
        }
    }
    data.sort_by_key(|(n, order, _, _)| (*n, *order));
    let rows: Vec<String> = data.iter().map(|(_, _, label, s)| summary_row(label, s)).collect();
    let mut out = String::new();
    let _ = writeln!(out, "{}", preamble.trim_end());
    let _ = writeln!(out, "\n## Side by side\n");
    let _ = writeln!(out, "Medians; each label's section below has every run, the machine and the versions.\n");
    let _ = writeln!(out, "{TABLE_HEAD}");
    for row in rows {
        let _ = writeln!(out, "{row}");
    }
    let _ = writeln!(
        out,
        "| 1,000 | **target** | < 30 s | p99 < 0.25 s | | < 64 MiB at 10,000 Releases and Promotions | | near zero | 0 / 0 | |"
    );
    write_comparison(&mut out, data.iter().map(|(_, _, label, s)| (*label, s)));
    for (_, text) in all {
        let _ = write!(out, "\n{}", text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let samples = ms(&[50, 10, 40, 30, 20, 60, 70, 80, 90, 100]);
        assert_eq!(percentile(&samples, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&samples, 99.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&samples, 90.0), Some(Duration::from_millis(90)));
        assert_eq!(percentile(&samples, 1.0), Some(Duration::from_millis(10)));
        assert_eq!(percentile(&ms(&[7]), 99.0), Some(Duration::from_millis(7)));
        assert_eq!(percentile(&[], 50.0), None);
        // 200 samples: p99 is the 198th smallest.
        let many: Vec<Duration> = (1..=200).map(Duration::from_millis).collect();
        assert_eq!(percentile(&many, 99.0), Some(Duration::from_millis(198)));
    }

    #[test]
    fn medians_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[f64::NAN, 5.0]), 5.0);
    }

    fn run(n: usize, awaiting: u64, production: &[u64], rss_mib: u64) -> RunResult {
        RunResult {
            policies: n,
            to_awaiting: Duration::from_secs(awaiting),
            to_production: ms(production),
            to_promoting: ms(production),
            rss_kib: rss_mib * 1024,
            hwm_kib: rss_mib * 2048,
            requests: 100 * n as u64,
            by_verb_resource: [(("get".to_string(), "releases".to_string()), 60 * n as u64)].into(),
            idle_requests: 30,
            idle_seconds: 60,
            registry_controller: 10,
            registry_trivy: 5,
            ..RunResult::default()
        }
    }

    #[test]
    fn summaries_take_the_median_of_runs() {
        let runs = [run(10, 4, &[100, 200], 20), run(10, 6, &[300, 400], 30), run(10, 5, &[500, 600], 25)];
        let s = Summary::of(&runs);
        assert_eq!((s.policies, s.runs), (10, 3));
        assert_eq!(s.to_awaiting_s, 5.0);
        assert_eq!(s.production_p50_s, 0.3);
        assert_eq!(s.production_p99_s, 0.4);
        assert_eq!(s.rss_mib, 25.0);
        assert_eq!(s.hwm_mib, 50.0);
        assert_eq!(s.requests_per_policy, 100.0);
        assert_eq!(s.idle_per_minute, 30.0);
        assert_eq!(s.registry_requests, 15.0);
        assert_eq!(Summary::from_json(&s.to_json()), Some(s));
    }

    fn section(label: &str, awaiting: u64) -> String {
        let results = vec![vec![run(10, awaiting, &[100, 200], 20)], vec![run(50, awaiting * 5, &[300], 40)]];
        render_section(&Section {
            label,
            date: "2026-12-03 02:00 UTC",
            command: "cargo xtask bench scale",
            facts: &["machine: test".to_string()],
            results: &results,
        })
    }

    #[test]
    fn a_section_has_its_rows_verbs_and_data() {
        let text = section("before", 4);
        assert!(text.starts_with("<!-- bench-scale:begin before -->\n## `before`"));
        assert!(text.contains("| 10 | before | 4.0 s | 0.10 / 0.20 s |"), "{text}");
        assert!(text.contains("| get | releases | 600 | 3000 |"), "{text}");
        assert_eq!(section_data(&text).iter().map(|s| s.policies).collect::<Vec<_>>(), [10, 50]);
        assert!(text.trim_end().ends_with("<!-- bench-scale:end before -->"));
    }

    #[test]
    fn merging_replaces_a_label_and_keeps_the_others_side_by_side() {
        let first = merge("", "# Title\n", "before", &section("before", 4));
        let second = merge(&first, "# Title\n", "after", &section("after", 2));
        let third = merge(&second, "# Title v2\n", "before", &section("before", 8));
        assert!(third.starts_with("# Title v2\n"));
        assert_eq!(third.matches("<!-- bench-scale:begin before -->").count(), 1);
        assert_eq!(third.matches("<!-- bench-scale:begin after -->").count(), 1);
        // The replaced section stays first, the new label after it.
        assert!(third.find("## `before`") < third.find("## `after`"));
        assert!(third.contains("| 10 | before | 8.0 s"));
        assert!(!third.contains("| 10 | before | 4.0 s"));
        // Side by side: N=10 of both labels, then N=50 of both, before the sections.
        let table = &third[third.find("## Side by side").unwrap()..third.find("<!-- bench-scale:begin").unwrap()];
        let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| 10 |") || l.starts_with("| 50 |")).collect();
        assert_eq!(rows.len(), 4);
        assert!(rows[0].starts_with("| 10 | before") && rows[1].starts_with("| 10 | after"));
        assert!(rows[2].starts_with("| 50 | before") && rows[3].starts_with("| 50 | after"));
        assert!(table.contains("**target**"));
        assert!(!third.contains("Beside a peer"), "no label measured a peer");
    }

    #[test]
    fn a_peer_sits_beside_tidegate_and_older_sections_still_parse() {
        // A section written before peers were measured: its data has no `peer`.
        let old = section("before", 4);
        assert!(!old.contains("\"peer\""));
        let mut with_peer = run(10, 2, &[100, 200], 20);
        with_peer.peer = Some(PeerRun {
            name: "Argo Rollouts v1.10.2".into(),
            rollouts: 10,
            to_paused: Duration::from_secs(9),
            to_switch: ms(&[400, 800]),
            rss_kib: 40 * 1024,
            hwm_kib: 40 * 1024,
        });
        let new = render_section(&Section {
            label: "argo",
            date: "2026-12-03 06:00 UTC",
            command: "cargo xtask bench scale --peer argo",
            facts: &[],
            results: &[vec![with_peer]],
        });
        assert!(new.contains("| 10 | argo | Argo Rollouts v1.10.2 | 0.10 / 0.20 s | 0.40 / 0.80 s | 0.25× / 0.25× | 20 / 40 MiB | 40 / 40 MiB | 0.50× / 1.00× |"), "{new}");
        assert!(
            new.contains("| 10 | 1 | Argo Rollouts v1.10.2 | 9.0 s | 0.40 / 0.80 / 0.80 s | 40 / 40 MiB |"),
            "{new}"
        );
        let merged = merge(&merge("", "# T\n", "before", &old), "# T\n", "argo", &new);
        let head = &merged[..merged.find("<!-- bench-scale:begin").unwrap()];
        // Both labels in the main table; only the one with a peer in the comparison.
        assert_eq!(head.lines().filter(|l| l.starts_with("| 10 |")).count(), 3, "{head}");
        let comparison = &head[head.find("Beside a peer").unwrap()..];
        assert!(comparison.contains("| 10 | argo | Argo Rollouts"));
        assert!(!comparison.contains("| before |"));
        assert_eq!(section_data(&old)[0].peer, None);
        assert_eq!(section_data(&new)[0].peer.as_ref().map(|p| p.switch_p99_s), Some(0.8));
    }
}
