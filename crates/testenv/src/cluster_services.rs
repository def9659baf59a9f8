//! Services on the real node as in a cluster: kube-proxy routes ClusterIPs to ready endpoints, and
//! a cluster DNS (CoreDNS) answers `<service>.<namespace>.svc.cluster.local`.
//!
//! [`start`] runs both on the host next to kubelet, and [`crate::real_node::RealNode`] starts them
//! with the node:
//!
//! - **CoreDNS** ([`tools::NodeTools::coredns`], only the plugins `bind`, `ready`, `errors`, `log`,
//!   `kubernetes`) listens on [`DNS_IP`]`:53`, an address added to the host's loopback interface
//!   (label [`DNS_LINK`]) that Pods reach over the node's bridge, and answers the cluster domain
//!   [`CLUSTER_DOMAIN`] from the API server. There is no `forward`: any other name is refused, so
//!   no query ever leaves the machine. It authenticates with a client certificate from the
//!   environment's CA; a ClusterRole and ClusterRoleBinding of its own (deleted by
//!   [`delete_rbac`]) let it list and watch Services, EndpointSlices, Endpoints, Pods and
//!   Namespaces. kubelet gives Pods `nameserver 10.0.1.2` and the cluster search path.
//! - **kube-proxy** (iptables mode, [`tools::NodeTools::kube_proxy`]) authenticates as
//!   `system:kube-proxy`, whom the API server's default ClusterRoleBinding `system:node-proxier`
//!   already binds, and programs every Service of the cluster with `--masquerade-all` (a Pod that
//!   reaches a Service whose endpoint is on the same bridge gets its replies back through the
//!   host). It changes no conntrack sysctl and no `route_localnet`; NodePorts only on the bridge's
//!   address. [`cleanup`] runs `kube-proxy --cleanup` to remove its chains.
//! - **A guard** (nftables table `inet` [`GUARD_TABLE`]): traffic that enters from the bridge and
//!   would be forwarded out of any other interface is rejected, so a Pod never reaches an address
//!   off this machine, not even through a Service whose endpoints are kwok's made-up Pod IPs.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

use crate::ports::free_port;
use crate::process::Process;
use crate::real_node::{HostBinaries, run, start_error, write};
use crate::tools::NodeTools;
use crate::{Error, TestEnv, pki};

/// The cluster DNS's address, on the host's loopback interface: outside the service range
/// (`10.0.0.0/24`), the real node's pod network and kwok's; next to the registry's `10.0.1.1`.
pub const DNS_IP: &str = "10.0.1.2";
/// The label of [`DNS_IP`] on the host's loopback interface.
pub const DNS_LINK: &str = "lo:tidegate-dns";
/// The cluster domain kubelet and CoreDNS use.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// The nftables table (family `inet`) that keeps the Pods' traffic on this machine.
pub const GUARD_TABLE: &str = "tidegate_node_guard";
/// The user kube-proxy authenticates as (bound to `system:node-proxier` by the API server's
/// default RBAC policy).
pub const KUBE_PROXY_USER: &str = "system:kube-proxy";
/// Prefix of the labels of the addresses the real node adds to the host's loopback interface.
pub const LINK_PREFIX: &str = "lo:tidegate-";

/// The name of CoreDNS's ClusterRole, ClusterRoleBinding and user for node `node`.
fn dns_identity(node: &str) -> String {
    format!("tidegate-real-node:coredns:{node}")
}

/// The running kube-proxy and CoreDNS.
pub(crate) struct ClusterServices {
    pub(crate) coredns: Process,
    pub(crate) kube_proxy: Process,
}

/// Where the real node is, for [`start`].
pub(crate) struct NodeContext<'a> {
    pub(crate) name: &'a str,
    pub(crate) dir: &'a Path,
    pub(crate) pod_cidr: &'a str,
    pub(crate) host: &'a HostBinaries,
    pub(crate) tools: &'a NodeTools,
    pub(crate) client: &'a kube::Client,
}

/// The resolver configuration kubelet reads (`resolvConf`): the cluster DNS only, so that Pods
/// with `dnsPolicy: Default` do not use the host's resolvers either.
pub(crate) fn resolv_conf() -> String {
    format!("nameserver {DNS_IP}\n")
}

