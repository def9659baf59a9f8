//! "One leader acts", on the real local control plane with two real controller processes: the
//! leader is frozen (SIGSTOP), the standby takes over only after the frozen leader's validity
//! ended, and when the old leader resumes (SIGCONT) it exits without acting.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{CONTROLLER_USER, Scenario, wait};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams};
use tidegate_controller::leader::{LEASE_DURATION, RENEW_DEADLINE};

const LEASE_NAMESPACE: &str = "tidegate-system";

/// One controller process with its own identity; the test can freeze and resume it.
struct Replica {
    identity: String,
    child: Child,
    log: PathBuf,
}

impl Replica {
    /// Starts the product binary as its ServiceAccount, like `common::ControllerProcess`, with an
    /// explicit identity in Lease `lease`. No signing or builder flags: leader election comes
    /// before all of that, and this test creates no objects for the controllers to act on.
    fn start(s: &Scenario, identity: &str, lease: &str) -> Self {
        let kubeconfig = s.path(&format!("{identity}.kubeconfig"));
        let yaml = s
            .env
            .user_kubeconfig(CONTROLLER_USER, &["system:serviceaccounts", "system:serviceaccounts:tidegate-system"])
            .expect("kubeconfig");
        std::fs::write(&kubeconfig, yaml).expect("write kubeconfig");
        let port = tidegate_testenv::free_port().expect("free port");
        let log = s.path(&format!("{identity}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_tidegate-controller"))
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "info,kube=warn,tidegate_controller=debug")
            .env_remove("POD_NAMESPACE")
            .env_remove("POD_NAME")
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(["--namespace", &s.ns])
            .args(["--lease-namespace", LEASE_NAMESPACE])
            .args(["--lease-name", lease])
            .args(["--identity", identity])
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("start tidegate-controller");
        Self { identity: identity.to_string(), child, log }
    }

    /// Sends `signal` to the process (still ours: it has not been reaped).
    fn signal(&self, signal: i32) -> std::io::Result<()> {
        let pid = i32::try_from(self.child.id()).map_err(std::io::Error::other)?;
        #[allow(unsafe_code)]
        // SAFETY: kill(2) takes no pointers; the pid is our own unreaped child.
        let rc = unsafe { libc::kill(pid, signal) };
        if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let text = self.log();
        let lines: Vec<_> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.signal(libc::SIGCONT);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    leases.get_opt(name).await.ok()??.spec?.holder_identity
}

#[tokio::test]
async fn a_frozen_leader_stops_acting_and_exits_when_it_resumes() {
    let s = Scenario::new("leader-fencing").await;
    let lease = "tidegate-leader-fencing";
    let leases: Api<Lease> = Api::namespaced(s.admin.clone(), LEASE_NAMESPACE);
    let _ = leases.delete(lease, &DeleteParams::default()).await;

    let mut replicas = [Replica::start(&s, "fencing-a", lease), Replica::start(&s, "fencing-b", lease)];

    // One of them leads; the other runs and waits.
    let first = wait("a leader", Duration::from_secs(90), || async {
        holder(&leases, lease).await.filter(|h| replicas.iter().any(|r| &r.identity == h))
    })
    .await;
    let (old, new) = if replicas[0].identity == first { (0, 1) } else { (1, 0) };
    wait("the leader to start its controllers", Duration::from_secs(60), || async {
        replicas[old].log().contains("controller starting").then_some(())
    })
    .await;
    wait("the standby to wait for the lease", Duration::from_secs(60), || async {
        replicas[new].log().contains("another replica leads; waiting").then_some(())
    })
    .await;
    assert!(
        !replicas[new].log().contains("controller starting"),
        "the standby started its controllers while the other replica led:\n{}",
        replicas[new].log_tail()
    );
    // The leader renews (the record changes every retry period) while it is running.
    let renew_time = |l: Option<Lease>| l.and_then(|l| l.spec?.renew_time).map(|t| t.0);
    let before = renew_time(leases.get_opt(lease).await.expect("lease"));
    wait("the leader to renew", Duration::from_secs(20), || async {
        let now = renew_time(leases.get_opt(lease).await.ok()?);
        (now.is_some() && now != before).then_some(())
    })
    .await;

    // Freeze the leader.
    replicas[old].signal(libc::SIGSTOP).expect("SIGSTOP");
    let stopped = Instant::now();
    let takeover = wait("the standby to take over", LEASE_DURATION * 4, || async {
        (holder(&leases, lease).await.as_deref() == Some(replicas[new].identity.as_str())).then(Instant::now)
    })
    .await;
    let gap = takeover - stopped;
    assert!(
        gap >= RENEW_DEADLINE,
        "the standby took over {gap:?} after the freeze, before the frozen leader's validity (at most \
         {RENEW_DEADLINE:?} after its last renewal) could have ended"
    );
    assert!(replicas[old].exited().is_none(), "the frozen leader is still there");
    wait("the new leader to start its controllers", Duration::from_secs(30), || async {
        replicas[new].log().contains("controller starting").then_some(())
    })
    .await;

    // Resume the old leader: it must exit, non-zero, within a few seconds, without acting.
    let log_at_resume = replicas[old].log().len();
    replicas[old].signal(libc::SIGCONT).expect("SIGCONT");
    let resumed = Instant::now();
    let deadline = resumed + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = replicas[old].exited() {
            break status;
        }
        let current = holder(&leases, lease).await;
        assert_eq!(
            current.as_deref(),
            Some(replicas[new].identity.as_str()),
            "the resumed replica took the lease back:\n{}",
            replicas[old].log_tail()
        );
        assert!(
            Instant::now() < deadline,
            "the resumed leader still runs {:?} after SIGCONT:\n{}",
            resumed.elapsed(),
            replicas[old].log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success(), "the resumed leader exited with {status}");
    assert_eq!(status.code(), Some(1), "the resumed leader exited with {status}");

    let log = replicas[old].log();
    let (before_freeze, after) = log.split_at(log_at_resume);
    eprintln!(
        "takeover {gap:?} after SIGSTOP; exit ({status}) {:?} after SIGCONT; log after resume:\n{after}",
        resumed.elapsed()
    );
    assert!(
        before_freeze.contains("renewed the lease"),
        "the leader logs its renewals (so their absence after resume means something):\n{before_freeze}"
    );
    assert!(after.contains("leadership lost"), "no 'leadership lost' after resume:\n{after}");
    for activity in ["reconcile", "renewed the lease", "became leader", "controller starting", "base image"] {
        assert!(!after.contains(activity), "the resumed replica logged '{activity}' after resume:\n{after}");
    }

    // The new leader keeps the lease and keeps renewing it; the Lease never went back.
    assert!(replicas[new].exited().is_none(), "the new leader exited:\n{}", replicas[new].log_tail());
    let lease_now = leases.get(lease).await.expect("lease");
    let spec = lease_now.spec.expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some(replicas[new].identity.as_str()));
    assert_eq!(spec.lease_transitions, Some(1), "exactly one takeover");
    let before = spec.renew_time.map(|t| t.0);
    wait("the new leader to renew", Duration::from_secs(20), || async {
        let l = leases.get_opt(lease).await.ok()??;
        let spec = l.spec?;
        assert_eq!(spec.holder_identity.as_deref(), Some(replicas[new].identity.as_str()));
        let now = spec.renew_time.map(|t| t.0);
        (now != before).then_some(())
    })
    .await;
}
