//! The peer's figures in `cargo xtask bench scale --peer …`: what one run of the peer measured,
//! its medians as kept in a report section, and the rows that put them beside Tidegate's as
//! ratios. Pure: no cluster, no files.

use std::time::Duration;

use serde_json::{Value, json};

use crate::bench_scale_report::{Summary, median, percentile};

/// What one run of the peer measured, on the control plane Tidegate's run used.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct PeerRun {
    /// The peer and its version, e.g. `Argo Rollouts v1.10.2`.
    pub(crate) name: String,
    /// Rollouts measured.
    pub(crate) rollouts: usize,
    /// New image written → every Rollout paused for promotion with its preview ready.
    pub(crate) to_paused: Duration,
    /// Promote written (the API server's answer) → the active Service selects the new
    /// ReplicaSet, per Rollout.
    pub(crate) to_switch: Vec<Duration>,
    /// The peer controller's VmRSS and VmHWM at the end, KiB.
    pub(crate) rss_kib: u64,
    pub(crate) hwm_kib: u64,
}

/// The peer's medians over the runs of one N, kept in the section's data next to Tidegate's.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PeerSummary {
    pub(crate) name: String,
    pub(crate) to_paused_s: f64,
    pub(crate) switch_p50_s: f64,
    pub(crate) switch_p99_s: f64,
    pub(crate) rss_mib: f64,
    pub(crate) hwm_mib: f64,
}

impl PeerSummary {
    /// Medians over the runs that measured a peer; `None` when none did.
    pub(crate) fn of(runs: &[&PeerRun]) -> Option<Self> {
        let first = runs.first()?;
        let m = |f: &dyn Fn(&PeerRun) -> f64| {
            (median(&runs.iter().map(|r| f(r)).collect::<Vec<_>>()) * 1000.0).round() / 1000.0
        };
        let secs = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64());
        Some(Self {
            name: first.name.clone(),
            to_paused_s: m(&|r| r.to_paused.as_secs_f64()),
            switch_p50_s: m(&|r| secs(percentile(&r.to_switch, 50.0))),
            switch_p99_s: m(&|r| secs(percentile(&r.to_switch, 99.0))),
            rss_mib: m(&|r| r.rss_kib as f64 / 1024.0),
            hwm_mib: m(&|r| r.hwm_kib as f64 / 1024.0),
        })
    }

    /// The JSON kept under `peer` in a section's data.
    pub(crate) fn to_json(&self) -> Value {
        let r = |v: f64| (v * 1000.0).round() / 1000.0;
        json!({
            "name": self.name,
            "to_paused_s": r(self.to_paused_s),
            "switch_p50_s": r(self.switch_p50_s),
            "switch_p99_s": r(self.switch_p99_s),
            "rss_mib": r(self.rss_mib),
            "hwm_mib": r(self.hwm_mib),
        })
    }

    /// Reads [`PeerSummary::to_json`] back; `None` for a section without a peer (written before
    /// peers were measured, or without `--peer`).
    pub(crate) fn from_json(value: &Value) -> Option<Self> {
        let f = |name: &str| value[name].as_f64();
        Some(Self {
            name: value["name"].as_str()?.to_string(),
            to_paused_s: f("to_paused_s")?,
            switch_p50_s: f("switch_p50_s")?,
            switch_p99_s: f("switch_p99_s")?,
            rss_mib: f("rss_mib")?,
            hwm_mib: f("hwm_mib")?,
        })
    }
}

/// `tidegate ÷ peer` as `0.42×`; `–` when either is missing or the peer's is zero.
pub(crate) fn ratio(tidegate: f64, peer: f64) -> String {
    let r = tidegate / peer;
    if !tidegate.is_finite() || !peer.is_finite() || peer <= 0.0 || !r.is_finite() {
        return "–".into();
    }
    if r >= 10.0 { format!("{r:.0}×") } else { format!("{r:.2}×") }
}

/// The head of the table that puts a peer beside Tidegate.
pub(crate) const COMPARISON_HEAD: &str = "| N | label | peer | Tidegate approval → production write p50 / p99 | peer promote → active Service switch p50 / p99 | ratio p50 / p99 | Tidegate VmRSS / VmHWM | peer VmRSS / VmHWM | ratio VmRSS / VmHWM |\n|---:|---|---|---:|---:|---:|---:|---:|---:|";

