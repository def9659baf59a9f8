//! `ImagePolicy`: one per image, the lifecycle rules for it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, cel_duration_between, conditions_schema};

/// The lifecycle rules of one container image: what starts a new Release, how a fix is rebuilt and
/// scanned, which workloads run the image and how each one is rolled out, what must pass on
/// staging, and who may approve a change to production.
///
/// Fields that this version of Tidegate cannot act on yet stay in the schema so that a later
/// version can enable them, but setting them is refused at admission with a message that says
/// they are not supported yet: a policy never promises something the controller ignores.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tidegate.dev",
    version = "v1alpha1",
    kind = "ImagePolicy",
    namespaced,
    doc = "An ImagePolicy holds the lifecycle rules of one container image: triggers, build, scan, the workloads that run it, staging tests and who may approve production.",
    status = "ImagePolicyStatus",
    shortname = "ipol",
    category = "tidegate",
    printcolumn(name = "Image", type_ = "string", json_path = ".spec.image"),
    printcolumn(
        name = "Production",
        type_ = "string",
        json_path = ".status.productionDigest",
        description = "Digest running in production"
    ),
    printcolumn(
        name = "Staging",
        type_ = "string",
        json_path = ".status.stagingDigest",
        description = "Digest running in staging"
    ),
    printcolumn(name = "Latest Release", type_ = "string", json_path = ".status.latestRelease"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.scan)")
        .message("spec.scan is required: set spec.scan.scanner to trivy (the controller runs Trivy), trivyReport (CI attaches a signed Trivy report to each candidate digest) or trivyOperator; no Release passes without a scan"),
    validation = Rule::new("!has(self.sign)")
        .message("spec.sign is not supported yet: signing is configured on the controller (--notary-key-file, --notary-cert-file, --trust-policy-file, --trust-store-dir), one key and trust policy for all policies; remove spec.sign")
)]
pub struct ImagePolicySpec {
    /// The repository whose exact versions Tidegate produces and promotes, with its registry and
    /// without tag or digest, for example `myregistry.azurecr.io/shop/web`.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)+$')")
        .message("spec.image must be a repository with its registry and without tag or digest, e.g. registry.example.com/team/app"))]
    #[schemars(length(min = 1, max = 255))]
    pub image: String,

    /// What starts a new Release. With no trigger set, Releases are only created by hand or by CI.
    #[serde(default)]
    pub triggers: Triggers,

    /// How a fix is rebuilt.
    #[serde(default)]
    pub build: Build,

    /// How candidate images are scanned and which findings block them. Required: a Release never
    /// passes without the scan report of its exact digest.
    // The Rust default only reads objects stored before `scan` was required; the schema has no
    // default, so admission asks for it.
    #[serde(default)]
    #[schemars(transform = without_default)]
    pub scan: Scan,

    /// Per-policy signing keys and trust policy. Not supported yet; refused at admission. Every
    /// candidate is signed and verified with the controller's key and trust policy (see the
    /// controller's `--notary-*` and `--trust-*` flags).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign: Option<Sign>,

    /// Every workload that runs this image, with its staging and production targets and its
    /// rollout strategy. Names are unique within the policy.
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[schemars(length(min = 1, max = 32))]
    pub workloads: Vec<Workload>,

    /// What must pass on staging before a Release is `Verified`.
    #[serde(default)]
    pub tests: StagingTests,

    /// Who may approve a change to production, and how production is watched after it.
    #[serde(default)]
    pub promotion: PromotionRules,
}

/// What starts a new Release.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.schedule)")
        .message("spec.triggers.schedule is not supported yet: to release on a schedule, let a CronJob set the annotation tidegate.dev/trigger on the ImagePolicy to a new value")
)]
pub struct Triggers {
    /// Start a Release when the digest behind the base image reference changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image: Option<BaseImageTrigger>,
    /// Rescan the digest now in production on an interval (and, with `scan.scanner: trivy`,
    /// whenever the vulnerability database updates). A blocking finding with a fix available
    /// starts a Release of type `VulnerabilitiesFound` naming the ids; findings without a fix are
    /// reported in `status.productionScan` and start nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rescan: Option<RescanTrigger>,
    /// Start a Release when a new application build is pushed with a tag that matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_build: Option<NewBuildTrigger>,
    /// Start a Release on a schedule, even when nothing else changed. Not supported yet; refused
    /// at admission (a CronJob that sets the `tidegate.dev/trigger` annotation does the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleTrigger>,
}

/// Watch a base image tag for a new digest.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BaseImageTrigger {
    /// The base image tag to watch, for example `mcr.microsoft.com/dotnet/aspnet:8.0`. It must be a
    /// tag: a digest never changes, so there would be nothing to watch.
    #[x_kube(validation = Rule::new("self.matches('^[^@]+:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$') && !self.contains('@')")
        .message("spec.triggers.baseImage.ref must be an image reference with a tag (repo:tag), not a digest"))]
    #[serde(rename = "ref")]
    #[schemars(length(min = 1, max = 512))]
    pub reference: String,
    /// How often the tag is resolved to a digest, as a duration between `1m` and `24h`.
    /// Default `15m`.
    #[serde(default = "default_base_interval")]
    #[x_kube(validation = Rule::new(cel_duration_between("1m", "24h"))
        .message("spec.triggers.baseImage.interval must be a duration between 1m and 24h, e.g. 15m"))]
    #[schemars(length(max = 32))]
    pub interval: String,
}

