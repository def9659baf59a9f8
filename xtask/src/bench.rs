//! `cargo xtask bench`: how long a rebase takes as images grow, Tidegate's native rebase
//! (`tidegate_providers::rebase::rebase`, in process) next to `crane rebase`
//! (`github.com/google/go-containerregistry/cmd/crane`, the binary `cargo xtask tools` builds), on
//! the same CNCF distribution registry in the same run.
//!
//! For each total image size S MiB the bench pushes, with Tidegate's registry client:
//!
//! - base v1: two layers of S/4 MiB each;
//! - an application image built on it: v1's two layers and two of its own (S/4 MiB each), with
//!   the `org.opencontainers.image.base.name`/`.base.digest` annotations;
//! - base v2, under the same tag: two different layers of the same sizes.
//!
//! Layers are pseudo-random bytes with the uncompressed layer media type (diff ID = digest):
//! neither tool reads layer contents during a rebase (the registry's access log shows the bytes
//! each one downloads), so compressing them would only make the set-up slower.
//!
//! Every run rebases the application from v1 to v2 with each tool, in a repository of its own
//! that holds only the application (its blobs mounted there, untimed, before the run) and to a tag
//! of its own. So every run is a first rebase: the new base's layers are not in the repository yet
//! and each tool has to mount them. The order of the two tools alternates from run to run.
//!
//! Timed: Tidegate's `rebase()` call with a fresh `RegistryClient` (default options, new
//! connections), and the whole `crane rebase` process, start-up included (a `crane version`
//! baseline is reported beside it). The registry's access log is read after each run for the
//! requests, mounts, uploads and downloads it took. Each result is checked: its layers must be
//! v2's followed by the application's. Nothing is asserted about time: machines are noisy, and
//! this is a report, not a test.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tidegate_testenv::registry::pseudo_random_bytes;

use anyhow::{Context as _, Result, bail, ensure};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use tidegate_providers::rebase::{BASE_DIGEST, BASE_NAME, RebaseRequest, rebase};
use tidegate_providers::registry::types::{Descriptor, ImageManifest, OCI_CONFIG, OCI_MANIFEST};
use tidegate_providers::registry::{ClientOptions, RegistryClient, Repository};
use tidegate_testenv::registry::{Registry, RegistryOptions};
use tidegate_testenv::tools::{DISTRIBUTION_VERSION, GO_CONTAINERREGISTRY_VERSION, SupplyChainTools};

/// Arguments of `cargo xtask bench`: a benchmark, or (without one) the rebase benchmark.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: Option<Bench>,
    #[command(flatten)]
    rebase: RebaseArgs,
}

/// The benchmarks.
#[derive(Subcommand)]
enum Bench {
    /// Rebase time against image size, Tidegate's native rebase next to `crane rebase`, on one
    /// local distribution registry (what `cargo xtask bench` alone runs); writes docs/bench.md.
    Rebase(RebaseArgs),
    /// N ImagePolicies on one controller: base update → all AwaitingApproval, approval →
    /// production write, memory, API and registry requests, idle; writes docs/benchmarks.md.
    Scale(crate::bench_scale::ScaleArgs),
}

/// Runs the benchmark `args` names.
pub fn run(args: &BenchArgs) -> Result<()> {
    match &args.command {
        None => run_rebase(&args.rebase),
        Some(Bench::Rebase(rebase)) => run_rebase(rebase),
        Some(Bench::Scale(scale)) => crate::bench_scale::run(scale),
    }
}

/// Arguments of `cargo xtask bench rebase` (and of `cargo xtask bench` alone).
#[derive(Args)]
pub struct RebaseArgs {
    /// Total image sizes to measure, in MiB: half in the base's two layers, half in the
    /// application's two layers.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,128")]
    sizes: Vec<u64>,
    /// Timed rebases per tool and size.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Where to write the Markdown report (a relative path is taken from the repository root).
    #[arg(long, default_value = "docs/bench.md")]
    output: PathBuf,
}

const MIB: u64 = 1024 * 1024;
/// Uncompressed layers: a layer's diff ID is its digest.
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// The base's (moving) tag: v1 first, then v2.
const BASE_TAG: &str = "3.20";
/// The application's tag in each run's repository.
const APP_TAG: &str = "1.0";
/// How long to let the registry finish writing its access log after a run (untimed).
const LOG_SETTLE: Duration = Duration::from_millis(150);

