//! Pid files (`DIR/node-<id>.pid`): how a second dev-cluster on the same
//! directory learns that one already runs, and how a user finds the node
//! processes. A pid file counts only while its process lives *and* is a
//! node of this directory (its command line carries the node's
//! `--data-dir`), so a pid reused by an unrelated process after a crash is
//! recognised as stale rather than blocking the directory forever.

use std::io;
use std::path::Path;

use rustix::process::{Pid, test_kill_process};

/// What a pid file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidFile {
    /// No pid file.
    Missing,
    /// Names a live node of this directory.
    Running(u32),
    /// Unreadable, or its process is gone or is something else.
    Stale,
}

/// The pid in a pid file's text.
pub fn parse(text: &str) -> Option<u32> {
    text.trim().parse().ok().filter(|p| *p > 0)
}

/// Whether a `/proc/<pid>/cmdline` (NUL-separated arguments) is that of
/// the node whose data directory is `data_dir`. Pure.
pub fn is_node_of(cmdline: &[u8], data_dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let want = data_dir.as_os_str().as_bytes();
    let mut args = cmdline.split(|b| *b == 0);
    while let Some(a) = args.next() {
        if a == b"--data-dir" && args.next() == Some(want) {
            return true;
        }
        if a.strip_prefix(b"--data-dir=") == Some(want) {
            return true;
        }
    }
    false
}

/// Whether process `pid` exists (possibly owned by another user).
fn alive(pid: u32) -> bool {
    let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) else { return false };
    match test_kill_process(p) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

/// Reads the pid file at `path` of the node whose data directory is
/// `data_dir`.
pub fn check(path: &Path, data_dir: &Path) -> PidFile {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return PidFile::Missing,
        Err(_) => return PidFile::Stale,
    };
    let Some(pid) = parse(&text) else { return PidFile::Stale };
    if !alive(pid) {
        return PidFile::Stale;
    }
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) if is_node_of(&cmdline, data_dir) => PidFile::Running(pid),
        Ok(_) => PidFile::Stale,
        // No /proc to ask: a live pid is taken at its word.
        Err(_) => PidFile::Running(pid),
    }
}

/// Writes `pid` to `path`.
pub fn write(path: &Path, pid: u32) -> io::Result<()> {
    std::fs::write(path, format!("{pid}\n"))
}

/// Removes `path`; a missing file is fine.
pub fn remove(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pids() {
        assert_eq!(parse("123\n"), Some(123));
        assert_eq!(parse("0"), None);
        assert_eq!(parse("x"), None);
    }

    #[test]
    fn recognises_the_nodes_command_line() {
        let d = Path::new("/tmp/dc/node-1");
        let ours = b"/bin/gw\0node\0--cluster\0/tmp/dc/cluster.toml\0--data-dir\0/tmp/dc/node-1\0";
        assert!(is_node_of(ours, d));
        assert!(is_node_of(b"predastore-node\0--data-dir=/tmp/dc/node-1\0", d));
        assert!(!is_node_of(b"predastore-node\0--data-dir\0/tmp/dc/node-10\0", d));
        assert!(!is_node_of(b"sleep\0/tmp/dc/node-1\0", d));
        assert!(!is_node_of(b"", d));
    }

    #[test]
    fn live_foreign_and_dead_processes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("node-0.pid");
        assert_eq!(check(&f, dir.path()), PidFile::Missing);
        // This test process is alive but no node of that directory.
        write(&f, std::process::id()).unwrap();
        assert_eq!(check(&f, dir.path()), PidFile::Stale);
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        write(&f, child.id()).unwrap();
        assert_eq!(check(&f, Path::new("30")), PidFile::Stale, "needs --data-dir");
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(check(&f, dir.path()), PidFile::Stale);
        // A live process with the node's --data-dir counts as running.
        let data = dir.path().join("node-0");
        let mut node = std::process::Command::new("sh")
            .args(["-c", "sleep 30; true", "--data-dir"])
            .arg(&data)
            .spawn()
            .unwrap();
        write(&f, node.id()).unwrap();
        // Until the child has exec'd, /proc shows the test's command line.
        let cmdline = format!("/proc/{}/cmdline", node.id());
        for _ in 0..100 {
            if std::fs::read(&cmdline).is_ok_and(|c| c.windows(10).any(|w| w == b"--data-dir")) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(check(&f, &data), PidFile::Running(node.id()));
        node.kill().unwrap();
        node.wait().unwrap();
        std::fs::write(&f, "garbage").unwrap();
        assert_eq!(check(&f, dir.path()), PidFile::Stale);
        remove(&f).unwrap();
        remove(&f).unwrap();
    }
}
