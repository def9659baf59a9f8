//! How an Azure Container App reaches a wanted image, one step at a time.
//!
//! The provider reads the app and its revisions into an [`AppView`]; [`next_step`] says the one
//! thing to do next (create a revision, move traffic, activate or deactivate a revision) or that
//! the app is where it should be. Each step is decided from the app as it is, so a controller
//! restarted in the middle (or an Azure operation that was still running) resumes where Azure is.
//!
//! Revisions are matched to images by their template, never by a name alone: a revision Tidegate
//! creates for digest `sha256:abc…` is called `<app>--tg-<12 hex digits>`, but any revision that
//! runs the wanted image counts.

use crate::promotion::{Health, Progress};

/// The prefix of the revision suffixes Tidegate chooses.
pub const SUFFIX_PREFIX: &str = "tg-";

/// One entry of `properties.configuration.ingress.traffic`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Weight {
    /// The revision, or `None` for the entry that follows the latest revision.
    pub revision: Option<String>,
    /// Percentage of traffic.
    pub weight: i32,
    /// The entry's label, if any.
    pub label: Option<String>,
}

/// Provisioning of a revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Provisioning {
    /// Still being created.
    InProgress,
    /// Created.
    Succeeded,
    /// Azure gave up creating it, with its reason.
    Failed(String),
}

/// One revision as Azure reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevisionView {
    /// Revision name (`<app>--<suffix>`).
    pub name: String,
    /// Image of the managed container.
    pub image: Option<String>,
    /// Whether the revision is active.
    pub active: bool,
    /// Its provisioning state.
    pub provisioning: Provisioning,
    /// `healthState` is `Healthy`.
    pub healthy: bool,
    /// `healthState`, `runningState` and replicas, for messages.
    pub state: String,
    /// Container restarts over all replicas.
    pub restarts: u32,
    /// Creation time (RFC 3339, as Azure writes it); orders revisions.
    pub created: String,
}

/// A Container App as the rollout needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppView {
    /// `activeRevisionsMode` is `Multiple`.
    pub multiple_revisions: bool,
    /// The app has ingress (traffic weights apply).
    pub ingress: bool,
    /// The traffic entries.
    pub traffic: Vec<Weight>,
    /// `latestRevisionName`.
    pub latest_revision: Option<String>,
    /// An operation on the app is still running (`provisioningState` is not final).
    pub busy: bool,
    /// The app's revisions.
    pub revisions: Vec<RevisionView>,
}

/// What the app is asked to become.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Goal {
    /// Staging in an app of its own: the candidate is the app's serving revision.
    StagingApp {
        /// Label put on the candidate when the app runs several revisions.
        label: String,
    },
    /// Staging in the production app: the candidate runs beside production at 0 % with `label`.
    StagingRevision {
        /// Label of the candidate's traffic entry.
        label: String,
    },
    /// Production: all traffic (or the only active revision) on the wanted image.
    Production {
        /// Keep the previous revision active until the monitor window ends (blue-green, overlap).
        keep_previous: bool,
        /// Move traffic in steps, each held while the candidate stays healthy.
        canary: Option<Canary>,
    },
}

/// Canary steps of a production switch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Canary {
    /// Percentages the candidate gets in order before 100 %, increasing.
    pub steps: Vec<i32>,
    /// How long each step is held before the next.
    pub hold: std::time::Duration,
    /// How long the candidate's current weight has been seen, if known.
    pub held: Option<std::time::Duration>,
}

/// The one thing to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Change the template's image, creating revision `<app>--<suffix>`; `traffic`, when given,
    /// is written in the same request (traffic pinned to the current revisions, so the new one
    /// gets none).
    CreateRevision {
        /// The revision suffix.
        suffix: String,
        /// Traffic to write with the template.
        traffic: Option<Vec<Weight>>,
    },
    /// Write these traffic entries.
    SetTraffic(Vec<Weight>),
    /// Activate this revision.
    Activate(String),
    /// Deactivate these revisions.
    Deactivate(Vec<String>),
    /// Wait; say why.
    Wait(String),
    /// The app is where it should be.
    Done,
    /// The app cannot get there; say why.
    Failed(String),
}

