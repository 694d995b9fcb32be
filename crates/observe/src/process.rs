//! This process's resident memory and CPU time, read from `/proc/self` (Linux); `None`
//! elsewhere, so `/metrics` leaves the sample out rather than reporting zero.

/// Resident set size in bytes.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

/// User plus system CPU time in seconds.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields are counted after the
    // last `)`. utime and stime are fields 14 and 15, i.e. the 12th and 13th after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks())
}

#[cfg(unix)]
fn page_size() -> u64 {
    // SAFETY: sysconf only reads a constant of the running system.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 { v as u64 } else { 4096 }
}

#[cfg(not(unix))]
fn page_size() -> u64 {
    4096
}

#[cfg(unix)]
fn clock_ticks() -> f64 {
    // SAFETY: as above.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 { v as f64 } else { 100.0 }
}

#[cfg(not(unix))]
fn clock_ticks() -> f64 {
    100.0
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn reads_this_process() {
        let rss = super::resident_bytes().expect("statm");
        assert!(rss > 100_000, "{rss}");
        let cpu = super::cpu_seconds().expect("stat");
        assert!(cpu >= 0.0);
    }
}
