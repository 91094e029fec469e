//! Peak memory of the service processes, from `/proc/<pid>/status` (VmHWM):
//! `mailfleet serve <name>` processes and the standalone service binaries.
//! The load tool's own memory is never what we want to know.

use std::path::Path;

const SERVICES: [&str; 5] = [
    "smtp-gateway",
    "delivery-worker",
    "mailstore",
    "imap-frontend",
    "pop3-frontend",
];

#[derive(Debug, PartialEq, Eq)]
pub struct ServiceProcess {
    pub pid: u32,
    pub name: String,
    /// Peak resident set size in KiB.
    pub hwm_kib: u64,
    /// Current resident set size in KiB.
    pub rss_kib: u64,
}

/// Every service process visible in /proc, by name then pid.
pub fn service_processes() -> Vec<ServiceProcess> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<ServiceProcess> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(process)
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name).then(a.pid.cmp(&b.pid)));
    found
}

/// One service process by pid, if it still runs.
pub fn process(pid: u32) -> Option<ServiceProcess> {
    let dir = Path::new("/proc").join(pid.to_string());
    let name = service_name(&std::fs::read(dir.join("cmdline")).ok()?)?;
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    Some(ServiceProcess {
        pid,
        name,
        hwm_kib: status_kib(&status, "VmHWM:")?,
        rss_kib: status_kib(&status, "VmRSS:").unwrap_or(0),
    })
}

/// The `name` process serving `target`: the one whose environment sets
/// `listen_var` to that address, or else the only `name` process.
pub fn serving(name: &str, listen_var: &str, target: &str) -> Option<ServiceProcess> {
    let mut procs: Vec<_> = service_processes()
        .into_iter()
        .filter(|p| p.name == name)
        .collect();
    let wanted = format!("{listen_var}={target}");
    let serving = procs.iter().position(|p| {
        std::fs::read(format!("/proc/{}/environ", p.pid))
            .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == wanted.as_bytes()))
    });
    match serving {
        Some(i) => Some(procs.swap_remove(i)),
        None if procs.len() == 1 => procs.pop(),
        None => None,
    }
}

/// Resets the process's VmHWM to its current RSS (Linux: writing 5 to
/// clear_refs), so a later VmHWM is the peak since now rather than since
/// the process started. False when not allowed or not supported.
pub fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), b"5").is_ok()
}

/// The service a command line runs, if it is one.
pub fn service_name(cmdline: &[u8]) -> Option<String> {
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let program = Path::new(std::str::from_utf8(args.first()?).ok()?)
        .file_name()?
        .to_str()?;
    if program == "mailfleet" && args.get(1) == Some(&&b"serve"[..]) {
        let name = std::str::from_utf8(args.get(2)?).ok()?;
        return SERVICES.contains(&name).then(|| name.to_owned());
    }
    SERVICES.contains(&program).then(|| program.to_owned())
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            service_name(b"/x/target/debug/mailfleet\0serve\0mailstore\0").as_deref(),
            Some("mailstore")
        );
        assert_eq!(
            service_name(b"/usr/bin/smtp-gateway\0").as_deref(),
            Some("smtp-gateway")
        );
        assert_eq!(service_name(b"mailfleet\0bench\0smtp\0"), None);
        assert_eq!(service_name(b"mailfleet\0serve\0"), None);
        assert_eq!(service_name(b"bash\0"), None);
        assert_eq!(
            status_kib("Name:\tx\nVmHWM:\t  12345 kB\n", "VmHWM:"),
            Some(12345)
        );
    }
}