/// Rescan production for newly published vulnerabilities.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.scanner) || self.scanner in ['trivy', 'trivyReport', 'trivyOperator', 'configMapReport', 'defender']")
        .message("spec.triggers.rescan.scanner must be trivy, trivyReport, trivyOperator, configMapReport or defender")
)]
pub struct RescanTrigger {
    /// Where the findings of the production digest come from. Default: `spec.scan.scanner`.
    /// - `trivyOperator`: the Trivy Operator's `VulnerabilityReport` of the digest in the
    ///   namespace of a production workload, read as the policy namespace's deployer (which needs
    ///   `get`/`list` on `vulnerabilityreports.aquasecurity.github.io` there, as in ClusterRole
    ///   `tidegate-deployer`); a report older than `spec.scan.maxReportAge` does not count.
    /// - `defender`: Microsoft Defender for Cloud's current findings of the production digest
    ///   (within the namespace's `--azure-grant` scopes); until Defender has assessed it there is
    ///   no result and the rescan looks again at the next interval.
    /// - the others as in `spec.scan.scanner`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scanner: Option<Scanner>,
    /// How often the production digest is rescanned, as a duration between `1m` and `720h`.
    /// Default `24h`. Rescans are shared: a digest that several policies run is scanned once.
    #[serde(default = "default_rescan_interval")]
    #[x_kube(validation = Rule::new(cel_duration_between("1m", "720h"))
        .message("spec.triggers.rescan.interval must be a duration between 1m and 720h, e.g. 24h"))]
    #[schemars(length(max = 32))]
    pub interval: String,
}

/// Watch the policy's repository for new application builds.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NewBuildTrigger {
    /// Regular expression that a tag must match in full to become a Release, for example
    /// `^v[0-9]+\.[0-9]+\.[0-9]+$`. The tag is resolved to a digest once; only the digest is used
    /// after that.
    #[schemars(length(min = 1, max = 256))]
    pub tag_pattern: String,
}

/// Start a Release on a schedule. Not supported yet.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleTrigger {
    /// Standard five-field cron expression, evaluated in UTC, for example `0 6 * * 1`.
    #[x_kube(validation = Rule::new("self.matches('^\\\\S+( \\\\S+){4}$')")
        .message("spec.triggers.schedule.cron must be a five-field cron expression, e.g. '0 6 * * 1'"))]
    #[schemars(length(min = 9, max = 128))]
    pub cron: String,
}

/// How a fix is rebuilt.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.strategy != 'external' || has(self.external)")
        .message("spec.build.external is required when spec.build.strategy is external"),
    validation = Rule::new("self.strategy != 'job' || has(self.job)")
        .message("spec.build.job is required when spec.build.strategy is job"),
    validation = Rule::new("self.strategy != 'acrTask' || has(self.acrTask)")
        .message("spec.build.acrTask is required when spec.build.strategy is acrTask: set registryId and taskName or encodedTask"),
    validation = Rule::new("!has(self.acrTask) || self.strategy == 'acrTask'")
        .message("spec.build.acrTask applies only with spec.build.strategy: acrTask; remove it or set the strategy to acrTask")
)]
pub struct Build {
    /// `rebase` (default): re-base the application image natively onto the new base image.
    /// `job`: run a Kubernetes Job with the user's builder. `external`: someone else's CI builds;
    /// Tidegate waits for the image. `acrTask`: run an Azure Container Registry Task (see
    /// `spec.build.acrTask`).
    #[serde(default)]
    pub strategy: BuildStrategy,
    /// Settings of the `rebase` strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebase: Option<RebaseBuild>,
    /// Settings of the `external` strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalBuild>,
    /// Settings of the `job` strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobBuild>,
    /// Settings of the `acrTask` strategy; required with it, refused without it.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "acrTask")]
    pub acr_task: Option<AcrTaskBuild>,
}

/// How a fix is rebuilt.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum BuildStrategy {
    /// Re-base the application image onto the new base image, natively, without a builder.
    #[default]
    Rebase,
    /// Run an Azure Container Registry Task.
    AcrTask,
    /// Run a Kubernetes Job from a template.
    Job,
    /// Wait for an image built by someone else's CI.
    External,
}

/// Settings of the native rebase.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RebaseBuild {
    /// The tag of the application image to rebase, when the image's own base annotations
    /// (`org.opencontainers.image.base.name`) do not say enough. Default: the production digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub source_tag: Option<String>,
}

/// Settings of the `external` build strategy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalBuild {
    /// Webhook called to ask for a rebuild (for example a CI pipeline dispatch), `https://` or,
    /// for local testing, `http://`.
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.startsWith('http://')")
        .message("spec.build.external.webhookUrl must be an http(s) URL"))]
    #[schemars(length(min = 8, max = 2048))]
    pub webhook_url: String,
    /// How long to wait for the rebuilt image, between `1m` and `6h`. Default `1h`.
    #[serde(default = "default_external_timeout")]
    #[x_kube(validation = Rule::new(cel_duration_between("1m", "6h"))
        .message("spec.build.external.timeout must be a duration between 1m and 6h"))]
    #[schemars(length(max = 32))]
    pub timeout: String,
}

/// Settings of the `job` build strategy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobBuild {
    /// Name of a ConfigMap in the policy's namespace that holds the Job template (key `job.yaml`).
    #[schemars(length(min = 1, max = 253))]
    pub template_config_map: String,
    /// How long the build Job may run, between `1m` and `6h`. Default `1h`.
    #[serde(default = "default_external_timeout")]
    #[x_kube(validation = Rule::new(cel_duration_between("1m", "6h"))
        .message("spec.build.job.timeout must be a duration between 1m and 6h"))]
    #[schemars(length(max = 32))]
    pub timeout: String,
}

