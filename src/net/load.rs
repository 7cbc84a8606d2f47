//! Where a process's load figures come from: the operating system in production, the
//! simulator's load model in simulation. They feed the throttling policy
//! ([`crate::proto::throttle`]) and the heartbeats that report load (§11.3).

use std::sync::{Arc, Mutex};

use sysinfo::{MemoryRefreshKind, RefreshKind, System};

use crate::proto::frame::Load;

/// A source of load figures, sampled about once a second.
pub trait LoadSource: Send + Sync {
    /// The load now: CPU as the share of the machine busy since the previous sample, memory
    /// as the share in use.
    fn sample(&self) -> Load;
}

/// Where a driver that `wants` load figures takes them: the source it was `given`, else the
/// operating system's. `None` when it does not want them, or when the operating system's
/// cannot be read here (logged with what goes `without` them).
pub(crate) fn source(
    given: &Option<Arc<dyn LoadSource>>,
    wants: bool,
    without: &str,
) -> Option<Arc<dyn LoadSource>> {
    match (given, wants) {
        (_, false) => None,
        (Some(l), true) => Some(l.clone()),
        (None, true) => match OsLoad::new() {
            Ok(os) => Some(Arc::new(os)),
            Err(e) => {
                tracing::warn!(error = %e, "no load figures: {without}");
                None
            }
        },
    }
}

/// The machine's load as the operating system reports it: CPU use over all cores since the
/// previous sample, memory in use over total.
pub struct OsLoad {
    system: Mutex<System>,
}

impl OsLoad {
    /// The operating system's figures; an error when they cannot be read here.
    pub fn new() -> Result<OsLoad, String> {
        let refresh = RefreshKind::nothing()
            .with_cpu(sysinfo::CpuRefreshKind::nothing().with_usage())
            .with_memory(MemoryRefreshKind::nothing().with_ram());
        let system = System::new_with_specifics(refresh)
            .map_err(|e| format!("cannot read the machine's load: {e}"))?;
        Ok(OsLoad {
            system: Mutex::new(system),
        })
    }
}

/// A share in [0, 1] as per-mille.
pub fn permille(share: f64) -> u16 {
    (share.clamp(0.0, 1.0) * 1000.0).round() as u16
}

impl LoadSource for OsLoad {
    fn sample(&self) -> Load {
        let mut s = self.system.lock().unwrap_or_else(|e| e.into_inner());
        s.refresh_cpu_usage();
        s.refresh_memory();
        let cpu = f64::from(s.global_cpu_usage()) / 100.0;
        let total = s.total_memory();
        let mem = if total == 0 {
            0.0
        } else {
            s.used_memory() as f64 / total as f64
        };
        Load {
            cpu_permille: permille(cpu),
            mem_permille: permille(mem),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operating_system_reports_shares_within_bounds() {
        let os = OsLoad::new().expect("this machine's load is readable");
        let l = os.sample();
        assert!(l.cpu_permille <= 1000 && l.mem_permille <= 1000);
        assert!(l.mem_permille > 0, "a running machine uses some memory");
    }
}
