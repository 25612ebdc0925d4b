//! What the server under test costs, read from /proc and summed over its processes: CPU time
//! (user + system) and resident memory.

use anyhow::{Context, Result};

/// Clock ticks per second of /proc/PID/stat's times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
}

/// The processes' CPU time so far and their resident memory now.
pub fn usage(pids: &[u32]) -> Result<Usage> {
    let mut total = Usage::default();
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("reading /proc/{pid}/stat"))?;
        // The command name may hold spaces: the fields start after its closing parenthesis.
        let fields: Vec<&str> = stat[stat.rfind(')').context("a stat line")? + 2..]
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        total.cpu_seconds += ticks as f64 / TICKS_PER_SECOND;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let resident_kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0);
        total.resident_bytes += resident_kib * 1024;
    }
    Ok(total)
}