/// Settings of the `acrTask` build strategy: Tidegate schedules one run of an Azure Container
/// Registry Task per Release, in the registry `registryId`, and takes the digest the run reports
/// for the policy's image (`spec.image`, which must be in that registry).
///
/// The run gets these values (`{{.Values.NAME}}` in the task's YAML), as a build Job gets them
/// as environment variables: `TIDEGATE_IMAGE_REPOSITORY` (`spec.image`, e.g.
/// `myregistry.azurecr.io/shop/web`), `TIDEGATE_IMAGE_TAG` (a tag unique to the Release),
/// `TIDEGATE_BASE_IMAGE` (the new base image, `ref@sha256:…`) and `TIDEGATE_RELEASE` (the
/// Release's name). The task pushes the rebuilt image to
/// `{{.Values.TIDEGATE_IMAGE_REPOSITORY}}:{{.Values.TIDEGATE_IMAGE_TAG}}`; an image it pushes
/// anywhere else is not taken.
///
/// The controller's operator must grant the registry (or its resource group or subscription)
/// to the policy's namespace with `--azure-grant`; otherwise nothing is sent to Azure.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.taskName) != has(self.encodedTask)")
        .message("spec.build.acrTask needs exactly one of taskName (an ACR Task in the registry) and encodedTask (a base64 task YAML)"),
    validation = Rule::new("!has(self.platform) || has(self.encodedTask)")
        .message("spec.build.acrTask.platform applies only with encodedTask: an existing task (taskName) runs on its own platform")
)]
pub struct AcrTaskBuild {
    /// Azure resource ID of the container registry that runs the task,
    /// `/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.ContainerRegistry/registries/{name}`.
    #[x_kube(validation = Rule::new("self.matches('^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft.ContainerRegistry/registries/[^/]+$')")
        .message("spec.build.acrTask.registryId must be an Azure container registry resource ID"))]
    #[schemars(length(min = 1, max = 1024))]
    pub registry_id: String,
    /// Name of an existing ACR Task in that registry to run (`az acr task create`). Exactly one of
    /// `taskName` and `encodedTask`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9][A-Za-z0-9_-]*$')")
        .message("spec.build.acrTask.taskName must be an ACR task name: letters, digits, '-' and '_' (5 to 50 characters)"))]
    #[schemars(length(min = 5, max = 50))]
    pub task_name: Option<String>,
    /// An ACR task YAML (the `steps:` file of `az acr run`), base64-encoded, run as a one-off
    /// task. Exactly one of `taskName` and `encodedTask`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9+/]+={0,2}$') && size(self) % 4 == 0")
        .message("spec.build.acrTask.encodedTask must be base64 (standard alphabet, padded)"))]
    #[schemars(length(min = 4, max = 65536))]
    pub encoded_task: Option<String>,
    /// The platform an `encodedTask` runs on. Default `linux`/`amd64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<AcrTaskPlatform>,
    /// How long the run may take, between `1m` and `6h`, counted from when Tidegate scheduled it.
    /// Default `1h`. A run still going after that is cancelled and the Release fails.
    #[serde(default = "default_external_timeout")]
    #[x_kube(validation = Rule::new(cel_duration_between("1m", "6h"))
        .message("spec.build.acrTask.timeout must be a duration between 1m and 6h"))]
    #[schemars(length(max = 32))]
    pub timeout: String,
}

/// The platform of an `encodedTask` run.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AcrTaskPlatform {
    /// `linux` (default) or `windows`.
    #[serde(default = "default_acr_os")]
    #[x_kube(validation = Rule::new("self in ['linux', 'windows']")
        .message("spec.build.acrTask.platform.os must be linux or windows"))]
    #[schemars(length(max = 16))]
    pub os: String,
    /// `amd64` (default), `arm64`, `arm` or `x86`.
    #[serde(default = "default_acr_architecture")]
    #[x_kube(validation = Rule::new("self in ['amd64', 'arm64', 'arm', 'x86']")
        .message("spec.build.acrTask.platform.architecture must be amd64, arm64, arm or x86"))]
    #[schemars(length(max = 16))]
    pub architecture: String,
}

impl Default for AcrTaskPlatform {
    fn default() -> Self {
        Self { os: default_acr_os(), architecture: default_acr_architecture() }
    }
}

fn default_acr_os() -> String {
    "linux".into()
}

fn default_acr_architecture() -> String {
    "amd64".into()
}

