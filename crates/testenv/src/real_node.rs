//! One real Kubernetes node next to the kwok nodes: kubelet + containerd + runc on this machine,
//! so that Pods placed on it really run.
//!
//! [`RealNode::start`] installs (or names) the Debian packages it needs (`runc`, `containerd`,
//! `containernetworking-plugins`, `iptables`, `nftables`), starts containerd with its own
//! configuration, socket, root and state directories (never the system ones), imports a pause
//! image built here from Go source (nothing is pulled from outside), writes a CNI bridge network
//! ([`DEFAULT_POD_CIDR`], distinct from kwok's `10.244.0.0/16`), and starts a kubelet
//! (built by [`tools::build_node_tools`]) authenticated by a `system:node:<name>` client
//! certificate from the environment's CA. The node registers with the label [`REAL_NODE_LABEL`]
//! and the taint [`REAL_NODE_TAINT`]`=true:NoSchedule`, so only Pods that tolerate the taint and
//! select the label land on it.
//!
//! It changes host state (a bridge, `ip_forward`, a few kernel sysctls, cgroups, network
//! namespaces, mounts under its directory), so there is one real node per machine: a lock file
//! ([`LOCK_FILE`]) serialises starts across processes. [`RealNode::stop`] (or dropping it) stops
//! kubelet and containerd, kills what is left of the containers, unmounts everything under its
//! directory, removes the bridge and the network namespaces it created, removes the `kubepods`
//! cgroups and restores the sysctls.
//!
//! Services work as in a cluster ([`crate::cluster_services`]): kube-proxy runs next to kubelet,
//! and a CoreDNS on [`DNS_IP`] answers `<service>.<namespace>.svc.cluster.local`; kubelet gives
//! Pods that nameserver and the cluster search path. An nftables guard keeps the Pods' traffic on
//! this machine.
//!
//! The images it runs are built in [`crate::node_images`] (re-exported here).

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::cluster_services::{self, ClusterServices};
pub use crate::cluster_services::{CLUSTER_DOMAIN, DNS_IP, DNS_LINK};
use crate::loopback::Relay;
use crate::node_images::node_image;
pub use crate::node_images::{
    OciImage, TestServerImage, build_image_binary, image_source, images_dir, push_test_server_image,
    push_test_server_image_as, push_test_server_on_base,
};
use crate::ports::free_port;
use crate::process::Process;
use crate::registry::Registry;
use crate::tools;
use crate::{Error, TestEnv, pki};

/// Label every real node carries (value `true`); select it with a `nodeSelector`.
pub const REAL_NODE_LABEL: &str = "tidegate.dev/real-node";
/// Taint key of the real node (`tidegate.dev/real-node=true:NoSchedule`); tolerate it.
pub const REAL_NODE_TAINT: &str = "tidegate.dev/real-node";
/// Default node name.
pub const DEFAULT_NODE_NAME: &str = "tidegate-real-node";
/// Default pod network of the real node; kwok's is `10.244.0.0/16`.
pub const DEFAULT_POD_CIDR: &str = "10.88.0.0/16";
/// Default name of the CNI bridge.
pub const DEFAULT_BRIDGE: &str = "tidegate0";
/// The pod sandbox image, built here and imported into containerd.
pub const PAUSE_IMAGE: &str = "tidegate.local/pause:1";
/// The port the test server listens on.
pub const TEST_SERVER_PORT: u16 = 8080;
/// Lock held while a real node runs on this machine.
pub const LOCK_FILE: &str = "/run/tidegate-real-node.lock";
/// The sysctl values from before the running node started, kept until its teardown restores them,
/// so that the next start restores them after a node that was killed.
pub const SYSCTLS_FILE: &str = "/run/tidegate-real-node.sysctls";
/// The Debian packages the node needs.
pub const DEBIAN_PACKAGES: [&str; 5] = ["runc", "containerd", "containernetworking-plugins", "iptables", "nftables"];

/// Prefix of the node's temporary directories (kept short: containerd's socket lives there).
const DIR_PREFIX: &str = "tidegate-node-";
/// Network-namespace pins containerd's CRI plugin creates (`/var/run/netns/cni-<uuid>`).
const NETNS_DIR: &str = "/run/netns";
/// Where kubelet links container logs (fixed in kubelet).
const CONTAINER_LOGS_DIR: &str = "/var/log/containers";
/// Host directories kubelet, containerd and the CNI plugins create outside the node's directory
/// (parents after children); those that did not exist before the node started are removed.
const HOST_DIRS: [&str; 9] = [
    "/var/lib/kubelet/device-plugins",
    "/var/lib/kubelet",
    "/run/netns",
    "/run/containerd/s",
    "/run/containerd",
    "/var/lib/cni/results",
    "/var/lib/cni",
    "/var/log/containers",
    "/var/log/pods",
];
/// Sysctls kubelet sets (and the bridge plugin: `ip_forward`); restored on teardown.
const SYSCTLS: [&str; 7] = [
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/ip_forward",
];

/// How a real node is started.
#[derive(Clone, Debug)]
pub struct RealNodeOptions {
    /// Node name (the kubelet's `--hostname-override`).
    pub name: String,
    /// Pod network (CNI host-local range).
    pub pod_cidr: String,
    /// Name of the CNI bridge.
    pub bridge: String,
    /// Install missing Debian packages with `apt-get` (needs root); otherwise fail naming them.
    pub install_packages: bool,
    /// Registries (`host:port`) containerd reaches over plain HTTP; more can be added later with
    /// [`RealNode::trust_plain_http_registry`].
    pub plain_http_registries: Vec<String>,
    /// How long to wait for the Node to become Ready.
    pub ready_timeout: Duration,
    /// How long to wait for another real node on this machine to stop ([`LOCK_FILE`]).
    pub lock_timeout: Duration,
}

