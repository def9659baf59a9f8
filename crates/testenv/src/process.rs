//! Child processes of the environment: logged to a file, stopped on drop, and killed by the kernel
//! if the thread that started them dies first.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Error;

/// A running component (etcd, kube-apiserver, …).
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
    binary: PathBuf,
    args: Vec<String>,
}

impl Process {
    /// Starts `binary` with `args`, writing its stdout and stderr to `<log_dir>/<name>.log`.
    pub fn spawn(name: &str, binary: &Path, args: &[String], log_dir: &Path) -> Result<Self, Error> {
        let log = log_dir.join(format!("{name}.log"));
        let out = File::create(&log).map_err(|e| Error::io(&log, e))?;
        Self::start(name, binary, args, log, out)
    }

    /// Starts the same binary again with `args`, appending to this process's log (for a component
    /// restarted by a test). The kernel kills the new process when the calling thread exits.
    pub fn respawn(&self, args: &[String]) -> Result<Self, Error> {
        let out = OpenOptions::new().append(true).open(&self.log).map_err(|e| Error::io(&self.log, e))?;
        Self::start(&self.name, &self.binary, args, self.log.clone(), out)
    }

    fn start(name: &str, binary: &Path, args: &[String], log: PathBuf, out: File) -> Result<Self, Error> {
        let err = out.try_clone().map_err(|e| Error::io(&log, e))?;
        let mut command = Command::new(binary);
        command.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
        die_with_parent(&mut command);
        let child = command.spawn().map_err(|e| Error::Start {
            component: name.to_string(),
            message: format!("cannot execute {}: {e}", binary.display()),
        })?;
        Ok(Self { name: name.to_string(), child, log, binary: binary.to_path_buf(), args: args.to_vec() })
    }

    /// Name of the component.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// OS process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Path of the component's log.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The arguments the process was started with.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// Fails with the tail of the log if the process has already exited.
    pub fn check_running(&mut self) -> Result<(), Error> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(Error::Start {
                component: self.name.clone(),
                message: format!(
                    "exited with {status}; last lines of {}:\n{}",
                    self.log.display(),
                    tail(&self.log, 30)
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Asks the process to stop (SIGTERM), waits up to `grace`, then kills it.
    pub fn stop(&mut self, grace: Duration) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        terminate(self.child.id());
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// The last `lines` lines of a log file, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Sends SIGTERM to a process.
pub(crate) fn terminate(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

/// Sends SIGKILL to a process.
pub(crate) fn kill(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// Makes the kernel kill the child when the thread that spawned it exits, so that a test binary
/// killed without running destructors leaves no control plane behind.
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
    // async-signal-safe; it allocates nothing.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