/// How candidate images are scanned and which findings block them.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.scanner != 'osv'")
        .message("spec.scan.scanner osv is not supported yet: set trivy (the controller runs Trivy), trivyReport (signed reports from CI) or configMapReport"),
    validation = Rule::new("!has(self.defender) || self.scanner == 'defender'")
        .message("spec.scan.defender applies only with spec.scan.scanner: defender; remove it or set the scanner to defender"),
    validation = Rule::new("self.scanner != 'trivyOperator'")
        .message("spec.scan.scanner cannot be trivyOperator: the Trivy Operator scans only workloads that already run, and a candidate runs nowhere before its scan passes; scan candidates with trivy or trivyReport, and set spec.triggers.rescan.scanner: trivyOperator to watch production with the operator's reports"),
    validation = Rule::new("!has(self.blockSeverities) || size(self.blockSeverities) > 0")
        .message("spec.scan.blockSeverities must name at least one severity: an empty list would let every finding through without anyone seeing that the vulnerability gate is off, and Tidegate does not offer a way to switch it off")
)]
pub struct Scan {
    /// Where findings come from. Required.
    /// - `trivy`: the controller runs Trivy on the exact digest itself (it must be started with
    ///   `--trivy-binary`; otherwise the Release stops with `ScannerNotConfigured`).
    /// - `trivyReport`: a Trivy JSON report (`trivy image --format json <repo>@sha256:…`) that CI
    ///   attaches to the digest as an OCI referrer (artifact type
    ///   `application/vnd.tidegate.trivy.report.v1+json`) and signs with the Notary Project. It
    ///   counts only if the controller's trust policy accepts its signature, it names the digest,
    ///   and it is younger than `maxReportAge`.
    /// - `configMapReport`: unsigned Trivy reports in ConfigMaps labelled
    ///   `tidegate.dev/scan-report=true`. Anyone who may write ConfigMaps in the namespace could
    ///   pass the gate with one, so they count only where the namespace's deployer was granted
    ///   `trust` on `unsignedscanreports.tidegate.dev` (ClusterRole
    ///   `tidegate-unsigned-scan-reports`); elsewhere the Release stops with
    ///   `UnsignedReportsNotAllowed`.
    /// - `defender`: Microsoft Defender for Cloud's findings of the digest in Azure Container
    ///   Registry (sub-assessments of "Azure registry container images should have
    ///   vulnerabilities resolved", read through Azure Resource Graph), in the subscriptions
    ///   the controller's operator granted the policy's namespace (`--azure-grant`). A digest
    ///   Defender has not assessed yet is not clean: the Release waits in `Scanning`, and fails
    ///   when `defender.assessmentTimeout` passes without an assessment.
    ///
    /// `osv` is not supported yet and refused at admission; `trivyOperator` is refused here (it
    /// only scans what already runs) and belongs in `spec.triggers.rescan.scanner`.
    pub scanner: Scanner,
    /// Settings of the `defender` scanner; only with `scanner: defender`. Default: an
    /// `assessmentTimeout` of `6h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defender: Option<DefenderScan>,
    /// Severities that block a Release. Default `[Critical, High]`. At least one: the gate cannot
    /// be switched off with an empty list.
    #[serde(default = "default_block_severities")]
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[schemars(length(max = 5))]
    pub block_severities: Vec<Severity>,
    /// Count only findings that have a fixed version available. Default `true`.
    #[serde(default = "default_true")]
    pub only_fixable: bool,
    /// No-regression mode: the digest now in production is scanned too, and a blocking finding
    /// that production has as well does not block the candidate (it is no worse than what runs);
    /// only findings production does not have block. Default `false`: every blocking finding
    /// blocks. Without a production digest every blocking finding blocks.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_regression: bool,
    /// The oldest a report may be and still count (`trivyReport`, `configMapReport`,
    /// `trivyOperator`, and Defender's newest `timeGenerated` for `defender`), as a duration between `1m` and `720h`. Default `24h`. A stale report
    /// does not count: the Release waits in `Scanning` for a fresh one.
    #[serde(default = "default_report_age")]
    #[x_kube(validation = Rule::new(cel_duration_between("1m", "720h"))
        .message("spec.scan.maxReportAge must be a duration between 1m and 720h, e.g. 24h"))]
    #[schemars(length(max = 32))]
    pub max_report_age: String,
    /// Accepted findings. Each one needs a reason and an expiry, and lapses on its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["id".into()]))]
    #[schemars(length(max = 256))]
    pub exceptions: Vec<VulnerabilityException>,
}

/// What a policy stored before `spec.scan` was required reads as: Trivy reports, Critical and
/// High findings block. The CRD schema has no such default; admission requires `spec.scan`.
impl Default for Scan {
    fn default() -> Self {
        Self {
            scanner: Scanner::TrivyReport,
            defender: None,
            block_severities: default_block_severities(),
            only_fixable: true,
            no_regression: false,
            max_report_age: default_report_age(),
            exceptions: Vec::new(),
        }
    }
}

/// Settings of the `defender` scanner.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DefenderScan {
    /// How long a candidate waits in `Scanning` for Microsoft Defender for Cloud to assess its
    /// digest (Defender scans an image within a few hours of its push), counted from when the
    /// candidate was built, as a duration between `10m` and `72h`. Default `6h`. Without an
    /// assessment by then the Release fails: a digest Defender knows nothing about is never
    /// treated as clean.
    #[serde(default = "default_defender_timeout")]
    #[x_kube(validation = Rule::new(cel_duration_between("10m", "72h"))
        .message("spec.scan.defender.assessmentTimeout must be a duration between 10m and 72h, e.g. 6h"))]
    #[schemars(length(max = 32))]
    pub assessment_timeout: String,
}

impl Default for DefenderScan {
    fn default() -> Self {
        Self { assessment_timeout: default_defender_timeout() }
    }
}

fn default_defender_timeout() -> String {
    "6h".into()
}

/// Where the findings of an image come from: `trivy`, `trivyReport`, `trivyOperator`,
/// `configMapReport` or `defender`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum Scanner {
    /// Signed Trivy JSON reports that CI attaches to the digest as OCI referrers.
    TrivyReport,
    /// A scanner built into the controller, backed by the OSV database. Not supported yet.
    Osv,
    /// Trivy run by the controller on the digest (`--trivy-binary`).
    Trivy,
    /// Microsoft Defender for Cloud's vulnerability assessment of the digest in Azure Container
    /// Registry, read through Azure Resource Graph.
    Defender,
    /// The Trivy Operator's `VulnerabilityReport` resources.
    TrivyOperator,
    /// Unsigned Trivy JSON reports in ConfigMaps, only where a namespace administrator allowed
    /// them.
    #[serde(rename = "configMapReport")]
    ConfigMapReport,
}

/// Vulnerability severity.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Critical.
    Critical,
    /// High.
    High,
    /// Medium.
    Medium,
    /// Low.
    Low,
    /// Severity not known.
    Unknown,
}

/// An accepted vulnerability finding.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VulnerabilityException {
    /// The vulnerability ID, for example `CVE-2024-3094` or `GHSA-xxxx-xxxx-xxxx`.
    #[schemars(length(min = 3, max = 64))]
    pub id: String,
    /// Why the finding is accepted (for example "not reachable: the affected module is not
    /// loaded"). Required.
    #[x_kube(validation = Rule::new("self.trim().size() >= 10")
        .message("spec.scan.exceptions[].reason must explain in at least 10 characters why the finding is accepted"))]
    #[schemars(length(min = 1, max = 1024))]
    pub reason: String,
    /// Who owns the exception and answers for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub owner: Option<String>,
    /// When the exception lapses (RFC 3339). Required: an exception is never permanent.
    pub expires: Time,
}