impl Default for RealNodeOptions {
    fn default() -> Self {
        Self {
            name: DEFAULT_NODE_NAME.into(),
            pod_cidr: DEFAULT_POD_CIDR.into(),
            bridge: DEFAULT_BRIDGE.into(),
            install_packages: true,
            plain_http_registries: Vec::new(),
            ready_timeout: Duration::from_secs(120),
            lock_timeout: Duration::from_secs(600),
        }
    }
}

/// Paths of the host programs the node runs.
#[derive(Clone, Debug)]
pub struct HostBinaries {
    /// `containerd`.
    pub containerd: PathBuf,
    /// `ctr`.
    pub ctr: PathBuf,
    /// `runc`.
    pub runc: PathBuf,
    /// `ip` (iproute2).
    pub ip: PathBuf,
    /// `iptables`.
    pub iptables: PathBuf,
    /// `nft`.
    pub nft: PathBuf,
    /// Directory of the CNI plugins (`bridge`, `host-local`, `loopback`).
    pub cni_bin_dir: PathBuf,
}

/// Finds the host programs; when some are missing, installs their Debian packages with
/// `apt-get` if `install` (and this process is root), else fails naming what to install.
pub fn host_binaries(install: bool) -> Result<HostBinaries, Error> {
    match find_host_binaries() {
        Ok(found) => return Ok(found),
        Err(missing) if !install => return Err(missing_packages(&missing, "")),
        Err(_) => {}
    }
    if !is_root() {
        let missing = find_host_binaries().err().unwrap_or_default();
        return Err(missing_packages(&missing, " (as root)"));
    }
    // Tests of one binary start nodes at once: one installs while the others wait, then find
    // what it installed. `apt-get` itself waits for another process's dpkg lock.
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _installing = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if let Ok(found) = find_host_binaries() {
        return Ok(found);
    }
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=600"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .map(|o| (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned()))
            .unwrap_or_else(|e| (false, e.to_string()))
    };
    let mut install_args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install_args.extend(DEBIAN_PACKAGES);
    install_args.push("iproute2");
    let (ok, _) = apt(&install_args);
    if !ok {
        let (_, update_err) = apt(&["update", "-qq"]);
        let (ok, err) = apt(&install_args);
        if !ok {
            return Err(Error::Start {
                component: "real node".into(),
                message: format!("`apt-get {}` failed: {err}{update_err}", install_args.join(" ")),
            });
        }
    }
    find_host_binaries().map_err(|missing| missing_packages(&missing, ""))
}

fn missing_packages(missing: &[(String, &str)], how: &str) -> Error {
    let packages: BTreeSet<&str> = missing.iter().map(|(_, package)| *package).collect();
    let programs: Vec<&str> = missing.iter().map(|(program, _)| program.as_str()).collect();
    Error::Start {
        component: "real node".into(),
        message: format!(
            "missing {}; install them{how}: `apt-get install -y {}`",
            programs.join(", "),
            packages.into_iter().collect::<Vec<_>>().join(" ")
        ),
    }
}

fn find_host_binaries() -> Result<HostBinaries, Vec<(String, &'static str)>> {
    let mut missing = Vec::new();
    let mut find = |name: &str, package: &'static str| {
        let found = which(name);
        if found.is_none() {
            missing.push((name.to_string(), package));
        }
        found.unwrap_or_default()
    };
    let containerd = find("containerd", "containerd");
    let _shim = find("containerd-shim-runc-v2", "containerd");
    let ctr = find("ctr", "containerd");
    let runc = find("runc", "runc");
    let ip = find("ip", "iproute2");
    let iptables = find("iptables", "iptables");
    let nft = find("nft", "nftables");
    let cni_bin_dir = ["/usr/lib/cni", "/opt/cni/bin"]
        .iter()
        .map(PathBuf::from)
        .find(|dir| ["bridge", "host-local", "loopback"].iter().all(|p| dir.join(p).is_file()));
    if cni_bin_dir.is_none() {
        missing.push(("CNI plugins bridge, host-local, loopback".into(), "containernetworking-plugins"));
    }
    if !missing.is_empty() {
        return Err(missing);
    }
    Ok(HostBinaries { containerd, ctr, runc, ip, iptables, nft, cni_bin_dir: cni_bin_dir.unwrap_or_default() })
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Environment variable that, set to `0`, skips every test that needs the real node.
pub const REAL_NODE_ENV: &str = "TIDEGATE_REAL_NODE";

/// Whether tests may start the real node here: as root, and not switched off with
/// `TIDEGATE_REAL_NODE=0`. Says why not on stderr.
pub fn available() -> bool {
    if std::env::var(REAL_NODE_ENV).as_deref() == Ok("0") {
        eprintln!("{REAL_NODE_ENV}=0: the real-node test is skipped");
        return false;
    }
    if !is_root() {
        eprintln!("the real-node test is skipped: the real node needs root");
        return false;
    }
    true
}

/// Whether this process runs as root (the real node needs it).
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    unsafe {
        libc::geteuid() == 0
    }
}

/// The `kubernetes` Service's address (the first of the API server's service range), which
/// [`RealNode::expose_api_server`] serves on the host.
pub const API_SERVICE_IP: &str = "10.0.0.1";
/// The label of [`API_SERVICE_IP`] on the host's loopback interface (`lo:tidegate-api`).
pub const API_LINK: &str = "lo:tidegate-api";
/// The address [`RealNode::expose_registry`] serves a loopback registry on, outside the service
/// range (`10.0.0.0/24`), the real node's pod network and kwok's.
pub const REGISTRY_IP: &str = "10.0.1.1";
/// The label of [`REGISTRY_IP`] on the host's loopback interface.
pub const REGISTRY_LINK: &str = "lo:tidegate-reg";

