//! Deploy targets in memory: what each workload runs, what it ran before, and every write.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use tidegate_core::promotion::{Health, Progress};
use tidegate_core::rollout::RolloutPlan;
use tidegate_providers::Result;
use tidegate_providers::kubernetes::Live;
use tidegate_providers::targets::{Deploy, Deployers, Target};

/// One write to a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// The target, as it displays (`Deployment shop/web`).
    pub target: String,
    /// The image written.
    pub image: String,
    /// The Promotion it was written for, when written through production targets.
    pub promotion: Option<String>,
    /// The namespace whose deployer wrote it.
    pub namespace: String,
}

#[derive(Default)]
struct State {
    running: BTreeMap<String, String>,
    ran: BTreeMap<String, BTreeSet<String>>,
    unhealthy: BTreeMap<String, String>,
    /// Converges still to report as in progress, by target.
    slow: BTreeMap<String, usize>,
    /// How often a target's history was asked for.
    history_reads: usize,
    writes: Vec<Write>,
    retired: Vec<String>,
}

/// Every namespace's targets in one place. A converge takes effect at once (`Done`).
#[derive(Clone, Default)]
pub struct FakeTargets {
    state: Arc<Mutex<State>>,
}

impl FakeTargets {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `target` (as it displays) runs `image`, and has run it.
    pub fn running(&self, target: &str, image: &str) {
        let mut state = self.lock();
        state.running.insert(target.into(), image.into());
        state.ran.entry(target.into()).or_default().insert(image.into());
    }

    /// What `target` runs now.
    pub fn image(&self, target: &str) -> Option<String> {
        self.lock().running.get(target).cloned()
    }

    /// `target` reports `why` as unhealthy from now on.
    pub fn unhealthy(&self, target: &str, why: &str) {
        self.lock().unhealthy.insert(target.into(), why.into());
    }

    /// The next `converges` converges of `target` report the rollout as still in progress (each
    /// one is a write all the same); the one after is done.
    pub fn rolls_out_slowly(&self, target: &str, converges: usize) {
        self.lock().slow.insert(target.into(), converges);
    }

    /// How often any target's history was asked for (`ran_before`).
    pub fn history_reads(&self) -> usize {
        self.lock().history_reads
    }

    /// Every write so far.
    pub fn writes(&self) -> Vec<Write> {
        self.lock().writes.clone()
    }

    /// Targets whose previous version was retired.
    pub fn retired(&self) -> Vec<String> {
        self.lock().retired.clone()
    }
}

impl Deployers for FakeTargets {
    fn targets(&self, policy_namespace: &str) -> Result<Arc<dyn Deploy>> {
        Ok(Arc::new(Acting { targets: self.clone(), namespace: policy_namespace.into(), promotion: None }))
    }

    fn production_targets(&self, policy_namespace: &str, promotion: &str) -> Result<Arc<dyn Deploy>> {
        Ok(Arc::new(Acting {
            targets: self.clone(),
            namespace: policy_namespace.into(),
            promotion: Some(promotion.into()),
        }))
    }
}

/// [`FakeTargets`] as one namespace's deployer, possibly for one Promotion.
struct Acting {
    targets: FakeTargets,
    namespace: String,
    promotion: Option<String>,
}

#[async_trait::async_trait]
impl Deploy for Acting {
    async fn converge(&self, target: &Target<'_>, _plan: &RolloutPlan, image: &str) -> Result<Progress> {
        let key = target.display();
        let mut state = self.targets.lock();
        state.writes.push(Write {
            target: key.clone(),
            image: image.into(),
            promotion: self.promotion.clone(),
            namespace: self.namespace.clone(),
        });
        state.running.insert(key.clone(), image.into());
        state.ran.entry(key.clone()).or_default().insert(image.into());
        match state.slow.get_mut(&key) {
            Some(left) if *left > 0 => {
                *left -= 1;
                Ok(Progress::InProgress(format!("{key}: the new Pods are not ready yet")))
            }
            _ => Ok(Progress::Done),
        }
    }

    async fn current_image(&self, target: &Target<'_>, _plan: &RolloutPlan) -> Result<Option<String>> {
        Ok(self.targets.image(&target.display()))
    }

    async fn live(&self, target: &Target<'_>, _plan: &RolloutPlan) -> Result<Live> {
        Ok(Live { image: self.targets.image(&target.display()), ..Live::default() })
    }

    async fn health(&self, target: &Target<'_>, _plan: &RolloutPlan, _image: &str) -> Result<Health> {
        Ok(match self.targets.lock().unhealthy.get(&target.display()) {
            Some(why) => Health::Unhealthy(why.clone()),
            None => Health::Healthy,
        })
    }

    async fn retire_previous(&self, target: &Target<'_>, _plan: &RolloutPlan) -> Result<()> {
        self.targets.lock().retired.push(target.display());
        Ok(())
    }

    async fn ran_before(&self, target: &Target<'_>, image: &str) -> Result<bool> {
        let mut state = self.targets.lock();
        state.history_reads += 1;
        Ok(state.ran.get(&target.display()).is_some_and(|ran| ran.contains(image)))
    }

    async fn traffic_weight(&self, _target: &Target<'_>, _image: &str) -> Result<Option<i32>> {
        Ok(None)
    }

    async fn staging_url(&self, _target: &Target<'_>) -> Result<Option<String>> {
        Ok(None)
    }
}