/// The two rebasers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tool {
    Tidegate,
    Crane,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Self::Tidegate => "Tidegate",
            Self::Crane => "crane",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Self::Tidegate => "tidegate",
            Self::Crane => "crane",
        }
    }
}

/// The images of one size, pushed once.
struct Fixture {
    size_mib: u64,
    base: Repository,
    /// Where the application image was pushed; each run's repository mounts its blobs from here.
    seed: Repository,
    /// The application's manifest, put into each run's repository.
    app_manifest: Vec<u8>,
    /// The application's config and layer digests.
    app_blobs: Vec<String>,
    old_base: String,
    new_base: String,
    /// v2's layer digests followed by the application's own: what a correct rebase produces.
    expected_layers: Vec<String>,
    /// Size of every layer pushed, by digest, to count the bytes mounted and uploaded.
    sizes: BTreeMap<String, u64>,
}

/// What one rebase cost the registry, from its access log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Traffic {
    requests: u64,
    mounted: u64,
    mounted_bytes: u64,
    uploaded: u64,
    uploaded_bytes: u64,
    downloaded_bytes: u64,
}

/// One timed rebase.
struct Run {
    elapsed: Duration,
    traffic: Traffic,
    /// Repository and tag of the result.
    result: (Repository, String),
    manifest_type: String,
}

/// Everything measured for one size.
struct SizeResult {
    size_mib: u64,
    tidegate: Vec<Run>,
    crane: Vec<Run>,
    comparison: Comparison,
}

/// How the first results of the two tools compare.
struct Comparison {
    same_layers: bool,
    same_diff_ids: bool,
    same_manifest: bool,
    /// What differs between the two manifests and configs, in words.
    differences: Vec<String>,
}

/// Runs the rebase bench: tools, one registry, every size, the report.
fn run_rebase(args: &RebaseArgs) -> Result<()> {
    ensure!(args.runs > 0, "--runs must be at least 1");
    ensure!(!args.sizes.is_empty() && args.sizes.iter().all(|&s| s > 0), "--sizes must list sizes of at least 1 MiB");
    let started = Instant::now();
    let command = format!("cargo xtask {}", std::env::args().skip(1).collect::<Vec<_>>().join(" "));
    let machine = machine_info();

    // The registry and crane come from the supply-chain tools, built once from the pinned modules.
    tidegate_testenv::tools::build(&mut |line| eprintln!("[tools] {line}")).context("building the tools")?;
    let crane = SupplyChainTools::locate().context("locating the supply-chain tools")?.crane();

    let (results, crane_startup) = crate::runtime()?.block_on(measure(args, &crane))?;
    let elapsed = started.elapsed();

    let tables = render_tables(&results);
    println!("{tables}");
    let report = render_report(&command, &machine, elapsed, crane_startup, &results, &tables);
    let output = if args.output.is_absolute() { args.output.clone() } else { crate::root().join(&args.output) };
    if let Some(dir) = output.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&output, report).with_context(|| format!("writing {}", output.display()))?;
    eprintln!("[bench] wrote {} after {:.0?}", output.display(), elapsed);
    Ok(())
}

/// Starts the registry and measures every size; also times `crane version` as crane's start-up
/// baseline.
async fn measure(args: &RebaseArgs, crane: &Path) -> Result<(Vec<SizeResult>, Duration)> {
    let registry = Registry::start(RegistryOptions::default()).await.context("starting the distribution registry")?;
    eprintln!("[bench] distribution registry on {} (log {})", registry.host(), registry.log().display());
    // Set-up and checks use one client without a request budget, so they never wait; the timed
    // Tidegate runs get a client of their own (see `time_tidegate`).
    let setup = RegistryClient::new(ClientOptions {
        plain_http: registry.plain_http_hosts().into_iter().collect(),
        requests_per_second: 10_000.0,
        timeout: Duration::from_secs(300),
        ..ClientOptions::default()
    })
    .context("creating the registry client")?;

    let mut startup = Vec::new();
    for _ in 0..args.runs {
        let started = Instant::now();
        let output = tokio::process::Command::new(crane)
            .arg("version")
            .output()
            .await
            .with_context(|| format!("running {} version", crane.display()))?;
        startup.push(started.elapsed());
        ensure!(output.status.success(), "crane version failed: {}", String::from_utf8_lossy(&output.stderr));
    }

    let mut results = Vec::new();
    for &size in &args.sizes {
        eprintln!("[bench] {size} MiB: pushing base v1, the application and base v2");
        let fixture = push_fixture(&setup, registry.host(), size)
            .await
            .with_context(|| format!("pushing the {size} MiB images"))?;
        let (mut tidegate, mut crane_runs) = (Vec::new(), Vec::new());
        for run in 1..=args.runs {
            // Alternate which tool goes first, so neither always gets the warmer registry.
            let order = if run % 2 == 1 { [Tool::Tidegate, Tool::Crane] } else { [Tool::Crane, Tool::Tidegate] };
            for tool in order {
                let measured = time_one(&setup, &registry, &fixture, crane, tool, run)
                    .await
                    .with_context(|| format!("{} rebase, {size} MiB, run {run}", tool.name()))?;
                eprintln!(
                    "[bench] {size} MiB run {run}/{}: {:<8} {:>8.1} ms, {} requests",
                    args.runs,
                    tool.name(),
                    millis(measured.elapsed),
                    measured.traffic.requests
                );
                match tool {
                    Tool::Tidegate => tidegate.push(measured),
                    Tool::Crane => crane_runs.push(measured),
                }
            }
        }
        let comparison = compare(&setup, &tidegate[0], &crane_runs[0])
            .await
            .with_context(|| format!("comparing the {size} MiB results"))?;
        results.push(SizeResult { size_mib: size, tidegate, crane: crane_runs, comparison });
    }
    Ok((results, median(&startup)))
}