/// A running real node. Dropping it tears everything down (as [`RealNode::stop`] does, without
/// first asking kubelet to remove the Pods).
pub struct RealNode {
    name: String,
    bridge: String,
    dir: PathBuf,
    client: kube::Client,
    host: HostBinaries,
    kubelet: Option<Process>,
    containerd: Option<Process>,
    /// kube-proxy and CoreDNS.
    services: Option<ClusterServices>,
    /// kube-proxy, for `kube-proxy --cleanup` at teardown.
    kube_proxy_binary: PathBuf,
    netns_before: BTreeSet<String>,
    host_dirs_before: BTreeSet<String>,
    nft_tables_before: BTreeSet<String>,
    kube_chains_before: BTreeSet<String>,
    sysctls_before: Vec<(String, String)>,
    binding: String,
    /// Relays to loopback listeners ([`RealNode::expose_api_server`], [`RealNode::expose_registry`]).
    relays: Vec<Relay>,
    torn_down: bool,
    _temp: Option<tempfile::TempDir>,
    _lock: fs::File,
}

impl std::fmt::Debug for RealNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealNode").field("name", &self.name).field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// What a teardown left behind (empty when clean).
#[derive(Clone, Debug, Default)]
pub struct Leftovers {
    /// Processes still alive (pid, command line) that belong to the node.
    pub processes: Vec<(u32, String)>,
    /// Mount points still mounted under the node's directory or its network namespaces.
    pub mounts: Vec<String>,
    /// Whether the bridge still exists.
    pub bridge: bool,
    /// `kubepods` cgroups still present.
    pub cgroups: Vec<String>,
    /// Host directories the node created that are still there.
    pub host_dirs: Vec<String>,
    /// nftables tables the node created that are still there.
    pub nft_tables: Vec<String>,
    /// `KUBE-*` iptables chains (`family table chain`) created since the start that are still
    /// there (kube-proxy's, kubelet's).
    pub iptables_chains: Vec<String>,
    /// Addresses the node added to the loopback interface (the DNS's, the relays') still there.
    pub addresses: Vec<String>,
}

impl Leftovers {
    /// Whether nothing was left behind.
    pub fn is_clean(&self) -> bool {
        self.processes.is_empty()
            && self.mounts.is_empty()
            && !self.bridge
            && self.cgroups.is_empty()
            && self.host_dirs.is_empty()
            && self.nft_tables.is_empty()
            && self.iptables_chains.is_empty()
            && self.addresses.is_empty()
    }
}

impl RealNode {
    /// Starts the node in `env` and waits until it is Ready, labelled and tainted.
    pub async fn start(env: &TestEnv, options: &RealNodeOptions) -> Result<Self, Error> {
        let started = Instant::now();
        if !is_root() {
            return Err(start_error("the real node needs root (containerd, mounts, a bridge, cgroups)"));
        }
        let install = options.install_packages;
        let host = tokio::task::spawn_blocking(move || host_binaries(install))
            .await
            .map_err(|e| start_error(&e.to_string()))??;
        let kubelet_tools = tokio::task::spawn_blocking(|| {
            tools::build_node_tools(&mut |line| tracing::info!(target: "tidegate_testenv::real_node", "{line}"))
        })
        .await
        .map_err(|e| start_error(&e.to_string()))??;
        let pause = tokio::task::spawn_blocking(|| node_image("pause", &["/pause"]))
            .await
            .map_err(|e| start_error(&e.to_string()))??;
        let lock = take_lock(options.lock_timeout).await?;
        // We hold the machine's lock: anything a previous run left behind is stale.
        cleanup_stale(&host, &options.bridge, &options.name, &kubelet_tools.kube_proxy());
        let sysctls_before = saved_sysctls()?;

        let temp =
            tempfile::Builder::new().prefix(DIR_PREFIX).tempdir().map_err(|e| Error::io(Path::new("/tmp"), e))?;
        let dir = temp.path().to_path_buf();
        let mut node = Self {
            name: options.name.clone(),
            bridge: options.bridge.clone(),
            dir: dir.clone(),
            client: env.client().await?,
            host: host.clone(),
            kubelet: None,
            containerd: None,
            services: None,
            kube_proxy_binary: kubelet_tools.kube_proxy(),
            netns_before: list_dir(Path::new(NETNS_DIR)),
            host_dirs_before: HOST_DIRS.iter().filter(|d| Path::new(d).exists()).map(|d| (*d).to_string()).collect(),
            nft_tables_before: nft_tables(&host.nft),
            kube_chains_before: cluster_services::kube_chains(&host),
            sysctls_before,
            binding: format!("tidegate-real-node:{}", options.name),
            relays: Vec::new(),
            torn_down: false,
            _temp: Some(temp),
            _lock: lock,
        };
        let logs = dir.join("logs");
        for d in ["logs", "containerd/root", "containerd/state", "containerd/certs.d", "cni/net.d", "cni/ipam"] {
            let d = dir.join(d);
            fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        }
        for host in &options.plain_http_registries {
            node.trust_plain_http_registry(host)?;
        }

        // containerd.
        let config = dir.join("containerd/config.toml");
        write(&config, &containerd_config(&dir, &node.host))?;
        node.containerd = Some(Process::spawn(
            "containerd",
            &node.host.containerd,
            &["--config".into(), config.display().to_string(), "--log-level=warn".into()],
            &logs,
        )?);
        node.wait_for_containerd().await?;
        let archive = dir.join("pause.tar");
        fs::write(&archive, pause.oci_layout(PAUSE_IMAGE)).map_err(|e| Error::io(&archive, e))?;
        node.ctr(&["images", "import", &archive.display().to_string()])?;

        // CNI.
        let cni = json!({
            "cniVersion": "0.4.0",
            "name": options.name,
            "plugins": [{
                "type": "bridge",
                "bridge": options.bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": options.pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": dir.join("cni/ipam"),
                }
            }]
        });
        write(&dir.join("cni/net.d/10-tidegate.conflist"), &cni.to_string())?;
        cluster_services::add_guard(&node.host, &dir, &options.bridge)?;

