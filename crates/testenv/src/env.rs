//! Starting and stopping the control plane.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, PostParams};

use crate::pki::{self, Authority, CertifiedKey};
use crate::ports::{free_port, is_address_in_use};
use crate::process::Process;
use crate::tools::Tools;
use crate::{Error, kubeconfig, nodes};

/// User name of the environment's administrator (group `system:masters`).
pub const ADMIN_USER: &str = "tidegate-admin";

/// Attempts at starting an environment whose ports were taken by another process meanwhile.
const STARTS: u32 = 3;

/// How an environment is started.
#[derive(Clone, Debug)]
pub struct Options {
    /// Directory for data, certificates and logs. Default: a new temporary directory, removed when
    /// the environment stops. A given directory is emptied first and kept afterwards.
    pub dir: Option<PathBuf>,
    /// Number of simulated (kwok) nodes.
    pub nodes: usize,
    /// Install Tidegate's CRDs and the Trivy Operator's `VulnerabilityReport` CRD, and wait until
    /// they are Established.
    pub install_crds: bool,
    /// Extra kube-apiserver flags, after the environment's own (e.g. `--audit-policy-file=…` and
    /// `--audit-log-path=…` for `cargo xtask bench scale`). Default: none.
    pub apiserver_args: Vec<String>,
    /// Extra kube-controller-manager flags, after the environment's own (e.g. `--kube-api-qps=…`
    /// for `cargo xtask bench scale --controller-manager-qps`). Default: none, so the
    /// controller-manager runs with upstream's client rate limits.
    pub controller_manager_args: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            dir: None,
            nodes: 2,
            install_crds: true,
            apiserver_args: Vec::new(),
            controller_manager_args: Vec::new(),
        }
    }
}

/// A running local control plane: etcd, kube-apiserver, kube-controller-manager,
/// kube-scheduler and kwok on loopback, with TLS and RBAC. Dropping it stops every process and
/// removes its temporary directory.
pub struct TestEnv {
    // Field order is drop order: processes stop before the directory goes away. A mutex, because
    // a test may restart a component of a shared environment (`faults`).
    processes: Mutex<Vec<Process>>,
    server: String,
    authority: Authority,
    admin: CertifiedKey,
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for TestEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestEnv").field("server", &self.server).field("dir", &self.dir).finish()
    }
}

impl TestEnv {
    /// Starts an environment with default options.
    pub async fn start() -> Result<Self, Error> {
        Self::start_with(Options::default()).await
    }

    /// Starts an environment. A start that fails because another process took one of the chosen
    /// ports in the meantime is tried again with new ports, up to [`STARTS`] times.
    pub async fn start_with(options: Options) -> Result<Self, Error> {
        let mut attempt = 1;
        loop {
            match Self::start_once(&options).await {
                Err(e) if attempt < STARTS && is_address_in_use(&e) => {
                    tracing::warn!(attempt, error = %e, "a port was taken while the environment started; starting again");
                    attempt += 1;
                }
                started => return started,
            }
        }
    }