/// Adds the guard table that rejects what would be forwarded from `bridge` to another interface.
pub(crate) fn add_guard(host: &HostBinaries, dir: &Path, bridge: &str) -> Result<(), Error> {
    let rules = format!(
        "table inet {GUARD_TABLE} {{\n  chain forward {{\n    type filter hook forward priority -200; policy accept;\n    iifname \"{bridge}\" oifname != \"{bridge}\" reject with icmpx type admin-prohibited\n  }}\n}}\n"
    );
    let path = dir.join("guard.nft");
    write(&path, &rules)?;
    run(&host.nft, &["-f", &path.display().to_string()])
        .map_err(|e| start_error(&format!("the nftables guard: {e}")))?;
    Ok(())
}

/// Starts CoreDNS on [`DNS_IP`] and kube-proxy, and waits until CoreDNS has synced with the API
/// server and kube-proxy has programmed the Services.
pub(crate) async fn start(env: &TestEnv, node: &NodeContext<'_>) -> Result<ClusterServices, Error> {
    let logs = node.dir.join("logs");
    let coredns_dir = node.dir.join("coredns");
    fs::create_dir_all(&coredns_dir).map_err(|e| Error::io(&coredns_dir, e))?;

    // CoreDNS: an identity of its own with the rights upstream's deployment gives it.
    let identity = dns_identity(node.name);
    create_dns_rbac(node.client, &identity).await?;
    let kubeconfig = coredns_dir.join("kubeconfig");
    pki::write_file(&kubeconfig, &env.user_kubeconfig(&identity, &[])?)?;
    let ready_port = free_port()?;
    let corefile = coredns_dir.join("Corefile");
    write(&corefile, &corefile_text(&kubeconfig, ready_port))?;
    crate::loopback::add_address(&node.host.ip, DNS_IP, DNS_LINK)?;
    let mut coredns =
        Process::spawn("coredns", &node.tools.coredns(), &["-conf".into(), corefile.display().to_string()], &logs)?;

    // kube-proxy.
    let kubeconfig = node.dir.join("kube-proxy.kubeconfig");
    pki::write_file(&kubeconfig, &env.user_kubeconfig(KUBE_PROXY_USER, &[])?)?;
    let healthz_port = free_port()?;
    let mut kube_proxy = Process::spawn(
        "kube-proxy",
        &node.tools.kube_proxy(),
        &[
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--hostname-override={}", node.name),
            "--proxy-mode=iptables".into(),
            format!("--cluster-cidr={}", node.pod_cidr),
            "--masquerade-all".into(),
            format!("--nodeport-addresses={}", node.pod_cidr),
            "--iptables-localhost-nodeports=false".into(),
            "--conntrack-max-per-core=0".into(),
            "--conntrack-tcp-timeout-established=0".into(),
            "--conntrack-tcp-timeout-close-wait=0".into(),
            "--oom-score-adj=0".into(),
            format!("--healthz-bind-address=127.0.0.1:{healthz_port}"),
            format!("--metrics-bind-address=127.0.0.1:{}", free_port()?),
            "--v=2".into(),
        ],
        &logs,
    )?;

    let deadline = Instant::now() + Duration::from_secs(60);
    let dns_ready = format!("http://127.0.0.1:{ready_port}/ready");
    let proxy_healthy = format!("http://127.0.0.1:{healthz_port}/healthz");
    for (url, process) in [(&dns_ready, &mut coredns), (&proxy_healthy, &mut kube_proxy)] {
        loop {
            process.check_running()?;
            let answer = crate::registry::send(http::Method::GET, url, &[], Vec::new()).await;
            if answer.is_ok_and(|r| r.status == http::StatusCode::OK) {
                break;
            }
            if Instant::now() > deadline {
                let log = crate::process::tail(process.log(), 30);
                return Err(Error::Timeout(format!("{} to answer 200 on {url}; its log ends:\n{log}", process.name())));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(ClusterServices { coredns, kube_proxy })
}

/// CoreDNS's configuration: the cluster domain from the API server, on [`DNS_IP`] only; no other
/// zone, so every other name is refused.
fn corefile_text(kubeconfig: &Path, ready_port: u16) -> String {
    format!(
        "{CLUSTER_DOMAIN}:53 {{\n    bind {DNS_IP}\n    ready 127.0.0.1:{ready_port}\n    errors\n    log\n    kubernetes {CLUSTER_DOMAIN} {{\n        kubeconfig {}\n        pods disabled\n        ttl 5\n    }}\n}}\n",
        kubeconfig.display()
    )
}

async fn create_dns_rbac(client: &kube::Client, identity: &str) -> Result<(), Error> {
    let role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": identity},
        "rules": [
            {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": ["list", "watch"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]}
        ]
    }))
    .map_err(|e| Error::Client(e.to_string()))?;
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": identity},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": identity},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": identity}]
    }))
    .map_err(|e| Error::Client(e.to_string()))?;
    let ignore_conflict = |result: Result<(), kube::Error>| match result {
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        other => other,
    };
    let roles: Api<ClusterRole> = Api::all(client.clone());
    ignore_conflict(roles.create(&PostParams::default(), &role).await.map(drop))?;
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    ignore_conflict(bindings.create(&PostParams::default(), &binding).await.map(drop))?;
    Ok(())
}

