//! What the operating system says about the machine and a process.

/// Peak resident set size (`VmHWM`) of process `pid`, MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// CPU time (user + system) of process `pid` so far, seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / clock_ticks())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    #[allow(unsafe_code)]
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// CPU time of every live process whose command is `name`, seconds.
pub fn cpu_seconds_named(name: &str) -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .filter_map(cpu_seconds)
        .sum()
}

/// Where CPU time went over a phase, by process.
pub struct CpuMeter {
    started: std::time::Instant,
    at_start: Vec<(&'static str, Source, f64)>,
}

/// A process, some processes, or every process of a name.
#[derive(Clone)]
pub enum Source {
    Pid(Option<u32>),
    /// Together (a cluster's nodes); not a number if one is gone.
    Pids(Vec<u32>),
    Named(&'static str),
}

impl Source {
    fn seconds(&self) -> f64 {
        match self {
            Self::Pid(pid) => pid.and_then(cpu_seconds).unwrap_or(f64::NAN),
            Self::Pids(pids) if pids.is_empty() => f64::NAN,
            Self::Pids(pids) => pids
                .iter()
                .map(|&pid| cpu_seconds(pid).unwrap_or(f64::NAN))
                .sum(),
            Self::Named(name) => cpu_seconds_named(name),
        }
    }
}

impl CpuMeter {
    /// Starts counting for each labelled source.
    pub fn start(sources: &[(&'static str, Source)]) -> Self {
        Self {
            started: std::time::Instant::now(),
            at_start: sources
                .iter()
                .map(|(label, source)| (*label, source.clone(), source.seconds()))
                .collect(),
        }
    }

    /// Cores used by each source since the start (CPU seconds per second).
    pub fn cores(&self) -> Vec<(&'static str, f64)> {
        let wall = self.started.elapsed().as_secs_f64();
        self.at_start
            .iter()
            .map(|(label, source, before)| (*label, (source.seconds() - before) / wall))
            .collect()
    }
}

/// Records the cores each source of `meter` used during `phase`; returns
/// them, by label.
pub fn record_cpu(
    report: &mut crate::report::Report,
    phase: &str,
    meter: &CpuMeter,
) -> Vec<(&'static str, f64)> {
    let cores = meter.cores();
    for &(label, used) in &cores {
        report.record("cpu", &format!("{phase}: {label}"), "cores", used);
    }
    cores
}

/// The cores of `label` among `cores`; not a number when it is not there,
/// so a figure made from it reads "not measured", never as free.
pub fn cores_of(cores: &[(&'static str, f64)], label: &str) -> f64 {
    cores
        .iter()
        .find(|(l, _)| *l == label)
        .map_or(f64::NAN, |&(_, c)| c)
}

/// CPU model and count, for the report's heading.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown CPU")
        .to_owned();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    format!("{cpus} CPUs ({model}), {mem_gib:.0} GiB")
}

/// Today's date, UTC, `YYYY-MM-DD`.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    date_of_day((secs / 86_400) as i64)
}

/// The civil date of day `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn date_of_day(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_its_own_peak_rss() {
        let rss = super::peak_rss_mib(std::process::id()).expect("VmHWM of this process");
        assert!(rss > 0.0, "peak RSS {rss}");
        assert!(super::peak_rss_mib(u32::MAX).is_none());
    }

    #[test]
    fn counts_its_own_cpu_time() {
        let meter =
            super::CpuMeter::start(&[("self", super::Source::Pid(Some(std::process::id())))]);
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let cores = meter.cores()[0].1;
        assert!(cores > 0.2 && cores < 1.5, "a busy loop used {cores} cores");
        assert!(super::cpu_seconds(u32::MAX).is_none());
    }

    #[test]
    fn cores_of_a_missing_source_are_not_a_number() {
        let cores = [("producer", 0.5)];
        assert_eq!(super::cores_of(&cores, "producer"), 0.5);
        assert!(super::cores_of(&cores, "bridge").is_nan());
    }

    #[test]
    fn civil_dates() {
        assert_eq!(super::date_of_day(0), "1970-01-01");
        assert_eq!(super::date_of_day(11_016), "2000-02-29");
        assert_eq!(super::date_of_day(20_794), "2026-12-07");
    }
}