        // kubelet: a node identity, the system:node role (the API server has no Node authorizer).
        let user = format!("system:node:{}", options.name);
        let kubeconfig = env.user_kubeconfig(&user, &["system:nodes"])?;
        pki::write_file(&dir.join("kubelet.kubeconfig"), &kubeconfig)?;
        let binding: ClusterRoleBinding = serde_json::from_value(json!({
            "metadata": {"name": node.binding},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]
        }))
        .map_err(|e| Error::Client(e.to_string()))?;
        let bindings: Api<ClusterRoleBinding> = Api::all(node.client.clone());
        match bindings.create(&PostParams::default(), &binding).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        let ca = env.dir().join("pki/ca.crt");
        write(&dir.join("resolv.conf"), &cluster_services::resolv_conf())?;
        write(&dir.join("kubelet.yaml"), &kubelet_config(&dir, &ca, free_port()?, free_port()?))?;
        node.kubelet = Some(Process::spawn(
            "kubelet",
            &kubelet_tools.kubelet(),
            &[
                format!("--config={}", dir.join("kubelet.yaml").display()),
                format!("--kubeconfig={}", dir.join("kubelet.kubeconfig").display()),
                format!("--root-dir={}", dir.join("kubelet").display()),
                format!("--cert-dir={}", dir.join("kubelet/pki").display()),
                format!("--hostname-override={}", options.name),
                format!("--node-labels={REAL_NODE_LABEL}=true"),
                "--v=2".into(),
            ],
            &logs,
        )?);
        node.wait_until_ready(options.ready_timeout).await?;
        node.ensure_label_and_taint().await?;
        let context = cluster_services::NodeContext {
            name: &node.name,
            dir: &dir,
            pod_cidr: &options.pod_cidr,
            host: &node.host,
            tools: &kubelet_tools,
            client: &node.client,
        };
        node.services = Some(cluster_services::start(env, &context).await?);
        tracing::info!(target: "tidegate_testenv::real_node", "real node {} Ready after {:.1?}", node.name, started.elapsed());
        Ok(node)
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node's directory: configuration, logs, containerd's and kubelet's data.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Paths of the logs of containerd, kubelet, CoreDNS and kube-proxy.
    pub fn logs(&self) -> Vec<(String, PathBuf)> {
        self.processes().map(|p| (p.name().to_string(), p.log().to_path_buf())).collect()
    }

    /// PIDs of containerd, kubelet, CoreDNS and kube-proxy.
    pub fn pids(&self) -> Vec<u32> {
        self.processes().map(Process::pid).collect()
    }

    fn processes(&self) -> impl Iterator<Item = &Process> {
        let services = self.services.iter().flat_map(|s| [&s.coredns, &s.kube_proxy]);
        self.containerd.iter().chain(self.kubelet.iter()).chain(services)
    }

    /// The containerd socket.
    pub fn containerd_socket(&self) -> PathBuf {
        self.dir.join("containerd/containerd.sock")
    }

    /// Lets containerd pull from `host` (`host:port`) over plain HTTP (a `hosts.toml` under its
    /// `config_path`, read at every pull).
    pub fn trust_plain_http_registry(&self, host: &str) -> Result<(), Error> {
        let dir = self.dir.join("containerd/certs.d").join(host);
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let text = format!(
            "server = \"http://{host}\"\n\n[host.\"http://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  skip_verify = true\n"
        );
        write(&dir.join("hosts.toml"), &text)
    }

    /// Runs `ctr` against this node's containerd, in the `k8s.io` namespace.
    pub fn ctr(&self, args: &[&str]) -> Result<String, Error> {
        let socket = self.containerd_socket().display().to_string();
        let mut all = vec!["--address", socket.as_str(), "--namespace", "k8s.io"];
        all.extend_from_slice(args);
        run(&self.host.ctr, &all).map_err(|e| start_error(&format!("ctr {}: {e}", args.join(" "))))
    }

    /// Makes the API server reachable from Pods on this node the way a cluster does: at the
    /// `kubernetes` Service's address, [`API_SERVICE_IP`]`:443`, which Pods' in-cluster
    /// configuration uses (`KUBERNETES_SERVICE_HOST`). The address is added to the host's
    /// loopback interface (label [`API_LINK`]), and a TCP relay on it forwards to the API server
    /// (whose serving certificate names that address). Traffic goes from the Pod's network
    /// namespace over the node's bridge to the host, and no further. Undone on teardown.
    pub fn expose_api_server(&mut self, env: &TestEnv) -> Result<(), Error> {
        if self.relays.iter().any(|r| r.address.ip().to_string() == API_SERVICE_IP) {
            return Ok(());
        }
        let upstream: std::net::SocketAddr = env
            .server()
            .trim_start_matches("https://")
            .parse()
            .map_err(|e| start_error(&format!("the API server address {}: {e}", env.server())))?;
        self.relays.push(Relay::start(&self.host.ip, API_SERVICE_IP, 443, API_LINK, upstream)?);
        Ok(())
    }

    /// Makes a loopback `registry` reachable from Pods on this node, and from containerd, at
    /// [`REGISTRY_IP`] and the registry's port, and lets containerd pull from it over plain HTTP.
    /// Returns the registry host to name images by (`10.0.1.1:<port>`): the same name resolves
    /// for the host (the address is on its loopback interface) and for Pods (over the node's
    /// bridge to the host, and no further). Undone on teardown.
    pub fn expose_registry(&mut self, registry: &Registry) -> Result<String, Error> {
        let upstream: std::net::SocketAddr = registry
            .host()
            .parse()
            .map_err(|e| start_error(&format!("the registry address {}: {e}", registry.host())))?;
        let host = format!("{REGISTRY_IP}:{}", upstream.port());
        if !self.relays.iter().any(|r| r.address.to_string() == host) {
            self.relays.push(Relay::start(&self.host.ip, REGISTRY_IP, upstream.port(), REGISTRY_LINK, upstream)?);
        }
        self.trust_plain_http_registry(&host)?;
        Ok(host)
    }

    /// Deletes every Pod bound to the node (so kubelet stops them and removes their sandboxes and
    /// networks), then tears everything down, and reports what was left behind.
    pub async fn stop(mut self) -> Result<Leftovers, Error> {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let on_node = ListParams::default().fields(&format!("spec.nodeName={}", self.name));
        if let Ok(list) = pods.list(&on_node).await {
            for pod in list.items {
                let (Some(ns), Some(name)) = (pod.metadata.namespace.as_deref(), pod.metadata.name.as_deref()) else {
                    continue;
                };
                let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
                let _ = api.delete(name, &DeleteParams::default().grace_period(0)).await;
            }
        }
        // kubelet kills the containers and stops the sandboxes (CNI DEL) on its own.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let tasks = self.ctr(&["tasks", "ls", "-q"]).unwrap_or_default();
            if tasks.trim().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let nodes: Api<Node> = Api::all(self.client.clone());
        let _ = nodes.delete(&self.name, &DeleteParams::default()).await;
        let bindings: Api<ClusterRoleBinding> = Api::all(self.client.clone());
        let _ = bindings.delete(&self.binding, &DeleteParams::default()).await;
        cluster_services::delete_rbac(&self.client, &self.name).await;
        Ok(self.teardown())
    }

    /// Stops kubelet and containerd and removes every trace of the node from the host. Safe to
    /// call more than once.
    fn teardown(&mut self) -> Leftovers {
        if self.torn_down {
            return self.leftovers();
        }
        self.torn_down = true;
        for relay in std::mem::take(&mut self.relays) {
            relay.stop(&self.host.ip);
        }
        if let Some(mut services) = self.services.take() {
            services.kube_proxy.stop(Duration::from_secs(10));
            services.coredns.stop(Duration::from_secs(10));
        }
        if let Some(mut kubelet) = self.kubelet.take() {
            kubelet.stop(Duration::from_secs(10));
        }
        if self.containerd.as_mut().is_some_and(|c| c.check_running().is_ok()) {
            // Whatever kubelet did not stop: kill the tasks so containerd unmounts their rootfs.
            let tasks = self.ctr(&["tasks", "ls", "-q"]).unwrap_or_default();
            for task in tasks.lines().map(str::trim).filter(|t| !t.is_empty()) {
                let _ = self.ctr(&["tasks", "kill", "--all", "--signal", "SIGKILL", task]);
            }
            for task in tasks.lines().map(str::trim).filter(|t| !t.is_empty()) {
                let _ = self.ctr(&["tasks", "delete", "--force", task]);
            }
        }
        if let Some(mut containerd) = self.containerd.take() {
            containerd.stop(Duration::from_secs(10));
        }
        // Shims outlive containerd; kill them and anything left in the pods' cgroups.
        kill_processes(&node_processes(&self.dir));
        kill_cgroup_processes();
        std::thread::sleep(Duration::from_millis(200));
        let netns: Vec<PathBuf> = list_dir(Path::new(NETNS_DIR))
            .difference(&self.netns_before)
            .filter(|n| n.starts_with("cni-"))
            .map(|n| Path::new(NETNS_DIR).join(n))
            .collect();
        unmount_under(&self.dir);
        for ns in &netns {
            unmount(ns);
            let _ = fs::remove_file(ns);
        }
        let _ = run(&self.host.ip, &["link", "delete", &self.bridge]);
        remove_cgroups();
        remove_log_links(&self.dir);
        remove_cni_cache(&self.name);
        cluster_services::cleanup(&self.host, Some(&self.kube_proxy_binary));
        remove_kubelet_chains(&self.host);
        for table in nft_tables(&self.host.nft).difference(&self.nft_tables_before) {
            let mut args = vec!["delete", "table"];
            args.extend(table.split(' '));
            let _ = run(&self.host.nft, &args);
        }
        for dir in HOST_DIRS.iter().filter(|d| !self.host_dirs_before.contains(**d)) {
            let _ = fs::remove_dir_all(dir);
        }
        restore_sysctls(&self.sysctls_before);
        let left = self.leftovers();
        if left.is_clean() {
            // Only now can the directory (containerd's root among it) be removed safely.
            drop(self._temp.take());
        } else {
            tracing::warn!(target: "tidegate_testenv::real_node", "real node left {left:?}; keeping {}", self.dir.display());
            if let Some(temp) = self._temp.take() {
                let _ = temp.keep();
            }
        }
        left
    }

    /// What of the node is still on the host.
    fn leftovers(&self) -> Leftovers {
        let mut processes = node_processes(&self.dir);
        for pid in self.pids() {
            if alive(pid) && !processes.iter().any(|(p, _)| *p == pid) {
                processes.push((pid, cmdline(pid)));
            }
        }
        let mounts = mounts()
            .into_iter()
            .filter(|m| m.starts_with(&self.dir) || is_cni_netns(m))
            .map(|m| m.display().to_string())
            .collect();
        let bridge = Path::new("/sys/class/net").join(&self.bridge).exists();
        let host_dirs = HOST_DIRS
            .iter()
            .filter(|d| !self.host_dirs_before.contains(**d) && Path::new(d).exists())
            .map(|d| (*d).to_string())
            .collect();
        let nft_tables = nft_tables(&self.host.nft).difference(&self.nft_tables_before).cloned().collect();
        let iptables_chains =
            cluster_services::kube_chains(&self.host).difference(&self.kube_chains_before).cloned().collect();
        Leftovers {
            processes,
            mounts,
            bridge,
            cgroups: kubepods_cgroups(),
            host_dirs,
            nft_tables,
            iptables_chains,
            addresses: cluster_services::loopback_addresses(&self.host),
        }
    }

    async fn wait_for_containerd(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(c) = self.containerd.as_mut() {
                c.check_running()?;
            }
            if self.containerd_socket().exists() && self.ctr(&["version"]).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout(format!("containerd to answer on {}", self.containerd_socket().display())));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_until_ready(&mut self, timeout: Duration) -> Result<(), Error> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let deadline = Instant::now() + timeout;
        loop {
            for p in self.containerd.iter_mut().chain(self.kubelet.iter_mut()) {
                p.check_running()?;
            }
            if let Ok(Some(node)) = nodes.get_opt(&self.name).await
                && crate::nodes::is_ready(&node)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = self.kubelet.as_ref().map(|k| crate::process::tail(k.log(), 30)).unwrap_or_default();
                return Err(Error::Timeout(format!("node {} to become Ready; kubelet log ends:\n{log}", self.name)));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn ensure_label_and_taint(&self) -> Result<(), Error> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let node = nodes.get(&self.name).await?;
        let mut taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        let has_taint = taints.iter().any(|t| t.key == REAL_NODE_TAINT && t.effect == "NoSchedule");
        if !has_taint {
            taints.push(k8s_openapi::api::core::v1::Taint {
                key: REAL_NODE_TAINT.into(),
                value: Some("true".into()),
                effect: "NoSchedule".into(),
                time_added: None,
            });
        }
        let patch = json!({"metadata": {"labels": {REAL_NODE_LABEL: "true"}}, "spec": {"taints": taints}});
        nodes.patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        Ok(())
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

pub(crate) fn start_error(message: &str) -> Error {
    Error::Start { component: "real node".into(), message: message.into() }
}

pub(crate) fn write(path: &Path, text: &str) -> Result<(), Error> {
    fs::write(path, text).map_err(|e| Error::io(path, e))
}

pub(crate) fn run(program: &Path, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program).args(args).output().map_err(|e| format!("{}: {e}", program.display()))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!("{} ({}): {}", program.display(), output.status, String::from_utf8_lossy(&output.stderr).trim()))
    }
}