/// How images are signed and verified. Not supported yet: refused at admission.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.keySecret) != has(self.keyVaultKeyId)")
    .message("spec.sign: set exactly one of keySecret or keyVaultKeyId"))]
pub struct Sign {
    /// Name of a Secret in the policy's namespace holding the Notary Project signing key
    /// (`tls.key`) and its certificate chain (`tls.crt`).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "keySecret")]
    #[schemars(length(min = 1, max = 253))]
    pub key_secret: Option<String>,
    /// Azure Key Vault key identifier used to sign, instead of a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "keyVaultKeyId")]
    #[x_kube(validation = Rule::new("self.startsWith('https://')")
        .message("spec.sign.keyVaultKeyId must be an https:// Key Vault key identifier"))]
    #[schemars(length(max = 1024))]
    pub key_vault_key_id: Option<String>,
    /// Name of a ConfigMap holding the Notary Project trust policy (`trustpolicy.json`) and trust
    /// store certificates used to verify before every deployment.
    #[schemars(length(min = 1, max = 253))]
    pub trust_policy_config_map: String,
}

/// The kind of a workload decides how it is released.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum WorkloadKind {
    /// Serves HTTP; traffic can be routed between revisions (default strategy `blueGreen`).
    Http,
    /// Consumes a queue; two active revisions would both consume (default strategy `replace`).
    Worker,
    /// Runs to completion on a schedule or on demand (strategy `direct`).
    Job,
}

/// One workload that runs the policy's image.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.strategy) || self.kind != 'job' || self.strategy.type == 'direct'")
        .message("spec.workloads[].strategy.type must be direct for a job workload: jobs have no revisions or traffic to split"),
    validation = Rule::new("!has(self.strategy) || self.kind != 'worker' || self.strategy.type in ['replace', 'overlap']")
        .message("spec.workloads[].strategy.type must be replace or overlap for a worker workload"),
    validation = Rule::new("!has(self.strategy) || self.kind != 'http' || self.strategy.type in ['blueGreen', 'canary', 'rolling']")
        .message("spec.workloads[].strategy.type must be blueGreen, canary or rolling for an http workload"),
    validation = Rule::new("self.kind == 'job' ? (!has(self.staging.kubernetes) || self.staging.kubernetes.kind == 'CronJob') && (!has(self.production.kubernetes) || self.production.kubernetes.kind == 'CronJob') && !has(self.staging.containerApp) && !has(self.production.containerApp) : (!has(self.staging.kubernetes) || self.staging.kubernetes.kind == 'Deployment') && (!has(self.production.kubernetes) || self.production.kubernetes.kind == 'Deployment') && !has(self.staging.containerAppsJob) && !has(self.production.containerAppsJob)")
        .message("spec.workloads[]: a job workload targets a CronJob or a containerAppsJob; http and worker workloads target a Deployment or a containerApp"),
    validation = Rule::new("!has(self.strategy) || self.strategy.type != 'canary' || has(self.production.containerApp)")
        .message("spec.workloads[].strategy.type canary needs a containerApp production target: Kubernetes Deployments have no traffic split here; use blueGreen"),
    validation = Rule::new("!has(self.production.containerApp) || !has(self.production.containerApp.label)")
        .message("spec.workloads[].production.containerApp.label applies to staging only: production traffic is moved by weights, not labels"),
    validation = Rule::new("!has(self.production.containerAppsJob) || !has(self.production.containerAppsJob.verifyExecution)")
        .message("spec.workloads[].production.containerAppsJob.verifyExecution applies to staging only: Tidegate never starts production executions")
)]
pub struct Workload {
    /// Name of the workload, unique within the policy (lowercase, digits and `-`).
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
        .message("spec.workloads[].name must be a DNS label: lowercase letters, digits and '-'"))]
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// `http`, `worker` or `job`; decides the default rollout strategy.
    pub kind: WorkloadKind,
    /// Where candidates run and are tested before approval.
    pub staging: Target,
    /// Where an approved digest runs. Only an approved Promotion writes here.
    pub production: Target,
    /// How a new digest is rolled out to this workload. Default: `blueGreen` for `http`,
    /// `replace` for `worker`, `direct` for `job`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
}

/// Where a workload runs: a Kubernetes object (`kubernetes`), an Azure Container App
/// (`containerApp`) or an Azure Container Apps Job (`containerAppsJob`); exactly one. An Azure
/// target is changed only when the controller's operator granted the policy's namespace the
/// Azure scope holding it (`--azure-grant`, see docs/azure.md).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("(has(self.kubernetes) ? 1 : 0) + (has(self.containerApp) ? 1 : 0) + (has(self.containerAppsJob) ? 1 : 0) == 1")
        .message("a target must set exactly one of kubernetes, containerApp or containerAppsJob"),
    validation = Rule::new("!has(self.containerApp) || self.containerApp.resourceId.matches('^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft.App/containerApps/[^/]+$')")
        .message("spec.workloads[].staging/production.containerApp.resourceId must name a Microsoft.App/containerApps resource"),
    validation = Rule::new("!has(self.containerAppsJob) || self.containerAppsJob.resourceId.matches('^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft.App/jobs/[^/]+$')")
        .message("spec.workloads[].staging/production.containerAppsJob.resourceId must name a Microsoft.App/jobs resource"),
    validation = Rule::new("!has(self.containerApp) || !has(self.containerApp.verifyExecution)")
        .message("spec.workloads[].staging/production.containerApp.verifyExecution applies to containerAppsJob only: a Container App has no executions"),
    validation = Rule::new("!has(self.containerAppsJob) || !has(self.containerAppsJob.label)")
        .message("spec.workloads[].staging/production.containerAppsJob.label applies to containerApp only: a job has no revisions or traffic"),
    validation = Rule::new("!has(self.image)")
        .message("spec.workloads[].staging/production.image is not supported yet: Tidegate reads the image a target runs from the target itself, and each Promotion records the digest it replaces as the rollback point; remove image")
)]
pub struct Target {
    /// A Kubernetes Deployment (for `http` and `worker`) or CronJob (for `job`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesTarget>,
    /// An Azure Container App (for `http` and `worker`).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "containerApp")]
    pub container_app: Option<AzureTarget>,
    /// An Azure Container Apps Job (for `job`).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "containerAppsJob")]
    pub container_apps_job: Option<AzureTarget>,
    /// The image this target runs when Tidegate adopts it. Not supported yet; refused at
    /// admission: the controller reads the running image from the target, and each Promotion
    /// records the digest it replaces as the rollback point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub image: Option<String>,
}

