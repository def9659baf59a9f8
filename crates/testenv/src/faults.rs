//! Control-plane faults for tests: kube-apiserver restarted (also with other flags, e.g. an audit
//! log or no watch cache), etcd frozen, killed and restarted on the same data directory, and
//! etcd's history compacted so that a watch resumed from an older version gets 410 Gone.
//!
//! A component is restarted on the same port, certificates and data directory, from its own
//! command line, appending to its log. The new process is started from a thread that lives as
//! long as the test binary (the kernel kills a component when the thread that started it exits,
//! and a test's thread ends with the test), and replaces the old one in the environment, so it
//! is stopped with the environment.

use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::process::{Process, kill, terminate};
use crate::{Error, TestEnv, shared};

/// The kube-apiserver component.
pub const APISERVER: &str = "kube-apiserver";
/// The etcd component.
pub const ETCD: &str = "etcd";
/// The kube-controller-manager component.
pub const CONTROLLER_MANAGER: &str = "kube-controller-manager";

/// How long a stopped component may take to exit after SIGTERM before it is killed.
const GRACE: Duration = Duration::from_secs(10);

/// A component frozen with SIGSTOP; SIGCONT when dropped.
#[derive(Debug)]
#[must_use = "the component resumes when this is dropped"]
pub struct Paused {
    component: String,
    pid: u32,
}

impl Paused {
    /// Resumes the component (SIGCONT).
    pub fn resume(self) {}
}

impl Drop for Paused {
    fn drop(&mut self) {
        signal(self.pid, libc::SIGCONT);
        tracing::info!(component = %self.component, "resumed");
    }
}

impl TestEnv {
    /// The command-line flags kube-apiserver runs with now.
    pub fn apiserver_args(&self) -> Result<Vec<String>, Error> {
        self.component_args(APISERVER)
    }

    /// The command-line flags `component` runs with now.
    pub fn component_args(&self, component: &str) -> Result<Vec<String>, Error> {
        let processes = self.processes();
        Ok(find(&processes, component)?.args().to_vec())
    }

    /// Restarts kube-apiserver with the flags it runs with (SIGTERM, as for an upgrade; killed
    /// after 10 s) and waits until it is ready again. Clients reconnect; open watches end.
    pub async fn restart_apiserver(&self) -> Result<(), Error> {
        self.restart_apiserver_with(&[]).await
    }

    /// Restarts kube-apiserver with `flags` (`--name=value`), each replacing the flag of the same
    /// name or added, and kept for later restarts; waits until it is ready again.
    pub async fn restart_apiserver_with(&self, flags: &[String]) -> Result<(), Error> {
        self.stop_component(APISERVER).await?;
        self.start_component(APISERVER, flags).await
    }

