//! One environment per test binary.
//!
//! Starting a control plane takes seconds, so the tests of one binary share it. Each test builds
//! its own clients ([`TestEnv::client`]) because a client belongs to the Tokio runtime that made
//! it, and every `#[tokio::test]` has its own runtime.
//!
//! The environment is started and owned by a dedicated thread that never exits, so the kernel's
//! parent-death signal (set on every component) fires only when the process ends. An `atexit`
//! handler stops the components and removes the directory when the test binary exits, whether
//! the tests passed or not.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::process::{kill, terminate};
use crate::{Error, TestEnv};

static SHARED: OnceLock<Result<&'static TestEnv, String>> = OnceLock::new();
static CLEANUP: Mutex<Option<(Vec<u32>, PathBuf)>> = Mutex::new(None);

/// The environment shared by the tests of this binary, started on first use.
pub fn shared() -> Result<&'static TestEnv, Error> {
    SHARED
        .get_or_init(start)
        .as_ref()
        .copied()
        .map_err(|e| Error::Start { component: "shared test environment".into(), message: e.clone() })
}

fn start() -> Result<&'static TestEnv, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new().name("tidegate-testenv".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(e) => {
                let _ = tx.send(Err(e.to_string()));
                return;
            }
        };
        match runtime.block_on(TestEnv::start()) {
            Ok(env) => {
                let env: &'static TestEnv = Box::leak(Box::new(env));
                register_cleanup(env);
                let _ = tx.send(Ok(env));
                loop {
                    std::thread::park();
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e.to_string()));
            }
        }
    });
    if let Err(e) = spawned {
        return Err(format!("cannot spawn the environment thread: {e}"));
    }
    rx.recv().map_err(|_| "the environment thread died while starting".to_string())?
}

fn register_cleanup(env: &TestEnv) {
    if let Ok(mut slot) = CLEANUP.lock() {
        *slot = Some((env.pids(), env.dir().to_path_buf()));
    }
    // SAFETY: `cleanup` is a plain `extern "C" fn` with no arguments, as atexit(3) requires.
    #[allow(unsafe_code)]
    unsafe {
        libc::atexit(cleanup);
    }
}

/// Records that a component of the shared environment was restarted (`faults`): the exit handler
/// stops `new` instead of `old`.
pub(crate) fn replaced(old: u32, new: u32) {
    if let Ok(mut slot) = CLEANUP.lock()
        && let Some((pids, _)) = slot.as_mut()
    {
        pids.iter_mut().filter(|pid| **pid == old).for_each(|pid| *pid = new);
    }
}

extern "C" fn cleanup() {
    let Ok(mut slot) = CLEANUP.lock() else { return };
    let Some((pids, dir)) = slot.take() else { return };
    for pid in pids.iter().rev() {
        terminate(*pid);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && pids.iter().any(|pid| alive(*pid)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in &pids {
        kill(*pid);
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Whether process `pid` runs (exists and is not a zombie).
pub(crate) fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}