/// A Kubernetes workload object.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesTarget {
    /// `Deployment` or `CronJob`.
    pub kind: KubernetesKind,
    /// Namespace of the object. Default: the policy's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// Name of the object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Name of the container whose image Tidegate manages. Default: the first container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub container: Option<String>,
    /// For `http` workloads: the Service that routes to the active colour (blue-green), also the
    /// URL base that staging tests call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub service: Option<String>,
}

/// Kind of a Kubernetes target.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KubernetesKind {
    /// `apps/v1` Deployment.
    Deployment,
    /// `batch/v1` CronJob.
    CronJob,
}

/// An Azure Container App or Container Apps Job.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AzureTarget {
    /// Azure resource ID, for example
    /// `/subscriptions/…/resourceGroups/rg/providers/Microsoft.App/containerApps/web`.
    #[x_kube(validation = Rule::new("self.matches('^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft.App/(containerApps|jobs)/[^/]+$')")
        .message("resourceId must be a Microsoft.App containerApps or jobs resource ID"))]
    #[schemars(length(min = 1, max = 1024))]
    pub resource_id: String,
    /// Name of the container whose image Tidegate manages. Default: the first container.
    /// Tidegate changes only this container's image (and, for Container Apps, the traffic
    /// weights and labels); every other property of the app or job stays as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub container: Option<String>,
    /// Staging only, Container Apps only: the traffic label of the candidate revision, whose URL
    /// (`https://<app>---<label>.<environment domain>`) staging tests call. When the staging
    /// target names the production app, the candidate is a revision of that app at 0 % traffic
    /// with this label. Default `staging`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[a-z][a-z0-9-]*[a-z0-9]$') && !self.contains('--')")
        .message("spec.workloads[].staging.containerApp.label must be lowercase letters, digits and single '-', starting with a letter"))]
    #[schemars(length(min = 2, max = 32))]
    pub label: Option<String>,
    /// Staging only, Container Apps Jobs only: after the job is updated to the candidate, start
    /// one execution and wait for it to succeed before the Release goes on. Default `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_execution: Option<bool>,
}

/// How a new digest is rolled out.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.type != 'canary' || has(self.canarySteps)")
        .message("spec.workloads[].strategy.canarySteps is required for type canary, for example [10, 50]"),
    validation = Rule::new("!has(self.canarySteps) || self.type == 'canary'")
        .message("spec.workloads[].strategy.canarySteps applies to type canary only"),
    validation = Rule::new("!has(self.canaryStepDuration) || self.type == 'canary'")
        .message("spec.workloads[].strategy.canaryStepDuration applies to type canary only")
)]
pub struct Strategy {
    /// `blueGreen`, `canary` (Container Apps only) or `rolling` for `http`; `replace` or
    /// `overlap` for `worker`; `direct` for `job`.
    #[serde(rename = "type")]
    pub kind: StrategyKind,
    /// `canary` only: traffic percentages the new revision gets in order before all traffic,
    /// for example `[10, 50]`; each between 1 and 99, increasing. Each step is held for
    /// `canaryStepDuration` while the new revision stays healthy; a failure puts all traffic
    /// back on the previous revision.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "canarySteps")]
    #[x_kube(validation = Rule::new("self.all(w, w >= 1 && w <= 99) && (size(self) < 2 || [1, 2, 3, 4, 5, 6, 7, 8, 9].all(i, i >= size(self) || self[i - 1] < self[i]))")
        .message("spec.workloads[].strategy.canarySteps must be increasing percentages between 1 and 99"))]
    #[schemars(length(min = 1, max = 10))]
    pub canary_steps: Option<Vec<i32>>,
    /// `canary` only: how long each step is held, between `10s` and `1h`. Default `1m`.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "canaryStepDuration")]
    #[x_kube(validation = Rule::new(cel_duration_between("10s", "1h"))
        .message("spec.workloads[].strategy.canaryStepDuration must be a duration between 10s and 1h"))]
    #[schemars(length(max = 32))]
    pub canary_step_duration: Option<String>,
}

/// Rollout strategy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum StrategyKind {
    /// New revision at 0 % traffic, checked through its own URL, then switched; the previous one
    /// is kept for instant rollback.
    BlueGreen,
    /// Like blue-green with intermediate traffic steps (`canarySteps`). Container Apps only:
    /// Kubernetes Deployments have no traffic split here.
    Canary,
    /// A plain rolling update of one Deployment.
    Rolling,
    /// The new revision becomes the only active one once healthy.
    Replace,
    /// Old and new revisions run side by side for a while; only for workers that tolerate two
    /// consumers.
    Overlap,
    /// The job definition is updated to the digest.
    Direct,
}

/// What must pass on staging.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StagingTests {
    /// HTTP checks against the staging URL of `http` workloads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[schemars(length(max = 32))]
    pub http: Vec<HttpCheck>,
    /// A test Job, run in the staging namespace; its success or failure decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<TestJob>,
}