/// Takes [`LOCK_FILE`] (an exclusive `flock`), waiting up to `timeout` for another node to stop.
async fn take_lock(timeout: Duration) -> Result<fs::File, Error> {
    let path = Path::new(LOCK_FILE);
    let file =
        fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(|e| Error::io(path, e))?;
    let deadline = Instant::now() + timeout;
    loop {
        // SAFETY: flock(2) on a file descriptor we own; no memory is shared.
        #[allow(unsafe_code)]
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if locked {
            return Ok(file);
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout(format!("another real node on this machine to stop (lock {LOCK_FILE})")));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// containerd's configuration: its own root, state, socket, CNI and registry directories.
fn containerd_config(dir: &Path, host: &HostBinaries) -> String {
    let d = |p: &str| dir.join(p).display().to_string();
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        Root = "{runc_root}"
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
    max_conf_num = 1

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{certs}"
"#,
        root = d("containerd/root"),
        state = d("containerd/state"),
        socket = d("containerd/containerd.sock"),
        opt = d("containerd/opt"),
        runc = host.runc.display(),
        runc_root = d("containerd/runc"),
        cni_bin = host.cni_bin_dir.display(),
        cni_conf = d("cni/net.d"),
        certs = d("containerd/certs.d"),
    )
}

/// kubelet's configuration for a cgroup v1 (hybrid) host without CAP_SYS_RESOURCE.
fn kubelet_config(dir: &Path, ca: &Path, port: u16, healthz_port: u16) -> String {
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz_port}
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: "{ca}"
authorization:
  mode: AlwaysAllow
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
oomScoreAdj: 0
containerRuntimeEndpoint: "unix://{socket}"
imagePullCredentialsVerificationPolicy: NeverVerify
podLogsDir: "{logs}"
registerNode: true
registerWithTaints:
  - key: {REAL_NODE_TAINT}
    value: "true"
    effect: NoSchedule
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
maxPods: 30
clusterDNS:
  - {DNS_IP}
clusterDomain: {CLUSTER_DOMAIN}
resolvConf: "{resolv_conf}"
"#,
        ca = ca.display(),
        resolv_conf = dir.join("resolv.conf").display(),
        socket = dir.join("containerd/containerd.sock").display(),
        logs = dir.join("pod-logs").display(),
    )
}