    /// Stops `component` (SIGTERM; SIGKILL after 10 s) and waits until it has exited. It stays
    /// stopped until [`TestEnv::start_component`].
    pub async fn stop_component(&self, component: &str) -> Result<(), Error> {
        let pid = find(&self.processes(), component)?.pid();
        terminate(pid);
        let deadline = Instant::now() + GRACE;
        while shared::alive(pid) {
            if Instant::now() > deadline {
                kill(pid);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::info!(component, "stopped");
        Ok(())
    }

    /// Kills `component` without warning (SIGKILL), as a crash would, and waits until it is gone.
    pub async fn kill_component(&self, component: &str) -> Result<(), Error> {
        let pid = find(&self.processes(), component)?.pid();
        kill(pid);
        while shared::alive(pid) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!(component, "killed");
        Ok(())
    }

    /// Starts a stopped `component` again with its command line, `flags` (`--name=value`)
    /// replacing the flags of the same name or added, and waits until it answers: kube-apiserver
    /// until `/readyz` says ok, etcd until it serves reads.
    pub async fn start_component(&self, component: &str, flags: &[String]) -> Result<(), Error> {
        {
            let mut processes = self.processes();
            let index = position(&processes, component)?;
            if shared::alive(processes[index].pid()) {
                return Err(Error::Fault(format!("{component} is still running; stop it first")));
            }
            let args = with_flags(processes[index].args(), flags);
            let old = processes.remove(index);
            let old_pid = old.pid();
            let (old, started) = on_keeper_thread(move || {
                let started = old.respawn(&args);
                (old, started)
            })?;
            match started {
                Ok(new) => {
                    shared::replaced(old_pid, new.pid());
                    processes.insert(index, new);
                }
                Err(e) => {
                    processes.insert(index, old);
                    return Err(e);
                }
            }
        }
        match component {
            APISERVER => self.wait_until_ready(Duration::from_secs(120)).await?,
            ETCD => {
                let url = self.etcd_url()?;
                let deadline = Instant::now() + Duration::from_secs(60);
                while let Err(e) = etcd_revision(&url).await {
                    self.still_running(component)?;
                    if Instant::now() > deadline {
                        return Err(Error::Timeout(format!("etcd to serve reads again (last error: {e})")));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            _ => {}
        }
        tracing::info!(component, "started again");
        Ok(())
    }

    /// Freezes `component` (SIGSTOP) until the returned guard is dropped: its connections stay
    /// open and every request to it waits, as on a stalled disk or a paused VM.
    pub fn pause_component(&self, component: &str) -> Result<Paused, Error> {
        let pid = find(&self.processes(), component)?.pid();
        signal(pid, libc::SIGSTOP);
        tracing::info!(component, "paused");
        Ok(Paused { component: component.to_string(), pid })
    }

    /// Compacts etcd's history up to its current revision and returns that revision: a watch
    /// resumed from an older resourceVersion that is served by etcd (not by kube-apiserver's
    /// watch cache, see `--watch-cache=false`) then ends with 410 Gone.
    pub async fn compact_etcd(&self) -> Result<i64, Error> {
        let url = self.etcd_url()?;
        let revision = etcd_revision(&url).await?;
        let body = serde_json::json!({"revision": revision.to_string(), "physical": true});
        etcd_call(&url, "/v3/kv/compaction", &body).await?;
        tracing::info!(revision, "etcd compacted");
        Ok(revision)
    }

    /// etcd's client URL, from kube-apiserver's `--etcd-servers`.
    fn etcd_url(&self) -> Result<String, Error> {
        let args = self.apiserver_args()?;
        args.iter()
            .find_map(|a| a.strip_prefix("--etcd-servers="))
            .and_then(|servers| servers.split(',').next())
            .map(str::to_string)
            .ok_or_else(|| Error::Fault("kube-apiserver runs without --etcd-servers".into()))
    }

    fn still_running(&self, component: &str) -> Result<(), Error> {
        let mut processes = self.processes();
        let index = position(&processes, component)?;
        processes[index].check_running()
    }

    async fn wait_until_ready(&self, timeout: Duration) -> Result<(), Error> {
        let client = self.client().await?;
        let deadline = Instant::now() + timeout;
        loop {
            let request = http::Request::get("/readyz").body(Vec::new()).map_err(|e| Error::Client(e.to_string()))?;
            let last = match client.request_text(request).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                Ok(body) => body,
                Err(e) => e.to_string(),
            };
            self.still_running(APISERVER)?;
            if Instant::now() > deadline {
                return Err(Error::Timeout(format!("kube-apiserver /readyz after a restart (last answer: {last})")));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn position(processes: &[Process], component: &str) -> Result<usize, Error> {
    processes
        .iter()
        .position(|p| p.name() == component)
        .ok_or_else(|| Error::Fault(format!("no component named {component} in this environment")))
}

fn find<'a>(processes: &'a [Process], component: &str) -> Result<&'a Process, Error> {
    Ok(&processes[position(processes, component)?])
}

/// `args` with each of `flags` replacing the flag of the same name (the part before `=`), or
/// appended: the command line [`TestEnv::start_component`] uses.
pub fn with_flags(args: &[String], flags: &[String]) -> Vec<String> {
    let name = |flag: &str| flag.split_once('=').map_or(flag, |(name, _)| name).to_string();
    let mut args = args.to_vec();
    for flag in flags {
        match args.iter_mut().find(|a| name(a) == name(flag)) {
            Some(arg) => arg.clone_from(flag),
            None => args.push(flag.clone()),
        }
    }
    args
}

type Job = Box<dyn FnOnce() + Send>;

/// Runs `job` on a thread that lives as long as the process, so that a component it starts is
/// not killed when the calling test's thread ends.
fn on_keeper_thread<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> Result<T, Error> {
    static KEEPER: OnceLock<Result<Mutex<mpsc::Sender<Job>>, String>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("tidegate-testenv-faults".into())
            .spawn(move || rx.into_iter().for_each(|job| job()))
            .map(|_| Mutex::new(tx))
            .map_err(|e| format!("cannot spawn the thread that restarts components: {e}"))
    });
    let keeper = keeper.as_ref().map_err(|e| Error::Fault(e.clone()))?;
    let (reply, answer) = mpsc::channel();
    let sent = keeper.lock().map_err(|_| Error::Fault("the restart thread's queue is poisoned".into()))?.send(
        Box::new(move || {
            let _ = reply.send(job());
        }),
    );
    sent.map_err(|_| Error::Fault("the thread that restarts components has stopped".into()))?;
    answer.recv().map_err(|_| Error::Fault("the thread that restarts components has stopped".into()))
}

fn signal(pid: u32, signal: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// etcd's current revision (the header of a read through its JSON gateway).
async fn etcd_revision(url: &str) -> Result<i64, Error> {
    let key = base64::engine::general_purpose::STANDARD.encode("tidegate-testenv-probe");
    let answer = etcd_call(url, "/v3/kv/range", &serde_json::json!({"key": key})).await?;
    // The gateway writes 64-bit integers as strings.
    answer["header"]["revision"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .ok_or_else(|| Error::Fault(format!("etcd answered a read without a revision: {answer}")))
}

async fn etcd_call(url: &str, path: &str, body: &serde_json::Value) -> Result<serde_json::Value, Error> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| Error::Fault(format!("HTTP client: {e}")))?;
    let response = client
        .post(format!("{url}{path}"))
        .json(body)
        .send()
        .await
        .map_err(|e| Error::Fault(format!("etcd {path}: {e}")))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| Error::Fault(format!("etcd {path}: {e}")))?;
    if !status.is_success() {
        return Err(Error::Fault(format!("etcd {path}: {status}: {text}")));
    }
    serde_json::from_str(&text).map_err(|e| Error::Fault(format!("etcd {path}: not JSON ({e}): {text}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn flags_replace_their_namesakes_and_the_rest_are_added() {
        let args = strings(&["--secure-port=6443", "--v=1", "--profiling=false"]);
        let flags = strings(&["--v=4", "--watch-cache=false", "--audit-log-path=/tmp/a.log"]);
        assert_eq!(
            with_flags(&args, &flags),
            strings(&[
                "--secure-port=6443",
                "--v=4",
                "--profiling=false",
                "--watch-cache=false",
                "--audit-log-path=/tmp/a.log"
            ])
        );
        assert_eq!(with_flags(&args, &[]), args, "no flags: the same command line");
    }
}