/// One HTTP check.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpCheck {
    /// Name of the check, shown in the Release's test results.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// The workload whose staging URL is called.
    #[schemars(length(min = 1, max = 63))]
    pub workload: String,
    /// Base URL to call instead of the staging Service's in-cluster address
    /// (`http://<service>.<namespace>.svc`), for example an ingress, or a loopback address when the
    /// controller runs outside the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')")
        .message("spec.tests.http[].baseUrl must be an http(s) URL"))]
    #[schemars(length(max = 2048))]
    pub base_url: Option<String>,
    /// Path to request, starting with `/`.
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("spec.tests.http[].path must start with /"))]
    #[schemars(length(min = 1, max = 2048))]
    pub path: String,
    /// Expected HTTP status. Default 200.
    #[serde(default = "default_status")]
    #[schemars(range(min = 100, max = 599))]
    pub expect_status: i32,
    /// Per-request timeout, between `1s` and `5m`. Default `10s`.
    #[serde(default = "default_http_timeout")]
    #[x_kube(validation = Rule::new(cel_duration_between("1s", "5m"))
        .message("spec.tests.http[].timeout must be a duration between 1s and 5m"))]
    #[schemars(length(max = 32))]
    pub timeout: String,
}

/// A test Job.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.timeout)")
    .message("spec.tests.job.timeout is not supported yet: the controller does not stop the test Job; set activeDeadlineSeconds in the Job template (job.yaml) instead"))]
pub struct TestJob {
    /// Name of a ConfigMap in the policy's namespace holding the Job template (key `job.yaml`).
    /// The candidate's digest reference is passed as the environment variable `TIDEGATE_IMAGE`.
    /// The Release waits until the Job completes or fails; bound its run time with
    /// `activeDeadlineSeconds` in the template.
    #[schemars(length(min = 1, max = 253))]
    pub template_config_map: String,
    /// How long the Job may run. Not supported yet; refused at admission: set
    /// `activeDeadlineSeconds` in the Job template instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub timeout: Option<String>,
}

/// Approval and post-deployment rules.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PromotionRules {
    /// Number of distinct approvers needed, 1 to 5. Default 1.
    #[serde(default = "default_approvals")]
    #[schemars(range(min = 1, max = 5))]
    pub required_approvals: i32,
    /// How long an approval stays valid before it must be given again, between `5m` and `720h`.
    /// Default `24h`.
    #[serde(default = "default_approval_ttl")]
    #[x_kube(validation = Rule::new(cel_duration_between("5m", "720h"))
        .message("spec.promotion.approvalValidFor must be a duration between 5m and 720h"))]
    #[schemars(length(max = 32))]
    pub approval_valid_for: String,
    /// How long production is watched after a change, between `1m` and `24h`. Default `10m`.
    #[serde(default = "default_monitor_window")]
    #[x_kube(validation = Rule::new(cel_duration_between("1m", "24h"))
        .message("spec.promotion.monitorWindow must be a duration between 1m and 24h"))]
    #[schemars(length(max = 32))]
    pub monitor_window: String,
    /// Roll back to the previous digest automatically when the monitor window fails.
    /// Default `true`.
    #[serde(default = "default_true")]
    pub auto_rollback: bool,
}

impl Default for PromotionRules {
    fn default() -> Self {
        Self {
            required_approvals: default_approvals(),
            approval_valid_for: default_approval_ttl(),
            monitor_window: default_monitor_window(),
            auto_rollback: true,
        }
    }
}

/// What Tidegate observed and did for this policy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImagePolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The digest now running in production (all workloads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub production_digest: Option<String>,
    /// The digest now running in staging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging_digest: Option<String>,
    /// Digests production ran before the current one, newest first; the first one is where a
    /// rollback of the current Promotion goes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub production_history: Vec<DigestRecord>,
    /// The last digest seen behind `spec.triggers.baseImage.ref`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_digest: Option<String>,
    /// Name of the newest Release of this policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_release: Option<String>,
    /// Production workloads that do not run what Tidegate last deployed with an approved
    /// Promotion (changed by hand, typically with the `tidegate.dev/break-glass` annotation), and
    /// marked workloads when no Promotion has deployed anything yet. The next Promotion shows it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub drift: Vec<ProductionDrift>,
    /// The last rescan of the digest in production (`spec.triggers.rescan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub production_scan: Option<ProductionScan>,
    /// Current conditions (`Ready`, `ProductionDrift`, `VulnerableInProduction`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// What the last rescan of the production digest found.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProductionScan {
    /// The digest that was scanned.
    pub digest: String,
    /// When it was scanned.
    pub scanned_at: Time,
    /// Which vulnerability data was used (the Trivy database's update time), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Findings that block under `spec.scan` and have a fix: a Release fixes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub fixable: Vec<crate::release::TopFinding>,
    /// Findings of a blocking severity that have no fix yet: nothing to rebuild for, until a fix
    /// is published.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub unfixed: Vec<crate::release::TopFinding>,
    /// The Release started for the fixable findings, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
}

/// A production workload that runs something other than what was approved.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProductionDrift {
    /// The workload, `Kind namespace/name`.
    pub workload: String,
    /// The image it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The digest Tidegate last deployed there with an approved Promotion, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_digest: Option<String>,
    /// The reason given in `tidegate.dev/break-glass`, when the change was a break-glass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub break_glass: Option<String>,
    /// Who broke the glass (`tidegate.dev/break-glass-by`, recorded by the admission policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass_by: Option<String>,
}

/// A digest that ran in production, and when.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DigestRecord {
    /// The digest.
    pub digest: String,
    /// The Promotion that deployed it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<String>,
    /// When Tidegate deployed it; empty for a digest that ran before Tidegate managed the
    /// workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_at: Option<Time>,
}

