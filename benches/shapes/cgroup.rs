//! A CPU cap like a Lambda memory size, with the cgroup v1 `cpu` controller.
//!
//! Lambda gives a function CPU in proportion to its memory, one vCPU at 1,769 MB. The cap is a
//! CFS quota of `period * memory / 1769` per `period`. Lambda's own scheduler period is not
//! published; we assume a fine one and use 20 ms: with the kernel's default 100 ms, a function at
//! 128 MB runs 7 ms and then waits 93 ms, so a batch of a few milliseconds is either free or
//! 90 ms late depending on where in the period it starts. 20 ms is about the finest period the
//! smallest cap allows: the kernel refuses quotas under 1 ms, and 128 MB gets 1.45 ms of 20.

use std::path::PathBuf;
use std::time::Duration;

const ROOT: &str = "/sys/fs/cgroup/cpu";
pub const PERIOD: Duration = Duration::from_millis(20);
/// The memory size that gets one full vCPU.
pub const ONE_VCPU_MB: u32 = 1769;

/// A cgroup of our own under the cpu controller, removed on drop.
pub struct CpuCap {
    dir: PathBuf,
}

impl CpuCap {
    /// Creates the cgroup `name`; the function processes join it with `procs_file` at spawn.
    pub fn create(name: &str) -> std::io::Result<CpuCap> {
        let dir =
            PathBuf::from(ROOT).join(format!("login-etl-shapes-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("cpu.cfs_period_us"),
            PERIOD.as_micros().to_string(),
        )?;
        Ok(CpuCap { dir })
    }

    /// Caps the group like a function of `memory_mb`.
    pub fn set_memory(&self, memory_mb: u32) -> std::io::Result<()> {
        let quota = PERIOD.as_micros() as u64 * u64::from(memory_mb) / u64::from(ONE_VCPU_MB);
        std::fs::write(self.dir.join("cpu.cfs_quota_us"), quota.to_string())
    }

    /// Opened before a spawn, written by the child between fork and exec (`join_at_exec`), so
    /// the process is capped from its first instruction: its cold start is measured capped.
    pub fn procs_file(&self) -> std::io::Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.procs"))
    }
}

impl Drop for CpuCap {
    fn drop(&mut self) {
        // A cgroup can only be removed once empty; the function processes are stopped by now.
        // Move stragglers back to the root first, so the directory never stays behind.
        if let Ok(procs) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
            for pid in procs.lines() {
                std::fs::write(PathBuf::from(ROOT).join("cgroup.procs"), pid).ok();
            }
        }
        std::fs::remove_dir(&self.dir).ok();
    }
}

/// Makes `command`'s process join the cgroup of `procs` before it execs.
pub fn join_at_exec(command: &mut tokio::process::Command, procs: std::fs::File) {
    use std::io::Write;
    // SAFETY: the closure runs in the forked child before exec; it only writes to a file
    // descriptor opened before the fork (one write system call, no allocation, no lock).
    // "0" means the writing process itself.
    unsafe {
        command.pre_exec(move || (&procs).write_all(b"0"));
    }
}