/// Pushes base v1, the application built on it, and base v2 for a total image size of
/// `size_mib`.
async fn push_fixture(client: &RegistryClient, host: &str, size_mib: u64) -> Result<Fixture> {
    let quarter = usize::try_from(size_mib * MIB / 4).context("layer size")?;
    let base = Repository::new(host, format!("bench/s{size_mib}/base"));
    let seed = Repository::new(host, format!("bench/s{size_mib}/app"));

    let v1 = [
        pseudo_random_bytes(&format!("{size_mib}/base-v1/os"), quarter),
        pseudo_random_bytes(&format!("{size_mib}/base-v1/libs"), quarter),
    ];
    let (old_base, v1_digests) = push_image(client, &base, BASE_TAG, &v1, BTreeMap::new()).await?;

    // The application is built on v1: its layers start with v1's, and it names its base.
    let own = [
        pseudo_random_bytes(&format!("{size_mib}/app/deps"), quarter),
        pseudo_random_bytes(&format!("{size_mib}/app/code"), quarter),
    ];
    let annotations = BTreeMap::from([
        (BASE_NAME.to_string(), format!("{base}:{BASE_TAG}")),
        (BASE_DIGEST.to_string(), old_base.clone()),
    ]);
    let app_layers = [&v1[0], &v1[1], &own[0], &own[1]].map(|l| l.clone());
    let (app_digest, app_layer_digests) = push_image(client, &seed, APP_TAG, &app_layers, annotations).await?;
    let app = client.get_manifest(&seed, &app_digest).await.context("reading the application manifest back")?;
    let manifest: ImageManifest = serde_json::from_slice(&app.bytes).context("parsing the application manifest")?;
    let mut app_blobs = vec![manifest.config.digest.clone()];
    app_blobs.extend(app_layer_digests.iter().cloned());

    let v2 = [
        pseudo_random_bytes(&format!("{size_mib}/base-v2/os"), quarter),
        pseudo_random_bytes(&format!("{size_mib}/base-v2/libs"), quarter),
    ];
    let (new_base, v2_digests) = push_image(client, &base, BASE_TAG, &v2, BTreeMap::new()).await?;
    let mut expected_layers = v2_digests.clone();
    expected_layers.extend(app_layer_digests[2..].iter().cloned());

    let sizes =
        v1_digests.iter().chain(&v2_digests).chain(&app_layer_digests).map(|d| (d.clone(), quarter as u64)).collect();
    Ok(Fixture { size_mib, base, seed, app_manifest: app.bytes, app_blobs, old_base, new_base, expected_layers, sizes })
}