fn default_base_interval() -> String {
    "15m".into()
}
fn default_rescan_interval() -> String {
    "24h".into()
}
fn default_report_age() -> String {
    "24h".into()
}
fn default_external_timeout() -> String {
    "1h".into()
}
fn default_http_timeout() -> String {
    "10s".into()
}
fn default_approval_ttl() -> String {
    "24h".into()
}
fn default_monitor_window() -> String {
    "10m".into()
}
fn default_approvals() -> i32 {
    1
}
fn default_status() -> i32 {
    200
}
fn default_true() -> bool {
    true
}
fn default_block_severities() -> Vec<Severity> {
    vec![Severity::Critical, Severity::High]
}

/// Schema transform: drops the `default` that schemars derives from `#[serde(default)]`, for a
/// field whose Rust default only serves reading old objects, and that admission must ask for.
fn without_default(schema: &mut schemars::Schema) {
    if let Some(object) = schema.as_object_mut() {
        object.remove("default");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// The spec schema as written to `crds/` (descriptions unwrapped).
    fn spec_schema() -> Value {
        let (_, crd) =
            crate::crds::all().into_iter().find(|(_, crd)| crd.spec.names.kind == "ImagePolicy").expect("ImagePolicy");
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).expect("schema serialises");
        schema["openAPIV3Schema"]["properties"]["spec"].clone()
    }

    fn messages(schema: &Value) -> Vec<(String, String)> {
        schema["x-kubernetes-validations"]
            .as_array()
            .map(|rules| {
                rules
                    .iter()
                    .map(|r| {
                        (
                            r["rule"].as_str().unwrap_or_default().into(),
                            r["message"].as_str().unwrap_or_default().into(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn scan_is_required_and_no_scanner_is_a_default() {
        let spec = spec_schema();
        let scan = &spec["properties"]["scan"];
        assert!(scan.get("default").is_none(), "the schema must not fill in spec.scan: {scan}");
        assert!(scan["properties"]["scanner"].get("default").is_none());
        assert_eq!(scan["required"], json!(["scanner"]));
        assert!(
            messages(&spec)
                .iter()
                .any(|(rule, message)| rule == "has(self.scan)" && message.starts_with("spec.scan is required: ")),
            "{:?}",
            messages(&spec)
        );
        // trivy, trivyReport, configMapReport and defender pass; the others are refused by name.
        let refused: Vec<String> = messages(scan).into_iter().map(|(_, m)| m).collect();
        let prefix = "spec.scan.scanner osv is not supported yet: ";
        assert!(refused.iter().any(|m| m.starts_with(prefix)), "{refused:?}");
        for value in ["trivy ", "trivyReport ", "trivyOperator ", "configMapReport ", "defender "] {
            assert!(!refused.iter().any(|m| m.starts_with(&format!("spec.scan.scanner {value}"))), "{refused:?}");
        }
        // The gate cannot be switched off with an empty list.
        assert!(
            refused.iter().any(|m| m.starts_with("spec.scan.blockSeverities must name at least one")),
            "{refused:?}"
        );
    }

    #[test]
    fn a_policy_stored_before_scan_was_required_still_reads() {
        let spec: ImagePolicySpec =
            serde_json::from_value(json!({"image": "registry.example.com/shop/app", "workloads": []}))
                .expect("spec without scan");
        assert_eq!(spec.scan.scanner, Scanner::TrivyReport);
        assert_eq!(spec.scan.block_severities, [Severity::Critical, Severity::High]);
        assert!(serde_json::from_value::<Scan>(json!({})).is_err(), "scanner is required");
    }

    #[test]
    fn acr_task_builds_are_checked_at_admission_naming_the_field() {
        let spec = spec_schema();
        let build = messages(&spec["properties"]["build"]);
        assert!(
            build.iter().any(|(rule, m)| rule == "self.strategy != 'acrTask' || has(self.acrTask)"
                && m.starts_with("spec.build.acrTask is required when spec.build.strategy is acrTask")),
            "{build:?}"
        );
        assert!(build.iter().all(|(_, m)| !m.contains("not supported yet")), "{build:?}");
        let acr = &spec["properties"]["build"]["properties"]["acrTask"];
        let rules = messages(acr);
        assert!(
            rules.iter().any(|(rule, m)| rule == "has(self.taskName) != has(self.encodedTask)"
                && m.contains("exactly one of taskName")),
            "{rules:?}"
        );
        assert_eq!(acr["required"], json!(["registryId"]));
        assert_eq!(acr["properties"]["timeout"]["default"], "1h");
        let timeout = messages(&acr["properties"]["timeout"]);
        assert!(timeout[0].1.starts_with("spec.build.acrTask.timeout must be"), "{timeout:?}");
        let parsed: AcrTaskBuild = serde_json::from_value(json!({
            "registryId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r",
            "encodedTask": "c3RlcHM6Cg==", "platform": {}
        }))
        .expect("acrTask");
        assert_eq!(parsed.timeout, "1h");
        assert_eq!(parsed.platform, Some(AcrTaskPlatform::default()));
    }

    #[test]
    fn every_refused_field_says_so_in_kubectl_explain() {
        let spec = spec_schema();
        let p = |path: &[&str]| {
            let mut here = &spec;
            for part in path {
                here = match *part {
                    "[]" => &here["items"],
                    name => &here["properties"][name],
                };
            }
            here["description"].as_str().unwrap_or_default().to_string()
        };
        let refused: &[&[&str]] = &[
            &["triggers", "schedule"],
            &["sign"],
            &["tests", "job", "timeout"],
            &["workloads", "[]", "production", "image"],
        ];
        for path in refused {
            let text = p(path);
            assert!(text.contains("Not supported yet; refused at admission"), "{path:?}: {text}");
        }
        for path in [&["build", "strategy"][..], &["build", "acrTask"]] {
            let text = p(path);
            assert!(!text.contains("Not supported yet") && !text.contains("not supported yet"), "{path:?}: {text}");
        }
    }
}
