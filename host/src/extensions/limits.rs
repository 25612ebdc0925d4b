//! What room extensions may use: the operator's limits (serve's options), and what one extension
//! asked for at install (`ext add --memory-mib ...`), granted within the operator's ceilings and
//! kept in its catalog entry.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::MAX_INSTANCES;

/// The operator's limits: what an extension gets when it asked for nothing, the most it may ask
/// for, and the rules all extensions share.
#[derive(Clone, Copy, Debug)]
pub struct ExtensionLimits {
    /// Wall time for one hook call (epoch interruption, to within one tick).
    pub call_budget: Duration,
    /// Linear memory of one instance.
    pub memory_bytes: usize,
    /// Live instances of one extension at once (within [`MAX_INSTANCES`] for all).
    pub instances: usize,
    /// The most an extension may ask for at install.
    pub max_call_budget: Duration,
    pub max_memory_bytes: usize,
    /// Bytes of keys and values in its storage, per room.
    pub quota_bytes: usize,
    /// Messages it may say in one room per minute.
    pub messages_per_minute: usize,
    /// Faults after which it is switched off in the room.
    pub faults_before_off: u32,
}

/// Up to 4 extensions, two calls each per message, inside the MUC call's second.
pub const MAX_CALL_BUDGET: Duration = Duration::from_millis(100);

impl Default for ExtensionLimits {
    fn default() -> ExtensionLimits {
        ExtensionLimits {
            call_budget: Duration::from_millis(50),
            memory_bytes: 16 << 20,
            instances: MAX_INSTANCES,
            max_call_budget: MAX_CALL_BUDGET,
            max_memory_bytes: 64 << 20,
            quota_bytes: 256 << 10,
            messages_per_minute: 20,
            faults_before_off: 3,
        }
    }
}

/// What an extension asked for at install; `None`: the operator's default (so a catalog entry
/// written before these existed loads, and follows the operator's defaults).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct AskedLimits {
    /// Memory of each of its instances, in MiB (default: the operator's, 16).
    #[arg(long)]
    pub memory_mib: Option<usize>,
    /// Time it may take per hook call, in ms (default: the operator's, 50).
    #[arg(long)]
    pub call_ms: Option<u64>,
    /// Its live instances at once, one per room using it; past them the least recently used is
    /// dropped (default: the operator's, 256, the cap for all extensions).
    #[arg(long)]
    pub instances: Option<usize>,
}

/// What each instance of one extension gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Granted {
    pub call_budget: Duration,
    pub memory_bytes: usize,
    pub instances: usize,
}

impl ExtensionLimits {
    /// What `asked` is granted, or why not: a request over a ceiling names it.
    pub fn grant(&self, asked: &AskedLimits) -> Result<Granted, String> {
        let memory_bytes = match asked.memory_mib {
            None => self.memory_bytes,
            Some(0) => return Err("--memory-mib must be at least 1".into()),
            Some(mib) if mib.saturating_mul(1 << 20) > self.max_memory_bytes => {
                return Err(format!(
                    "it asks for {mib} MiB of memory per instance, over the operator's ceiling \
                     of {} MiB (--extension-max-memory-mib)",
                    self.max_memory_bytes >> 20
                ))
            }
            Some(mib) => mib << 20,
        };
        let call_budget = match asked.call_ms {
            None => self.call_budget,
            Some(0) => return Err("--call-ms must be at least 1".into()),
            Some(ms) if Duration::from_millis(ms) > self.max_call_budget => {
                return Err(format!(
                    "it asks for {ms} ms per call, over the operator's ceiling of {} ms \
                     (--extension-max-call-ms)",
                    self.max_call_budget.as_millis()
                ))
            }
            Some(ms) => Duration::from_millis(ms),
        };
        let instances = match asked.instances {
            None => self.instances,
            Some(0) => return Err("--instances must be at least 1".into()),
            Some(count) if count > MAX_INSTANCES => {
                return Err(format!(
                    "it asks for {count} live instances, over the ceiling of {MAX_INSTANCES} \
                     for all extensions"
                ))
            }
            Some(count) => count,
        };
        Ok(Granted {
            call_budget,
            memory_bytes,
            instances,
        })
    }
}

impl fmt::Display for AskedLimits {
    /// For `ext list`: what it asked for, and which it left at the operator's defaults.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.memory_mib {
            Some(mib) => write!(f, "memory {mib} MiB")?,
            None => write!(f, "memory default")?,
        }
        match self.call_ms {
            Some(ms) => write!(f, ", {ms} ms per call")?,
            None => write!(f, ", call time default")?,
        }
        match self.instances {
            Some(count) => write!(f, ", {count} instances"),
            None => write!(f, ", instances default"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_not_asked_for_is_the_operator_s_default() {
        let operator = ExtensionLimits {
            memory_bytes: 8 << 20,
            ..ExtensionLimits::default()
        };
        let granted = operator.grant(&AskedLimits::default()).unwrap();
        assert_eq!(granted.memory_bytes, 8 << 20);
        assert_eq!(granted.call_budget, operator.call_budget);
        assert_eq!(granted.instances, operator.instances);
        let asked = AskedLimits {
            memory_mib: Some(40),
            call_ms: Some(80),
            instances: Some(10),
        };
        let granted = operator.grant(&asked).unwrap();
        assert_eq!(
            granted,
            Granted {
                call_budget: Duration::from_millis(80),
                memory_bytes: 40 << 20,
                instances: 10,
            }
        );
    }

    #[test]
    fn a_request_over_a_ceiling_is_refused_naming_it() {
        let operator = ExtensionLimits {
            max_memory_bytes: 32 << 20,
            max_call_budget: Duration::from_millis(60),
            ..ExtensionLimits::default()
        };
        let over = |asked: AskedLimits| operator.grant(&asked).unwrap_err();
        let memory = over(AskedLimits {
            memory_mib: Some(33),
            ..AskedLimits::default()
        });
        assert!(
            memory.contains("ceiling of 32 MiB (--extension-max-memory-mib)"),
            "{memory}"
        );
        let time = over(AskedLimits {
            call_ms: Some(61),
            ..AskedLimits::default()
        });
        assert!(
            time.contains("ceiling of 60 ms (--extension-max-call-ms)"),
            "{time}"
        );
        let instances = over(AskedLimits {
            instances: Some(MAX_INSTANCES + 1),
            ..AskedLimits::default()
        });
        assert!(instances.contains("ceiling of 256"), "{instances}");
        assert!(operator
            .grant(&AskedLimits {
                memory_mib: Some(32),
                call_ms: Some(60),
                instances: Some(MAX_INSTANCES),
            })
            .is_ok());
    }
}