/// Pushes an image of uncompressed `layers` (a config with one history entry per layer) as
/// `repo:tag`. Returns the manifest digest and the layer digests.
async fn push_image(
    client: &RegistryClient,
    repo: &Repository,
    tag: &str,
    layers: &[Vec<u8>],
    annotations: BTreeMap<String, String>,
) -> Result<(String, Vec<String>)> {
    let mut descriptors = Vec::new();
    for bytes in layers {
        let digest = client.push_blob(repo, bytes).await.with_context(|| format!("pushing a layer to {repo}"))?;
        descriptors.push(descriptor(LAYER, digest, bytes.len()));
    }
    let diff_ids: Vec<String> = descriptors.iter().map(|d| d.digest.clone()).collect();
    let history: Vec<Value> =
        diff_ids.iter().map(|d| json!({"created_by": format!("ADD layer {}", &d[7..19])})).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin"], "Cmd": ["/app"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history
    }))?;
    let config_digest = client.push_blob(repo, &config).await.with_context(|| format!("pushing a config to {repo}"))?;
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.into()),
        artifact_type: None,
        config: descriptor(OCI_CONFIG, config_digest, config.len()),
        layers: descriptors,
        subject: None,
        annotations: (!annotations.is_empty()).then_some(annotations),
    };
    let bytes = serde_json::to_vec(&manifest)?;
    let (digest, _) =
        client.put_manifest(repo, tag, OCI_MANIFEST, &bytes).await.with_context(|| format!("pushing {repo}:{tag}"))?;
    Ok((digest, diff_ids))
}

fn descriptor(media_type: &str, digest: String, size: usize) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest,
        size: size as u64,
        artifact_type: None,
        annotations: None,
        platform: None,
    }
}

/// One timed rebase by `tool` in a repository of its own, then its traffic and its check.
async fn time_one(
    setup: &RegistryClient,
    registry: &Registry,
    fixture: &Fixture,
    crane: &Path,
    tool: Tool,
    run: usize,
) -> Result<Run> {
    let repo = Repository::new(registry.host(), format!("bench/s{}/{}-{run}", fixture.size_mib, tool.slug()));
    let tag = format!("rebased-{run}");
    fresh_app(setup, fixture, &repo).await?;

    let mark = std::fs::metadata(registry.log()).map(|m| m.len()).unwrap_or(0);
    let elapsed = match tool {
        Tool::Tidegate => time_tidegate(fixture, &repo, &tag).await?,
        Tool::Crane => time_crane(crane, fixture, &repo, &tag).await?,
    };
    tokio::time::sleep(LOG_SETTLE).await;
    let traffic = traffic(setup, registry.host(), registry.log(), mark, &fixture.sizes).await?;

    // The result must be v2's layers followed by the application's.
    let fetched = setup.get_manifest(&repo, &tag).await.with_context(|| format!("reading {repo}:{tag}"))?;
    let manifest: ImageManifest = serde_json::from_slice(&fetched.bytes).context("parsing the rebased manifest")?;
    let layers: Vec<String> = manifest.layers.iter().map(|l| l.digest.clone()).collect();
    if layers != fixture.expected_layers {
        bail!(
            "{} produced layers {layers:?}; expected the new base's then the application's: {:?}",
            tool.name(),
            fixture.expected_layers
        );
    }
    Ok(Run { elapsed, traffic, result: (repo, tag), manifest_type: fetched.media_type })
}

/// Makes `repo` hold the application image and nothing else, by mounting its blobs from the seed
/// repository (untimed).
async fn fresh_app(client: &RegistryClient, fixture: &Fixture, repo: &Repository) -> Result<()> {
    for blob in &fixture.app_blobs {
        let mounted = client
            .mount_blob(repo, &fixture.seed.name, blob)
            .await
            .with_context(|| format!("mounting {blob} into {repo}"))?;
        ensure!(mounted, "the registry would not mount {blob} from {} into {repo}", fixture.seed);
    }
    client
        .put_manifest(repo, APP_TAG, OCI_MANIFEST, &fixture.app_manifest)
        .await
        .with_context(|| format!("pushing {repo}:{APP_TAG}"))?;
    Ok(())
}

/// Times Tidegate's `rebase()`. The client is created for the run with the options a controller
/// uses by default (its request budget allows a burst of 20, more than one rebase sends), so it
/// opens its own connections like a crane process does.
async fn time_tidegate(fixture: &Fixture, repo: &Repository, tag: &str) -> Result<Duration> {
    let plain_http = [repo.host.clone()].into();
    let client = RegistryClient::new(ClientOptions { plain_http, ..ClientOptions::default() })
        .context("creating the registry client")?;
    let request = RebaseRequest {
        repository: repo.clone(),
        reference: APP_TAG.into(),
        old_base: Some((fixture.base.clone(), fixture.old_base.clone())),
        new_base: (fixture.base.clone(), fixture.new_base.clone()),
        new_base_name: format!("{}:{BASE_TAG}", fixture.base),
        tag: tag.into(),
    };
    let started = Instant::now();
    rebase(&client, &request).await.with_context(|| format!("rebasing {repo}:{APP_TAG}"))?;
    Ok(started.elapsed())
}

