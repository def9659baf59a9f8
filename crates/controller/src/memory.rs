//! Heap the controller no longer uses goes back to the kernel.
//!
//! The controller's memory peaks when its watches list every Release and Promotion (at start and
//! after a relist) and kube starts a reconcile of each; once those end, most of that heap is free
//! but glibc's malloc keeps it, spread over one arena per thread that allocated, so the process's
//! resident memory stays at the peak. Two things keep it near what the caches hold:
//! - [`limit_arenas`], at start, before any thread: at most [`ARENAS`] malloc arenas, so freed
//!   memory is not scattered over as many arenas as the runtime ever had threads;
//! - [`release_unused`], every [`INTERVAL`]: `malloc_trim(0)`, which gives every free page of
//!   every arena back to the kernel (the top of the heap and whole free pages inside it).
//!
//! Only where the C library is glibc; elsewhere both do nothing.

use std::time::Duration;

/// Malloc arenas: one for each of the runtime's worker threads on a two-core node, which is what
/// the controller is sized for. Threads beyond that share them.
pub const ARENAS: i32 = 2;
/// How often free heap is given back.
pub const INTERVAL: Duration = Duration::from_secs(15);

/// Limits glibc's malloc to [`ARENAS`] arenas. Call before the async runtime starts threads.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: mallopt only sets a malloc parameter; it is called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// Gives free heap back to the kernel every [`INTERVAL`], for as long as the process runs.
pub async fn release_unused() {
    let mut ticks = tokio::time::interval(INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        // A few milliseconds of walking the free lists; off the runtime's worker threads.
        match tokio::task::spawn_blocking(release_now).await {
            Ok(released) if released > 0 => tracing::debug!(released_kib = released / 1024, "free heap released"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "releasing free heap failed"),
        }
    }
}

/// Gives free heap back to the kernel now; returns by how many bytes the resident set shrank
/// (0 when it did not, or when that cannot be read).
pub fn release_now() -> u64 {
    let before = resident_bytes();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim takes malloc's own locks; it is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
    match (before, resident_bytes()) {
        (Some(before), Some(after)) => before.saturating_sub(after),
        _ => 0,
    }
}

/// The process's resident set in bytes (`VmRSS` of `/proc/self/status`), where there is one.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|line| line.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_heap_goes_back_to_the_kernel() {
        // 64 MiB in small blocks (below the mmap threshold, so they live in an arena), written
        // so that the pages are resident, then freed: the arena keeps them until released.
        let blocks: Vec<Vec<u8>> = (0..16 * 1024).map(|i| vec![i as u8; 4096]).collect();
        let peak = resident_bytes().expect("VmRSS");
        // Keep one block at the end so that the free pages are inside the heap, not at its top.
        let last = blocks.last().cloned();
        drop(blocks);
        let released = release_now();
        let after = resident_bytes().expect("VmRSS");
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(released >= 32 * 1024 * 1024, "released {released} bytes (resident {peak} → {after})");
        }
        drop(last);
    }

    #[test]
    fn the_resident_set_reads_in_bytes() {
        let resident = resident_bytes().expect("VmRSS");
        assert!(resident > 1024 * 1024, "{resident}");
    }
}