impl Step {
    /// The step as rollout progress, for steps that change nothing.
    pub fn progress(&self) -> Option<Progress> {
        match self {
            Step::Wait(why) => Some(Progress::InProgress(why.clone())),
            Step::Done => Some(Progress::Done),
            Step::Failed(why) => Some(Progress::Failed(why.clone())),
            _ => None,
        }
    }
}

/// The suffix of the revision Tidegate creates for `digest` (`sha256:<hex>`): `tg-` and the
/// first 12 hex digits; `-2`, `-3`… when that name is taken by a revision that cannot be reused.
pub fn revision_suffix(digest_hex: &str, taken: &[&str]) -> String {
    let short: String = digest_hex.chars().filter(char::is_ascii_hexdigit).take(12).collect();
    let base = format!("{SUFFIX_PREFIX}{}", short.to_ascii_lowercase());
    let mut candidate = base.clone();
    let mut n = 2;
    while taken.iter().any(|t| t.ends_with(&format!("--{candidate}"))) {
        candidate = format!("{base}-{n}");
        n += 1;
    }
    candidate
}

impl AppView {
    fn revision(&self, name: &str) -> Option<&RevisionView> {
        self.revisions.iter().find(|r| r.name == name)
    }

    /// The revision running `image`: an active one first, the newest otherwise.
    pub fn running(&self, image: &str) -> Option<&RevisionView> {
        let mut matching: Vec<&RevisionView> =
            self.revisions.iter().filter(|r| r.image.as_deref() == Some(image)).collect();
        matching.sort_by(|a, b| (a.active, &a.created).cmp(&(b.active, &b.created)));
        matching.last().copied()
    }

    /// The traffic entries with `latestRevision: true` replaced by the revision it follows now,
    /// so that a new revision gets no traffic.
    pub fn pinned_traffic(&self) -> Vec<Weight> {
        self.traffic
            .iter()
            .map(|w| match (&w.revision, &self.latest_revision) {
                (None, Some(latest)) => Weight { revision: Some(latest.clone()), ..w.clone() },
                _ => w.clone(),
            })
            .collect()
    }

    /// The percentage of traffic `revision` gets.
    pub fn weight_of(&self, revision: &str) -> i32 {
        self.pinned_traffic().iter().filter(|w| w.revision.as_deref() == Some(revision)).map(|w| w.weight).sum()
    }

    /// The revision that serves: the one with the most traffic (ingress, several revisions), or
    /// the newest active one (no ingress, or single revision mode, where Azure sends all traffic
    /// to the one active revision whatever the weights say).
    pub fn live(&self) -> Option<&RevisionView> {
        if self.multiple_revisions && self.ingress && !self.traffic.is_empty() {
            let pinned = self.pinned_traffic();
            let best = pinned.iter().filter(|w| w.weight > 0).max_by_key(|w| w.weight)?;
            return best.revision.as_deref().and_then(|name| self.revision(name));
        }
        self.revisions.iter().filter(|r| r.active).max_by(|a, b| a.created.cmp(&b.created))
    }

    /// Active revisions other than `keep` without traffic and without a label: what a retirement
    /// deactivates. A labelled revision (a later candidate on staging) is left alone.
    pub fn idle_besides(&self, keep: &str) -> Vec<String> {
        let pinned = self.pinned_traffic();
        let labelled = |name: &str| pinned.iter().any(|w| w.revision.as_deref() == Some(name) && w.label.is_some());
        self.revisions
            .iter()
            .filter(|r| r.active && r.name != keep && self.weight_of(&r.name) == 0 && !labelled(&r.name))
            .map(|r| r.name.clone())
            .collect()
    }
}

/// How a revision that runs the wanted image is doing: `None` when ready.
fn readiness(revision: &RevisionView) -> Option<Step> {
    match &revision.provisioning {
        Provisioning::InProgress => Some(Step::Wait(format!("revision {} is provisioning", revision.name))),
        Provisioning::Failed(why) => {
            Some(Step::Failed(format!("revision {} failed to provision: {why}", revision.name)))
        }
        Provisioning::Succeeded if !revision.healthy => {
            Some(Step::Wait(format!("revision {} is not healthy yet ({})", revision.name, revision.state)))
        }
        Provisioning::Succeeded => None,
    }
}