/// Times `crane rebase <app> --old_base <base@v1> --new_base <base@v2> --tag <target>`, the whole
/// process. Plain HTTP needs no `--insecure`: go-containerregistry speaks HTTP to 127.0.0.1.
async fn time_crane(crane: &Path, fixture: &Fixture, repo: &Repository, tag: &str) -> Result<Duration> {
    let app = format!("{repo}:{APP_TAG}");
    let old_base = format!("{}@{}", fixture.base, fixture.old_base);
    let new_base = format!("{}@{}", fixture.base, fixture.new_base);
    let target = format!("{repo}:{tag}");
    let mut command = tokio::process::Command::new(crane);
    command.args(["rebase", &app, "--old_base", &old_base, "--new_base", &new_base, "--tag", &target]);
    let started = Instant::now();
    let output = command.output().await.with_context(|| format!("running {}", crane.display()))?;
    let elapsed = started.elapsed();
    ensure!(
        output.status.success(),
        "crane rebase {app} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(elapsed)
}

/// One line of the registry's access log (Apache combined format):
/// `127.0.0.1 - - [27/Nov/2026:15:12:43 +0000] "PUT /v2/a/b/blobs/uploads/x?digest=… HTTP/1.1" 201 0 "" "agent"`.
pub(crate) struct Access<'a> {
    pub(crate) method: &'a str,
    pub(crate) uri: &'a str,
    pub(crate) status: u16,
    pub(crate) bytes: u64,
    /// When, to the second (`None` if the time does not parse).
    pub(crate) time: Option<jiff::Timestamp>,
    /// The client's `User-Agent` (empty when it sent none).
    pub(crate) agent: &'a str,
}

pub(crate) fn parse_access(line: &str) -> Option<Access<'_>> {
    if line.starts_with("time=") {
        return None; // the registry's own structured log, interleaved
    }
    let time = line
        .split_once('[')
        .and_then(|(_, rest)| rest.split_once(']'))
        .and_then(|(t, _)| jiff::Timestamp::strptime("%d/%b/%Y:%H:%M:%S %z", t).ok());
    let agent = line.trim_end().strip_suffix('"').and_then(|l| l.rsplit_once('"')).map_or("", |(_, a)| a);
    let (_, rest) = line.split_once(" \"")?;
    let (request, rest) = rest.split_once("\" ")?;
    let mut request = request.split(' ');
    let (method, uri) = (request.next()?, request.next()?);
    let mut fields = rest.split(' ');
    let status = fields.next()?.parse().ok()?;
    let bytes = fields.next()?.parse().unwrap_or(0);
    Some(Access { method, uri, status, bytes, time, agent })
}

/// What the registry served since byte `mark` of its log: requests, blobs mounted and uploaded
/// (sized from `sizes`, or fetched afterwards when not a known layer), bytes sent in answer to
/// `GET`s.
async fn traffic(
    client: &RegistryClient,
    host: &str,
    log: &Path,
    mark: u64,
    sizes: &BTreeMap<String, u64>,
) -> Result<Traffic> {
    let text = std::fs::read(log).with_context(|| format!("reading {}", log.display()))?;
    let start = usize::try_from(mark).unwrap_or(usize::MAX).min(text.len());
    let text = String::from_utf8_lossy(&text[start..]);
    let mut traffic = Traffic::default();
    let mut uploads = Vec::new();
    for access in text.lines().filter_map(parse_access) {
        traffic.requests += 1;
        // `/v2/<name>/blobs/uploads/…`: the repository an upload or mount goes to.
        let upload =
            access.uri.strip_prefix("/v2/").and_then(|rest| rest.split_once("/blobs/uploads/")).map(|(name, _)| name);
        match (access.method, upload) {
            ("GET", _) if access.status == 200 => traffic.downloaded_bytes += access.bytes,
            // A `POST` answered 201 is a cross-repository mount (`?mount=…&from=…`)…
            ("POST", Some(_)) if access.status == 201 && query_param(access.uri, "mount").is_some() => {
                let digest = query_param(access.uri, "mount").unwrap_or_default();
                traffic.mounted += 1;
                traffic.mounted_bytes += sizes.get(&digest).copied().unwrap_or(0);
            }
            // …or, like a `PUT` answered 201, a completed upload (`?digest=…`).
            ("POST" | "PUT", Some(name)) if access.status == 201 => {
                let digest = query_param(access.uri, "digest")
                    .with_context(|| format!("an upload without a digest: {}", access.uri))?;
                traffic.uploaded += 1;
                uploads.push((name.to_string(), digest));
            }
            _ => {}
        }
    }
    for (name, digest) in uploads {
        traffic.uploaded_bytes += match sizes.get(&digest) {
            Some(size) => *size,
            None => {
                let repo = Repository::new(host, name);
                client.get_blob(&repo, &digest).await.with_context(|| format!("sizing {repo}@{digest}"))?.len() as u64
            }
        };
    }
    Ok(traffic)
}

