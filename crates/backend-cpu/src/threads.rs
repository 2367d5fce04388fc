//! Choosing the number of worker threads.

use std::collections::HashSet;

/// Physical cores of this machine: unique `(physical id, core id)` pairs of
/// `/proc/cpuinfo` on Linux, otherwise (or when that fails) the logical CPU
/// count from [`std::thread::available_parallelism`].
pub fn physical_cores() -> usize {
    let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
    match std::fs::read_to_string("/proc/cpuinfo") {
        Ok(text) => match count_cores(&text) {
            // Never more than the CPUs this process may run on (cgroups, affinity).
            Some(n) if n > 0 => n.min(logical),
            _ => logical,
        },
        Err(_) => logical,
    }
}

/// Unique `(physical id, core id)` pairs in a `/proc/cpuinfo` text, or `None`
/// when the file has no `core id` lines (some VMs and architectures).
fn count_cores(cpuinfo: &str) -> Option<usize> {
    let mut cores = HashSet::new();
    let mut physical = String::new();
    let mut seen_core_id = false;
    for line in cpuinfo.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key.trim() {
            "processor" => physical.clear(),
            "physical id" => physical = value.trim().to_string(),
            "core id" => {
                seen_core_id = true;
                cores.insert((physical.clone(), value.trim().to_string()));
            }
            _ => {}
        }
    }
    seen_core_id.then_some(cores.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_unique_cores() {
        let text = "processor\t: 0\nphysical id\t: 0\ncore id\t: 0\n\n\
                    processor\t: 1\nphysical id\t: 0\ncore id\t: 0\n\n\
                    processor\t: 2\nphysical id\t: 0\ncore id\t: 1\n\n\
                    processor\t: 3\nphysical id\t: 1\ncore id\t: 0\n";
        assert_eq!(count_cores(text), Some(3));
        assert_eq!(count_cores("processor : 0\n"), None);
        assert!(physical_cores() >= 1);
    }
}