/// The next step for `app` towards `image` (whose digest hex is `digest_hex`) and `goal`.
pub fn next_step(app: &AppView, image: &str, digest_hex: &str, goal: &Goal) -> Step {
    if app.busy {
        return Step::Wait("an Azure operation on the app is still running".into());
    }
    let shared = matches!(goal, Goal::StagingRevision { .. });
    let keeps_previous = matches!(goal, Goal::Production { keep_previous: true, .. });
    if (shared || keeps_previous) && !app.multiple_revisions {
        return Step::Failed(format!(
            "the app runs in single revision mode; {} needs activeRevisionsMode Multiple \
             (Tidegate does not change it: set it on the app, or choose strategy {})",
            if shared { "a staging revision beside production" } else { "keeping the previous revision" },
            if shared { "a staging app of its own" } else { "rolling or replace" }
        ));
    }
    // In single revision mode only the latest revision serves: an older one with the image is not
    // reused (even while Azure still lists it active); a new one with the same image takes over
    // and Azure deactivates the others.
    let usable = |r: &&RevisionView| app.multiple_revisions || app.latest_revision.as_deref() == Some(r.name.as_str());
    if matches!(goal, Goal::Production { canary: Some(_), .. }) && !app.ingress {
        return Step::Failed("canary steps split traffic, and the app has no ingress; use blueGreen or replace".into());
    }
    if shared && !app.ingress {
        return Step::Failed(
            "the app has no ingress, so a staging revision beside production would be unreachable and, \
             for a worker, would consume production's messages; stage in an app of its own"
                .into(),
        );
    }
    let Some(candidate) = app.running(image).filter(usable) else {
        let taken: Vec<&str> = app.revisions.iter().map(|r| r.name.as_str()).collect();
        let suffix = revision_suffix(digest_hex, &taken);
        // In multiple mode the new revision must not take traffic on its own.
        let traffic = (app.multiple_revisions && app.ingress).then(|| app.pinned_traffic());
        return Step::CreateRevision { suffix, traffic };
    };
    // A canary that already takes traffic fails as soon as it is unhealthy; the Promotion then
    // puts all traffic back on the previous revision.
    if let Goal::Production { canary: Some(_), .. } = goal {
        let weight = app.weight_of(&candidate.name);
        if weight > 0 && weight < 100 && (!candidate.healthy || candidate.restarts > 0) {
            return Step::Failed(format!(
                "canary revision {} at {weight} % is unhealthy ({}, {} restarts)",
                candidate.name, candidate.state, candidate.restarts
            ));
        }
    }
    let inactive = !candidate.active && candidate.provisioning == Provisioning::Succeeded;
    if inactive {
        return Step::Activate(candidate.name.clone());
    }
    if let Some(step) = readiness(candidate) {
        return step;
    }
    let name = candidate.name.clone();
    match goal {
        Goal::StagingRevision { label } => with_label(app, &name, label, false),
        Goal::StagingApp { label } if app.multiple_revisions && app.ingress => with_label(app, &name, label, true),
        Goal::StagingApp { .. } => Step::Done,
        Goal::Production { keep_previous, canary } => {
            let weight = app.weight_of(&name);
            if app.multiple_revisions && app.ingress && weight < 100 {
                let Some(canary) = canary else { return Step::SetTraffic(all_traffic_to(app, &name)) };
                if weight > 0 && canary.held.is_none_or(|held| held < canary.hold) {
                    return Step::Wait(format!(
                        "canary revision {name} at {weight} %, healthy; holding {}s before the next step",
                        canary.hold.saturating_sub(canary.held.unwrap_or_default()).as_secs()
                    ));
                }
                let next = canary.steps.iter().copied().find(|step| *step > weight && *step < 100).unwrap_or(100);
                return Step::SetTraffic(split_traffic(app, &name, next));
            }
            if !keep_previous && app.multiple_revisions {
                let idle = app.idle_besides(&name);
                if !idle.is_empty() {
                    return Step::Deactivate(idle);
                }
            }
            Step::Done
        }
    }
}