/// A query parameter of a request URI, with the escapes digests and repository names use
/// (`%3A`, `%2F`) undone.
fn query_param(uri: &str, name: &str) -> Option<String> {
    let query = uri.split_once('?')?.1;
    let value = query.split('&').find_map(|p| p.strip_prefix(name)?.strip_prefix('='))?;
    Some(value.replace("%3A", ":").replace("%3a", ":").replace("%2F", "/").replace("%2f", "/"))
}

/// Compares the first results of the two tools: layers, diff IDs, and what else differs.
async fn compare(client: &RegistryClient, tidegate: &Run, crane: &Run) -> Result<Comparison> {
    let load = |run: &Run| {
        let (repo, tag) = run.result.clone();
        async move {
            let fetched = client.get_manifest(&repo, &tag).await.with_context(|| format!("reading {repo}:{tag}"))?;
            let manifest: Value = serde_json::from_slice(&fetched.bytes)?;
            let config_digest = manifest["config"]["digest"].as_str().unwrap_or_default().to_string();
            let config: Value = serde_json::from_slice(
                &client
                    .get_blob(&repo, &config_digest)
                    .await
                    .with_context(|| format!("reading the config of {repo}:{tag}"))?,
            )?;
            anyhow::Ok((fetched.digest, manifest, config))
        }
    };
    let (t_digest, t_manifest, t_config) = load(tidegate).await?;
    let (c_digest, c_manifest, c_config) = load(crane).await?;
    let digests = |m: &Value| -> Vec<Value> {
        m["layers"].as_array().map(|ls| ls.iter().map(|l| l["digest"].clone()).collect()).unwrap_or_default()
    };

    let mut differences = Vec::new();
    for field in ["mediaType", "config.mediaType"] {
        let pick =
            |m: &Value| if field == "mediaType" { m["mediaType"].clone() } else { m["config"]["mediaType"].clone() };
        if pick(&t_manifest) != pick(&c_manifest) {
            differences.push(format!(
                "manifest `{field}`: Tidegate {}, crane {}",
                pick(&t_manifest),
                pick(&c_manifest)
            ));
        }
    }
    let layer_types = |m: &Value| -> Vec<Value> {
        m["layers"].as_array().map(|ls| ls.iter().map(|l| l["mediaType"].clone()).collect()).unwrap_or_default()
    };
    if layer_types(&t_manifest) != layer_types(&c_manifest) {
        differences.push("layer media types".into());
    }
    for (tool, manifest) in [(Tool::Tidegate, &t_manifest), (Tool::Crane, &c_manifest)] {
        let docker = manifest["mediaType"].as_str().is_some_and(|t| t.starts_with("application/vnd.docker."));
        let oci_layers = manifest["layers"].as_array().is_some_and(|ls| {
            ls.iter().any(|l| l["mediaType"].as_str().is_some_and(|t| t.starts_with("application/vnd.oci.")))
        });
        if docker && oci_layers {
            differences.push(format!(
                "{}'s result is a Docker schema 2 manifest that lists OCI layer media types",
                tool.name()
            ));
        }
    }
    // Annotation values name registries and digests: list the keys only.
    let empty = serde_json::Map::new();
    let (ta, ca) = (
        t_manifest["annotations"].as_object().unwrap_or(&empty),
        c_manifest["annotations"].as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<String> =
        ta.keys().chain(ca.keys()).filter(|k| ta.get(*k) != ca.get(*k)).map(|k| format!("`{k}`")).collect();
    keys.sort();
    keys.dedup();
    if !keys.is_empty() {
        differences.push(format!("annotations {} (the base name is each tool's input: Tidegate `host/repo:tag`, crane its `--new_base`, `host/repo@digest`)", keys.join(", ")));
    }
    let keys = differing_keys(&t_config, &c_config);
    if !keys.is_empty() {
        differences.push(format!("config fields {}", keys.join(", ")));
    }
    Ok(Comparison {
        same_layers: digests(&t_manifest) == digests(&c_manifest),
        same_diff_ids: t_config["rootfs"]["diff_ids"] == c_config["rootfs"]["diff_ids"],
        same_manifest: t_digest == c_digest,
        differences,
    })
}

/// Top-level keys of two JSON objects (Tidegate's, crane's) whose values differ, in backticks,
/// with both values when they are short scalars.
fn differing_keys(a: &Value, b: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let (a, b) = (a.as_object().unwrap_or(&empty), b.as_object().unwrap_or(&empty));
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let show = |v: Option<&Value>| match v {
        None => Some("absent".to_string()),
        Some(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null)) => Some(format!("`{v}`")),
        Some(_) => None,
    };
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| match (show(a.get(k)), show(b.get(k))) {
            (Some(x), Some(y)) if x.len() + y.len() < 160 => format!("`{k}` (Tidegate {x}, crane {y})"),
            _ => format!("`{k}`"),
        })
        .collect()
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    match sorted.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `min–max` of a per-run number, or the number when every run agrees.
fn spread(values: impl Iterator<Item = u64>, show: impl Fn(u64) -> String) -> String {
    let values: Vec<u64> = values.collect();
    let (min, max) = (values.iter().copied().min().unwrap_or(0), values.iter().copied().max().unwrap_or(0));
    if min == max { show(min) } else { format!("{}–{}", show(min), show(max)) }
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= MIB => format!("{:.1} MiB", n as f64 / MIB as f64),
        n if n >= 1024 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// The two tables: times, then registry traffic.
fn render_tables(results: &[SizeResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| image size | Tidegate median | Tidegate min–max | crane median | crane min–max | crane / Tidegate |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|");
    for r in results {
        let times = |runs: &[Run]| runs.iter().map(|r| r.elapsed).collect::<Vec<_>>();
        let (t, c) = (times(&r.tidegate), times(&r.crane));
        let range = |v: &[Duration]| {
            format!(
                "{:.1}–{:.1} ms",
                millis(v.iter().copied().min().unwrap_or_default()),
                millis(v.iter().copied().max().unwrap_or_default())
            )
        };
        let (tm, cm) = (median(&t), median(&c));
        let _ = writeln!(
            out,
            "| {} MiB | {:.1} ms | {} | {:.1} ms | {} | {:.1}× |",
            r.size_mib,
            millis(tm),
            range(&t),
            millis(cm),
            range(&c),
            cm.as_secs_f64() / tm.as_secs_f64().max(f64::EPSILON)
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| image size | tool | requests | blobs mounted | bytes mounted | blobs uploaded | bytes uploaded | bytes downloaded | result manifest type | same layer digests | same `diff_ids` | same manifest |"
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---:|---|---|---|---|");
    for r in results {
        for (tool, runs) in [(Tool::Tidegate, &r.tidegate), (Tool::Crane, &r.crane)] {
            let t = |f: fn(&Traffic) -> u64| runs.iter().map(move |run| f(&run.traffic));
            let _ = writeln!(
                out,
                "| {} MiB | {} | {} | {} | {} | {} | {} | {} | `{}` | {} | {} | {} |",
                r.size_mib,
                tool.name(),
                spread(t(|x| x.requests), |n| n.to_string()),
                spread(t(|x| x.mounted), |n| n.to_string()),
                spread(t(|x| x.mounted_bytes), bytes),
                spread(t(|x| x.uploaded), |n| n.to_string()),
                spread(t(|x| x.uploaded_bytes), bytes),
                spread(t(|x| x.downloaded_bytes), bytes),
                runs.first().map(|run| run.manifest_type.as_str()).unwrap_or_default(),
                yes_no(r.comparison.same_layers),
                yes_no(r.comparison.same_diff_ids),
                yes_no(r.comparison.same_manifest),
            );
        }
    }
    out
}

/// The whole Markdown report.
fn render_report(
    command: &str,
    machine: &str,
    elapsed: Duration,
    crane_startup: Duration,
    results: &[SizeResult],
    tables: &str,
) -> String {
    let date = jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC");
    let mut out = String::new();
    let _ = writeln!(out, "# Rebase benchmark: Tidegate and `crane rebase`\n");
    let _ =
        writeln!(out, "Written by `cargo xtask bench` (`xtask/src/bench.rs`); run it again to refresh this file.\n");
    let _ = writeln!(out, "- date: {date}");
    let _ = writeln!(out, "- command: `{command}` (whole run, set-up included: {:.0?})", elapsed);
    let _ = writeln!(out, "- machine: {machine}");
    let _ = writeln!(
        out,
        "- registry: CNCF distribution {DISTRIBUTION_VERSION} on 127.0.0.1 (plain HTTP, anonymous, filesystem storage), one for the whole run"
    );
    let _ = writeln!(
        out,
        "- crane: go-containerregistry {GO_CONTAINERREGISTRY_VERSION}, built by `cargo xtask tools` (Go's default optimised build)"
    );
    let profile = if cfg!(debug_assertions) {
        "the `dev` profile (unoptimised, as `cargo xtask` builds it)"
    } else {
        "an optimised profile"
    };
    let _ = writeln!(out, "- Tidegate: `tidegate-providers` in process, compiled with {profile}\n");
    let _ = writeln!(out, "## Method\n");
    let _ = writeln!(
        out,
        "For each image size S, three images are pushed: base v1 (two layers of S/4), an application built on it \
         (v1's layers, two of its own of S/4, and the `org.opencontainers.image.base.*` annotations), and base v2 \
         (two other layers of S/4) under the same tag. Layers are pseudo-random bytes, uncompressed \
         (`application/vnd.oci.image.layer.v1.tar`).\n"
    );
    let _ = writeln!(
        out,
        "Each run rebases the application from v1 to v2 once with each tool, each in a fresh repository that \
         holds only the application, to a new tag; so every run is a first rebase and must bring v2's layers into \
         the repository. The tools take turns going first. Tidegate: the `rebase()` call, in process, with a new \
         `RegistryClient` (default options). crane: the whole `crane rebase APP --old_base BASE@v1 --new_base \
         BASE@v2 --tag TARGET` process, start-up included; `crane version` alone takes {:.1} ms (median) here. \
         Every result is checked to have v2's layers followed by the application's. Requests, mounts, uploads and \
         downloads come from the registry's access log; where runs differ the table shows the range.\n",
        millis(crane_startup)
    );
    let _ =
        writeln!(out, "Times are wall-clock on a shared machine: read them as orders of magnitude, not as a test.\n");
    let _ = writeln!(out, "## Results\n");
    let _ = writeln!(out, "{tables}");
    // When no run downloaded or uploaded more than manifests and configs, say so: then the time
    // cannot grow with the image.
    let all_runs = || results.iter().flat_map(|r| r.tidegate.iter().chain(&r.crane));
    let max_moved =
        all_runs().map(|run| run.traffic.downloaded_bytes.max(run.traffic.uploaded_bytes)).max().unwrap_or(0);
    let smallest_layer = results.iter().map(|r| r.size_mib * MIB / 4).min().unwrap_or(0);
    if max_moved < smallest_layer && all_runs().all(|run| run.traffic.mounted == 2) {
        let _ = writeln!(
            out,
            "Neither tool reads or copies layer data: each run downloads only manifests and configs (at most {}) and \
             uploads only the new config, and the new base's two layers are mounted from the base's repository. \
             So rebase time does not grow with image size; it is set by the number of requests and their latency.\n",
            bytes(max_moved)
        );
    }

    // What differs between the results, once if it is the same for every size.
    let first = results.first().map(|r| &r.comparison.differences);
    if results.iter().all(|r| Some(&r.comparison.differences) == first) {
        if let Some(differences) = first.filter(|d| !d.is_empty()) {
            let _ = writeln!(out, "What differs between the two tools' results (the same at every size):\n");
            for difference in differences {
                let _ = writeln!(out, "- {difference}");
            }
            let _ = writeln!(out);
        }
    } else {
        let _ = writeln!(out, "What differs between the two tools' results (first run of each size):\n");
        for r in results.iter().filter(|r| !r.comparison.differences.is_empty()) {
            let _ = writeln!(out, "- {} MiB: {}", r.size_mib, r.comparison.differences.join("; "));
        }
        let _ = writeln!(out);
    }
    out
}

/// CPUs (`nproc`), CPU model, kernel, memory and load, for the report.
pub(crate) fn machine_info() -> String {
    let run = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_string()));
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| format!("{:.1} GiB RAM", kib as f64 / (1024.0 * 1024.0)));
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| format!("load average {} at start", l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")));
    [run("nproc", &[]).map(|n| format!("{n} CPUs (`nproc`)")), model, memory, run("uname", &["-sr"]), load]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ")
}