    async fn start_once(options: &Options) -> Result<Self, Error> {
        let tools = Tools::locate()?;
        let (dir, temp) = match &options.dir {
            Some(dir) => {
                if dir.exists() {
                    std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                }
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                (dir.clone(), None)
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("tidegate-env-")
                    .tempdir()
                    .map_err(|e| Error::io(&std::env::temp_dir(), e))?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        let pki_dir = dir.join("pki");
        let logs = dir.join("logs");
        for d in [&pki_dir, &logs] {
            std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
        }

        let authority = Authority::generate()?;
        authority.write(&pki_dir)?;
        let serving = authority.serving("kube-apiserver")?;
        let admin = authority.client(ADMIN_USER, &["system:masters"])?;
        let sa_key = pki::service_account_key()?;
        write_pair(&pki_dir, "apiserver", &serving)?;
        pki::write_file(&pki_dir.join("sa.key"), &sa_key.key_pem)?;
        pki::write_file(&pki_dir.join("sa.pub"), &sa_key.cert_pem)?;

        let mut env = Self {
            processes: Mutex::default(),
            server: String::new(),
            authority,
            admin,
            dir: dir.clone(),
            _temp: temp,
        };

        let etcd_port = free_port()?;
        let etcd_peer_port = free_port()?;
        let api_port = free_port()?;
        let kwok_port = free_port()?;
        env.server = format!("https://127.0.0.1:{api_port}");

        let p = |name: &str| pki_dir.join(name).display().to_string();
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
        env.spawn(
            &tools,
            "etcd",
            &logs,
            vec![
                format!("--data-dir={}", dir.join("etcd").display()),
                "--name=default".into(),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=default={peer_url}"),
                "--unsafe-no-fsync=true".into(),
                "--log-level=warn".into(),
            ],
        )?;
        env.wait_for_port("etcd", etcd_port, Duration::from_secs(30)).await?;

        let mut apiserver_args = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            format!("--tls-cert-file={}", p("apiserver.crt")),
            format!("--tls-private-key-file={}", p("apiserver.key")),
            format!("--client-ca-file={}", p("ca.crt")),
            format!("--cert-dir={}", dir.join("apiserver-certs").display()),
            "--authorization-mode=RBAC".into(),
            "--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultTolerationSeconds,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy,ResourceQuota".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", p("sa.pub")),
            format!("--service-account-signing-key-file={}", p("sa.key")),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--allow-privileged=true".into(),
            "--profiling=false".into(),
            "--v=1".into(),
        ];
        apiserver_args.extend(options.apiserver_args.iter().cloned());
        env.spawn(&tools, "kube-apiserver", &logs, apiserver_args)?;
        env.wait_for_apiserver(Duration::from_secs(90)).await?;

        let components = [
            ("kube-controller-manager", "system:kube-controller-manager", vec![]),
            ("kube-scheduler", "system:kube-scheduler", vec![]),
            ("kwok", "kwok-controller", vec!["system:masters"]),
        ];
        for (component, user, groups) in &components {
            let identity = env.authority.client(user, groups)?;
            let path = dir.join(format!("{component}.kubeconfig"));
            pki::write_file(&path, &kubeconfig::render(&env.server, env.authority.cert_pem(), user, &identity))?;
        }
        let kc = |c: &str| dir.join(format!("{c}.kubeconfig")).display().to_string();
        env.spawn(
            &tools,
            "kube-controller-manager",
            &logs,
            vec![
                format!("--kubeconfig={}", kc("kube-controller-manager")),
                "--secure-port=0".into(),
                "--leader-elect=false".into(),
                format!("--service-account-private-key-file={}", p("sa.key")),
                format!("--root-ca-file={}", p("ca.crt")),
                "--use-service-account-credentials=true".into(),
                "--controllers=*".into(),
                "--v=1".into(),
            ]
            .into_iter()
            .chain(options.controller_manager_args.iter().cloned())
            .collect(),
        )?;
        env.spawn(
            &tools,
            "kube-scheduler",
            &logs,
            vec![
                format!("--kubeconfig={}", kc("kube-scheduler")),
                format!("--authentication-kubeconfig={}", kc("kube-scheduler")),
                format!("--authorization-kubeconfig={}", kc("kube-scheduler")),
                "--secure-port=0".into(),
                "--leader-elect=false".into(),
                "--v=1".into(),
            ],
        )?;
        env.spawn(
            &tools,
            "kwok",
            &logs,
            vec![
                format!("--kubeconfig={}", kc("kwok")),
                format!("--config={}", tools.path(crate::tools::KWOK_STAGES).display()),
                "--manage-all-nodes=false".into(),
                format!("--manage-nodes-with-annotation-selector={}", nodes::KWOK_ANNOTATION_SELECTOR),
                "--node-lease-duration-seconds=40".into(),
                "--cidr=10.244.0.0/16".into(),
                "--node-ip=127.0.0.1".into(),
                format!("--server-address=127.0.0.1:{kwok_port}"),
            ],
        )?;

        let client = env.client().await?;
        nodes::create(&client, options.nodes).await?;
        env.wait_until("the simulated nodes to become Ready", Duration::from_secs(60), || {
            let client = client.clone();
            async move { nodes::all_ready(&client).await }
        })
        .await?;
        env.wait_for_default_service_account("default").await?;
        if options.install_crds {
            let mut crds: Vec<_> = tidegate_api::crds::all().into_iter().map(|(_, crd)| crd).collect();
            // The Trivy Operator's reports, which the `trivyOperator` scanner reads.
            crds.extend(crate::operator_crds::load()?);
            crate::crds::install(&client, &crds).await?;
        }
        pki::write_file(&env.admin_kubeconfig_path(), &env.kubeconfig(ADMIN_USER, &env.admin)?)?;
        Ok(env)
    }

    /// The API server URL, `https://127.0.0.1:<port>`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The environment's directory (certificates, logs, kubeconfigs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the administrator's kubeconfig.
    pub fn admin_kubeconfig_path(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    /// A client authenticated as the administrator (group `system:masters`).
    pub async fn client(&self) -> Result<kube::Client, Error> {
        kubeconfig::client(&self.kubeconfig(ADMIN_USER, &self.admin)?).await
    }

    /// A client authenticated by a fresh client certificate for `user` in `groups`. The user has
    /// no rights until a RoleBinding or ClusterRoleBinding grants them.
    pub async fn client_for(&self, user: &str, groups: &[&str]) -> Result<kube::Client, Error> {
        kubeconfig::client(&self.user_kubeconfig(user, groups)?).await
    }

    /// A kubeconfig (YAML) with a fresh client certificate for `user` in `groups`.
    pub fn user_kubeconfig(&self, user: &str, groups: &[&str]) -> Result<String, Error> {
        let identity = self.authority.client(user, groups)?;
        self.kubeconfig(user, &identity)
    }

    /// Creates a namespace and waits until its `default` ServiceAccount exists, so Pods can be
    /// created in it right away.
    pub async fn create_namespace(&self, name: &str) -> Result<(), Error> {
        let client = self.client().await?;
        let namespaces: Api<Namespace> = Api::all(client);
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
            .map_err(|e| Error::Client(e.to_string()))?;
        match namespaces.create(&PostParams::default(), &ns).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(Error::Kube(e)),
        }
        self.wait_for_default_service_account(name).await
    }

    /// Paths of every component's log.
    pub fn logs(&self) -> Vec<(String, PathBuf)> {
        self.processes().iter().map(|p| (p.name().to_string(), p.log().to_path_buf())).collect()
    }

    /// PIDs of the running components.
    pub fn pids(&self) -> Vec<u32> {
        self.processes().iter().map(Process::pid).collect()
    }

    /// The running components, in start order.
    pub(crate) fn processes(&self) -> MutexGuard<'_, Vec<Process>> {
        self.processes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops every component (newest first).
    pub fn stop(&mut self) {
        let processes = self.processes.get_mut().unwrap_or_else(PoisonError::into_inner);
        while let Some(mut process) = processes.pop() {
            process.stop(Duration::from_secs(5));
        }
    }

    fn kubeconfig(&self, user: &str, identity: &CertifiedKey) -> Result<String, Error> {
        Ok(kubeconfig::render(&self.server, self.authority.cert_pem(), user, identity))
    }

    fn spawn(&mut self, tools: &Tools, name: &str, logs: &Path, args: Vec<String>) -> Result<(), Error> {
        let process = Process::spawn(name, &tools.path(name), &args, logs)?;
        self.processes().push(process);
        Ok(())
    }

    fn check_processes(&mut self) -> Result<(), Error> {
        self.processes().iter_mut().try_for_each(Process::check_running)
    }

    async fn wait_for_port(&mut self, component: &str, port: u16, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(());
            }
            self.check_processes()?;
            if Instant::now() > deadline {
                return Err(Error::Timeout(format!("{component} to listen on 127.0.0.1:{port}")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_for_apiserver(&mut self, timeout: Duration) -> Result<(), Error> {
        let client = self.client().await?;
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            let request = http::Request::get("/readyz").body(Vec::new()).map_err(|e| Error::Client(e.to_string()))?;
            match client.request_text(request).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                Ok(body) => last = body,
                Err(e) => last = e.to_string(),
            }
            self.check_processes()?;
            if Instant::now() > deadline {
                return Err(Error::Timeout(format!("kube-apiserver /readyz (last answer: {last})")));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn wait_for_default_service_account(&self, namespace: &str) -> Result<(), Error> {
        let client = self.client().await?;
        self.wait_until(
            &format!("the default ServiceAccount in namespace {namespace}"),
            Duration::from_secs(60),
            || {
                let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
                async move { Ok(accounts.get_opt("default").await?.is_some()) }
            },
        )
        .await
    }

    async fn wait_until<F, Fut>(&self, what: &str, timeout: Duration, mut check: F) -> Result<(), Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<bool, Error>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            match check().await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => {}
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = self.logs().iter().map(|(n, p)| format!("{n}: {}", p.display())).collect();
                return Err(Error::Timeout(format!("{what} (component logs: {})", logs.join(", "))));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Names of the CRDs that are Established, for diagnostics.
pub async fn established_crds(client: &kube::Client) -> Result<Vec<String>, Error> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    Ok(crds
        .list(&Default::default())
        .await?
        .into_iter()
        .filter(crate::crds::is_established)
        .map(|crd| crd.name_any())
        .collect())
}

/// Ready nodes, for diagnostics.
pub async fn ready_nodes(client: &kube::Client) -> Result<Vec<String>, Error> {
    let api: Api<Node> = Api::all(client.clone());
    Ok(api.list(&Default::default()).await?.into_iter().filter(nodes::is_ready).map(|n| n.name_any()).collect())
}

fn write_pair(dir: &Path, name: &str, pair: &CertifiedKey) -> Result<(), Error> {
    pki::write_file(&dir.join(format!("{name}.crt")), &pair.cert_pem)?;
    pki::write_file(&dir.join(format!("{name}.key")), &pair.key_pem)
}