/// Deletes CoreDNS's ClusterRoleBinding and ClusterRole for node `node`.
pub(crate) async fn delete_rbac(client: &kube::Client, node: &str) {
    let identity = dns_identity(node);
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let _ = bindings.delete(&identity, &DeleteParams::default()).await;
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let _ = roles.delete(&identity, &DeleteParams::default()).await;
}

/// Removes what kube-proxy and the DNS left on the host: kube-proxy's iptables chains
/// (`kube-proxy --cleanup`), the guard table and the addresses on the loopback interface labelled
/// [`LINK_PREFIX`]`*` (the DNS's, and the relays' of a node that was killed).
pub(crate) fn cleanup(host: &HostBinaries, kube_proxy: Option<&Path>) {
    if let Some(kube_proxy) = kube_proxy.filter(|p| p.is_file()) {
        let _ = run(kube_proxy, &["--cleanup", "--v=0"]);
    }
    let _ = run(&host.nft, &["delete", "table", "inet", GUARD_TABLE]);
    for address in loopback_addresses(host) {
        let _ = run(&host.ip, &["addr", "del", &address, "dev", "lo"]);
    }
}

/// The addresses (`ip/prefix`) on the host's loopback interface whose label starts with
/// [`LINK_PREFIX`].
pub(crate) fn loopback_addresses(host: &HostBinaries) -> Vec<String> {
    let out = run(&host.ip, &["-o", "-4", "addr", "show", "dev", "lo"]).unwrap_or_default();
    out.lines()
        .filter(|line| line.split_whitespace().any(|word| word.starts_with(LINK_PREFIX)))
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "inet").and(words.next()).map(str::to_string)
        })
        .collect()
}

/// The `KUBE-*` chains in iptables and ip6tables (`family table chain`), from `iptables-save`.
pub(crate) fn kube_chains(host: &HostBinaries) -> std::collections::BTreeSet<String> {
    let mut chains = std::collections::BTreeSet::new();
    for (family, save) in [("ip", "iptables-save"), ("ip6", "ip6tables-save")] {
        let save: PathBuf = host.iptables.with_file_name(save);
        let text = run(&save, &[]).unwrap_or_default();
        let mut table = "";
        for line in text.lines() {
            if let Some(name) = line.strip_prefix('*') {
                table = name;
            } else if let Some(chain) = line.strip_prefix(":KUBE-") {
                let chain = chain.split_whitespace().next().unwrap_or_default();
                chains.insert(format!("{family} {table} KUBE-{chain}"));
            }
        }
    }
    chains
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_corefile_answers_only_the_cluster_domain() {
        let text = corefile_text(Path::new("/tmp/tidegate-node-x/coredns/kubeconfig"), 8181);
        assert!(text.starts_with("cluster.local:53 {"));
        assert!(text.contains("bind 10.0.1.2"));
        assert!(text.contains("ready 127.0.0.1:8181"));
        assert!(text.contains("kubeconfig /tmp/tidegate-node-x/coredns/kubeconfig"));
        assert!(!text.contains("forward"), "no query may leave the machine");
        assert_eq!(text.matches(":53 {").count(), 1, "one zone only");
    }
}