// ---- host state: processes, mounts, cgroups -------------------------------------------------

fn list_dir(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

fn cmdline(pid: u32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " ").trim().to_string())
        .unwrap_or_default()
}

fn alive(pid: u32) -> bool {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // A zombie (state Z) is dead already; its parent has not reaped it yet.
    status.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z'))
}

/// Processes (other than this one) whose command line names `dir`: containerd, kubelet, shims.
fn node_processes(dir: &Path) -> Vec<(u32, String)> {
    let needle = dir.display().to_string();
    processes_matching(|line| line.contains(&needle))
}

fn processes_matching(matches: impl Fn(&str) -> bool) -> Vec<(u32, String)> {
    let me = std::process::id();
    list_dir(Path::new("/proc"))
        .into_iter()
        .filter_map(|name| name.parse::<u32>().ok())
        .filter(|pid| *pid != me && alive(*pid))
        .filter_map(|pid| {
            let line = cmdline(pid);
            matches(&line).then_some((pid, line))
        })
        .collect()
}

fn kill_processes(processes: &[(u32, String)]) {
    for (pid, _) in processes {
        crate::process::kill(*pid);
    }
}

/// The cgroup v1 controllers and the v2 (unified) hierarchy.
fn cgroup_roots() -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    let mut roots: Vec<PathBuf> = list_dir(base).into_iter().map(|n| base.join(n)).filter(|p| p.is_dir()).collect();
    roots.push(base.to_path_buf());
    roots
}