/// The row of that table for one label and N; `None` when the label measured no peer.
pub(crate) fn comparison_row(label: &str, s: &Summary) -> Option<String> {
    let p = s.peer.as_ref()?;
    let secs = |v: f64| if v.is_finite() { format!("{v:.2}") } else { "–".into() };
    Some(format!(
        "| {} | {label} | {} | {} / {} s | {} / {} s | {} / {} | {:.0} / {:.0} MiB | {:.0} / {:.0} MiB | {} / {} |",
        s.policies,
        p.name,
        secs(s.production_p50_s),
        secs(s.production_p99_s),
        secs(p.switch_p50_s),
        secs(p.switch_p99_s),
        ratio(s.production_p50_s, p.switch_p50_s),
        ratio(s.production_p99_s, p.switch_p99_s),
        s.rss_mib,
        s.hwm_mib,
        p.rss_mib,
        p.hwm_mib,
        ratio(s.rss_mib, p.rss_mib),
        ratio(s.hwm_mib, p.hwm_mib),
    ))
}

/// What the ratios mean, under the comparison table.
pub(crate) const COMPARISON_NOTE: &str = "Ratios are Tidegate ÷ peer: below 1, Tidegate is faster or smaller. Both controllers ran on the same control plane in the same run, one after the other (Tidegate first, stopped before the peer started).";

/// The every-run table of the peer: head and one row per run.
pub(crate) const RUNS_HEAD: &str = "| N | run | peer | new image → all paused for promotion | promote → active Service switch p50 / p99 / max | peer VmRSS / VmHWM |\n|---:|---:|---|---:|---:|---:|";

pub(crate) fn run_row(policies: usize, run: usize, p: &PeerRun) -> String {
    let q = |q: f64| percentile(&p.to_switch, q).map_or("–".into(), |d| format!("{:.2}", d.as_secs_f64()));
    format!(
        "| {policies} | {run} | {} | {:.1} s | {} / {} / {} s | {:.0} / {:.0} MiB |",
        p.name,
        p.to_paused.as_secs_f64(),
        q(50.0),
        q(99.0),
        q(100.0),
        p.rss_kib as f64 / 1024.0,
        p.hwm_kib as f64 / 1024.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(switch_ms: &[u64], rss_mib: u64) -> PeerRun {
        PeerRun {
            name: "Argo Rollouts v1.10.2".into(),
            rollouts: switch_ms.len(),
            to_paused: Duration::from_secs(12),
            to_switch: switch_ms.iter().map(|&m| Duration::from_millis(m)).collect(),
            rss_kib: rss_mib * 1024,
            hwm_kib: rss_mib * 1024 + 2048,
        }
    }

    #[test]
    fn ratios_are_tidegate_over_the_peer() {
        assert_eq!(ratio(0.5, 2.0), "0.25×");
        assert_eq!(ratio(3.0, 1.5), "2.00×");
        assert_eq!(ratio(45.0, 1.5), "30×");
        assert_eq!(ratio(1.0, 0.0), "–");
        assert_eq!(ratio(f64::NAN, 1.0), "–");
        assert_eq!(ratio(1.0, f64::NAN), "–");
    }

    #[test]
    fn peer_medians_survive_the_section_data() {
        let runs = [peer(&[100, 200, 300], 40), peer(&[400, 500, 600], 60), peer(&[10, 20, 30], 50)];
        let s = PeerSummary::of(&runs.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!((s.switch_p50_s, s.switch_p99_s), (0.2, 0.3));
        assert_eq!((s.rss_mib, s.hwm_mib, s.to_paused_s), (50.0, 52.0, 12.0));
        assert_eq!(PeerSummary::from_json(&s.to_json()), Some(s));
        assert_eq!(PeerSummary::of(&[]), None);
        // Sections written before peers were measured have none.
        assert_eq!(PeerSummary::from_json(&Value::Null), None);
    }

    #[test]
    fn a_comparison_row_puts_both_side_by_side_with_ratios() {
        let run = crate::bench_scale_report::RunResult {
            policies: 10,
            to_production: vec![Duration::from_millis(500); 10],
            rss_kib: 20 * 1024,
            hwm_kib: 26 * 1024,
            peer: Some(peer(&[250; 10], 40)),
            ..Default::default()
        };
        let s = Summary::of(&[run]);
        let row = comparison_row("after", &s).unwrap();
        assert_eq!(
            row,
            "| 10 | after | Argo Rollouts v1.10.2 | 0.50 / 0.50 s | 0.25 / 0.25 s | 2.00× / 2.00× | 20 / 26 MiB | 40 / 42 MiB | 0.50× / 0.62× |"
        );
        let without = Summary::of(&[crate::bench_scale_report::RunResult { policies: 10, ..Default::default() }]);
        assert_eq!(comparison_row("before", &without), None);
        assert!(
            run_row(10, 1, &peer(&[100, 300], 40))
                .starts_with("| 10 | 1 | Argo Rollouts v1.10.2 | 12.0 s | 0.10 / 0.30 / 0.30 s | 40 / 42 MiB |")
        );
    }
}