/// Traffic with `label` on `revision` (and on no other), at 100 % when `all`, 0 % otherwise.
fn with_label(app: &AppView, revision: &str, label: &str, all: bool) -> Step {
    let pinned = app.pinned_traffic();
    let labelled = pinned.iter().any(|w| w.revision.as_deref() == Some(revision) && w.label.as_deref() == Some(label));
    let weight_ok = !all || app.weight_of(revision) == 100;
    if labelled && weight_ok {
        return Step::Done;
    }
    let mut traffic: Vec<Weight> = pinned
        .into_iter()
        .filter(|w| w.label.as_deref() != Some(label))
        .map(|w| if all { Weight { weight: 0, ..w } } else { w })
        .filter(|w| w.weight > 0 || w.label.is_some())
        .collect();
    // The candidate's unlabelled entries fold into the labelled one, keeping their weight.
    let unlabelled: i32 =
        traffic.iter().filter(|w| w.revision.as_deref() == Some(revision) && w.label.is_none()).map(|w| w.weight).sum();
    let weight = if all { 100 } else { unlabelled };
    traffic.retain(|w| !(w.revision.as_deref() == Some(revision) && w.label.is_none()));
    traffic.push(Weight { revision: Some(revision.to_string()), weight, label: Some(label.to_string()) });
    Step::SetTraffic(traffic)
}

/// Every unlabelled entry folded into one for `revision` at 100 %; labelled entries stay, at 0 %
/// unless they name `revision`.
fn all_traffic_to(app: &AppView, revision: &str) -> Vec<Weight> {
    let mut traffic: Vec<Weight> =
        app.pinned_traffic().into_iter().filter(|w| w.label.is_some()).map(|w| Weight { weight: 0, ..w }).collect();
    match traffic.iter_mut().find(|w| w.revision.as_deref() == Some(revision)) {
        Some(entry) => entry.weight = 100,
        None => traffic.push(Weight { revision: Some(revision.to_string()), weight: 100, label: None }),
    }
    // The revision that served keeps an entry at 0 %, so it stays addressable for a rollback.
    if let Some(live) = app.live().filter(|l| l.name != revision)
        && !traffic.iter().any(|w| w.revision.as_deref() == Some(live.name.as_str()))
    {
        traffic.push(Weight { revision: Some(live.name.clone()), weight: 0, label: None });
    }
    traffic
}

/// `weight` % on `revision`, the rest on the revision that serves most of the traffic besides
/// it; labelled entries stay (at 0 % unless they name one of the two).
fn split_traffic(app: &AppView, revision: &str, weight: i32) -> Vec<Weight> {
    let pinned = app.pinned_traffic();
    let previous = pinned
        .iter()
        .filter(|w| w.revision.as_deref() != Some(revision) && w.weight > 0)
        .max_by_key(|w| w.weight)
        .and_then(|w| w.revision.clone());
    let Some(previous) = previous.filter(|_| weight < 100) else { return all_traffic_to(app, revision) };
    let mut traffic: Vec<Weight> =
        pinned.into_iter().filter(|w| w.label.is_some()).map(|w| Weight { weight: 0, ..w }).collect();
    for (name, share) in [(revision, weight), (previous.as_str(), 100 - weight)] {
        match traffic.iter_mut().find(|w| w.revision.as_deref() == Some(name)) {
            Some(entry) => entry.weight = share,
            None => traffic.push(Weight { revision: Some(name.to_string()), weight: share, label: None }),
        }
    }
    traffic
}

/// Health of the revision running `image` during the monitor window.
pub fn health(app: &AppView, image: &str) -> Health {
    let Some(revision) = app.running(image).filter(|r| r.active) else {
        return Health::Unhealthy(format!("no active revision runs {image}"));
    };
    if let Provisioning::Failed(why) = &revision.provisioning {
        return Health::Unhealthy(format!("revision {} failed to provision: {why}", revision.name));
    }
    if !revision.healthy {
        return Health::Unhealthy(format!("revision {} is not healthy ({})", revision.name, revision.state));
    }
    if revision.restarts > 0 {
        return Health::Unhealthy(format!(
            "revision {}: containers restarted {} times",
            revision.name, revision.restarts
        ));
    }
    if app.multiple_revisions && app.ingress && app.weight_of(&revision.name) < 100 {
        return Health::Unhealthy(format!(
            "revision {} gets {} % of the traffic, not 100 %",
            revision.name,
            app.weight_of(&revision.name)
        ));
    }
    Health::Healthy
}

#[cfg(test)]
mod tests;