fn kubepods_cgroups() -> Vec<String> {
    cgroup_roots()
        .into_iter()
        .map(|root| root.join("kubepods"))
        .filter(|p| p.is_dir())
        .map(|p| p.display().to_string())
        .collect()
}

/// Every cgroup directory under `dir`, deepest first.
fn cgroup_tree(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                cgroup_tree(&path, out);
            }
        }
    }
    out.push(dir.to_path_buf());
}

fn kill_cgroup_processes() {
    for root in cgroup_roots() {
        let mut tree = Vec::new();
        cgroup_tree(&root.join("kubepods"), &mut tree);
        for cgroup in tree {
            for procs in ["cgroup.procs", "tasks"] {
                let Ok(text) = fs::read_to_string(cgroup.join(procs)) else { continue };
                text.lines().filter_map(|l| l.trim().parse::<u32>().ok()).for_each(crate::process::kill);
            }
        }
    }
}

fn remove_cgroups() {
    for _ in 0..20 {
        for root in cgroup_roots() {
            let mut tree = Vec::new();
            cgroup_tree(&root.join("kubepods"), &mut tree);
            for cgroup in tree {
                let _ = fs::remove_dir(cgroup);
            }
        }
        if kubepods_cgroups().is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Mount points, from `/proc/self/mountinfo` (octal escapes decoded).
fn mounts() -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines().filter_map(|line| line.split(' ').nth(4)).map(|m| PathBuf::from(unescape_mount(m))).collect()
}

fn unescape_mount(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn unmount(path: &Path) {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else { return };
    // SAFETY: umount2(2) with a valid NUL-terminated path; it touches no memory of ours.
    #[allow(unsafe_code)]
    unsafe {
        libc::umount2(c.as_ptr(), libc::MNT_DETACH);
    }
}

/// Unmounts everything under `dir`, deepest first (repeatedly, for stacked mounts).
fn unmount_under(dir: &Path) {
    for _ in 0..5 {
        let mut under: Vec<PathBuf> = mounts().into_iter().filter(|m| m.starts_with(dir)).collect();
        if under.is_empty() {
            return;
        }
        under.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
        under.iter().for_each(|m| unmount(m));
    }
}

/// Removes the links kubelet made in `/var/log/containers` to logs under `dir`.
fn remove_log_links(dir: &Path) {
    let logs = Path::new(CONTAINER_LOGS_DIR);
    for name in list_dir(logs) {
        let link = logs.join(name);
        if fs::read_link(&link).is_ok_and(|target| target.starts_with(dir)) {
            let _ = fs::remove_file(link);
        }
    }
}

/// Removes libcni's cached results for the node's network and the CRI plugin's loopback network
/// (`/var/lib/cni/results/<net>-*`, `cni-loopback-*`), which a CNI DEL would have removed.
fn remove_cni_cache(network: &str) {
    let results = Path::new("/var/lib/cni/results");
    let prefixes = [format!("{network}-"), "cni-loopback-".to_string()];
    for name in list_dir(results).into_iter().filter(|n| prefixes.iter().any(|p| n.starts_with(p))) {
        let _ = fs::remove_file(results.join(name));
    }
}

/// Removes the chains kubelet creates: `KUBE-FIREWALL` (filter, jumped to from INPUT and
/// OUTPUT) and its canaries (kube-proxy removes its own chains with `kube-proxy --cleanup`).
fn remove_kubelet_chains(host: &HostBinaries) {
    let ip6tables = host.iptables.with_file_name("ip6tables");
    for iptables in [host.iptables.as_path(), ip6tables.as_path()] {
        for hook in ["INPUT", "OUTPUT"] {
            while run(iptables, &["-w", "-D", hook, "-j", "KUBE-FIREWALL"]).is_ok() {}
        }
        let _ = run(iptables, &["-w", "-F", "KUBE-FIREWALL"]);
        let _ = run(iptables, &["-w", "-X", "KUBE-FIREWALL"]);
        for table in ["mangle", "nat", "filter"] {
            for chain in ["KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT"] {
                let _ = run(iptables, &["-w", "-t", table, "-F", chain]);
                let _ = run(iptables, &["-w", "-t", table, "-X", chain]);
            }
        }
    }
}

/// The nftables tables (`family name`), e.g. those iptables-nft creates.
fn nft_tables(nft: &Path) -> BTreeSet<String> {
    run(nft, &["list", "tables"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("table "))
        .map(str::to_string)
        .collect()
}

/// Cleans up after a previous node on this machine that was not torn down (its test binary was
/// killed): its shims and containers, mounts, network namespaces, bridge, cgroups, iptables
/// chains (kube-proxy's through `kube_proxy --cleanup` when some are there), the guard, the
/// addresses on the loopback interface, and directory.
fn cleanup_stale(host: &HostBinaries, bridge: &str, network: &str, kube_proxy: &Path) {
    let prefix = std::env::temp_dir().join(DIR_PREFIX).display().to_string();
    let stale = processes_matching(|line| line.contains(&prefix));
    if !stale.is_empty() {
        tracing::warn!(target: "tidegate_testenv::real_node", "killing processes of a previous real node: {stale:?}");
    }
    kill_processes(&stale);
    kill_cgroup_processes();
    std::thread::sleep(Duration::from_millis(100));
    let mut stale_mounts: Vec<PathBuf> =
        mounts().into_iter().filter(|m| m.display().to_string().starts_with(&prefix) || is_cni_netns(m)).collect();
    stale_mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    stale_mounts.iter().for_each(|m| unmount(m));
    for name in list_dir(Path::new(NETNS_DIR)) {
        let path = Path::new(NETNS_DIR).join(name);
        if is_cni_netns(&path) {
            unmount(&path);
            let _ = fs::remove_file(path);
        }
    }
    if Path::new("/sys/class/net").join(bridge).exists() {
        let _ = run(&host.ip, &["link", "delete", bridge]);
    }
    remove_cgroups();
    // `kube-proxy --cleanup` creates iptables-nft tables it looks into: only when it left chains.
    let proxy_chains = cluster_services::kube_chains(host).iter().any(|c| c.ends_with(" KUBE-SERVICES"));
    cluster_services::cleanup(host, proxy_chains.then_some(kube_proxy));
    remove_kubelet_chains(host);
    let tmp = std::env::temp_dir();
    for name in list_dir(&tmp).into_iter().filter(|n| n.starts_with(DIR_PREFIX)) {
        let dir = tmp.join(name);
        unmount_under(&dir);
        remove_log_links(&dir);
        let _ = fs::remove_dir_all(dir);
    }
    let _ = fs::remove_file("/var/lib/kubelet/device-plugins/kubelet.sock");
    remove_cni_cache(network);
    // Shim sockets of the killed node's shims; only when no containerd runs (a system containerd's
    // shims keep theirs there too).
    if processes_matching(|line| line.split(' ').next().is_some_and(|p| p.ends_with("/containerd"))).is_empty() {
        let _ = fs::remove_dir_all("/run/containerd/s");
    }
    for dir in HOST_DIRS {
        // Only empty ones: whether they existed before that node started is not known.
        let _ = fs::remove_dir(dir);
    }
}

/// The sysctls to restore at teardown: those [`SYSCTLS_FILE`] kept from before a node that was
/// not torn down (restored now), else the current ones, written to [`SYSCTLS_FILE`].
fn saved_sysctls() -> Result<Vec<(String, String)>, Error> {
    let path = Path::new(SYSCTLS_FILE);
    if let Ok(text) = fs::read_to_string(path) {
        let saved: Vec<(String, String)> = text
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(k, _)| SYSCTLS.contains(k))
            .map(|(k, v)| (k.to_string(), format!("{v}\n")))
            .collect();
        restore_sysctls(&saved);
    }
    let current: Vec<(String, String)> = SYSCTLS
        .iter()
        .filter_map(|k| Some(((*k).to_string(), fs::read_to_string(Path::new("/proc/sys").join(k)).ok()?)))
        .collect();
    let text: String = current.iter().map(|(k, v)| format!("{k} {}\n", v.trim())).collect();
    fs::write(path, text).map_err(|e| Error::io(path, e))?;
    Ok(current)
}

/// Writes the sysctls back and forgets [`SYSCTLS_FILE`].
fn restore_sysctls(values: &[(String, String)]) {
    for (key, value) in values {
        let _ = fs::write(Path::new("/proc/sys").join(key), value);
    }
    let _ = fs::remove_file(SYSCTLS_FILE);
}

/// Whether `path` is a network namespace pinned by containerd's CRI plugin (`/run/netns/cni-…`).
fn is_cni_netns(path: &Path) -> bool {
    path.parent() == Some(Path::new(NETNS_DIR))
        && path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("cni-"))
}

// ---- images ---------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_unescaped() {
        assert_eq!(unescape_mount(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_mount("/plain"), "/plain");
    }

    #[test]
    fn configs_name_their_directories() {
        let dir = Path::new("/tmp/tidegate-node-x");
        let host = HostBinaries {
            containerd: "/usr/bin/containerd".into(),
            ctr: "/usr/bin/ctr".into(),
            runc: "/usr/sbin/runc".into(),
            ip: "/usr/sbin/ip".into(),
            iptables: "/usr/sbin/iptables".into(),
            nft: "/usr/sbin/nft".into(),
            cni_bin_dir: "/usr/lib/cni".into(),
        };
        let config = containerd_config(dir, &host);
        assert!(config.contains("root = \"/tmp/tidegate-node-x/containerd/root\""));
        assert!(config.contains("restrict_oom_score_adj = true"));
        assert!(config.contains("config_path = \"/tmp/tidegate-node-x/containerd/certs.d\""));
        let kubelet = kubelet_config(dir, Path::new("/ca.crt"), 1, 2);
        assert!(kubelet.contains("failCgroupV1: false"));
        assert!(kubelet.contains("unix:///tmp/tidegate-node-x/containerd/containerd.sock"));
        assert!(kubelet.contains("clusterDNS:\n  - 10.0.1.2\nclusterDomain: cluster.local\n"));
        assert!(kubelet.contains("resolvConf: \"/tmp/tidegate-node-x/resolv.conf\""));
    }
}
