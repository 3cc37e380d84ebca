//! Name resolution without a DNS server: a worker started in a mount namespace of its own,
//! where a private hosts file is bind-mounted over `/etc/hosts`, so a name the test chooses
//! resolves to the addresses the test chooses — and to others once the test rewrites the file.
//!
//! Needs root and `unshare(1)`; without them the tests that use it fail, saying so.

use crate::process::Process;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A hosts file for one test, bind-mounted over `/etc/hosts` of the workers it starts.
pub struct HostsFile {
    path: PathBuf,
}

impl HostsFile {
    /// A hosts file in `dir` where `name` resolves to each of `addresses`. Panics, saying why,
    /// when this machine cannot give a process a private `/etc/hosts`.
    pub fn new(dir: &Path, name: &str, addresses: &[&str]) -> HostsFile {
        check_unshare();
        let hosts = HostsFile {
            path: dir.join("hosts"),
        };
        hosts.write(name, addresses);
        hosts
    }

    /// Makes `name` resolve to `addresses` from now on. The file is rewritten in place (the
    /// same inode: truncated and written), since a bind mount follows the inode, not the path.
    pub fn write(&self, name: &str, addresses: &[&str]) {
        let mut text = String::from("127.0.0.1 localhost\n");
        for address in addresses {
            text.push_str(&format!("{address} {name}\n"));
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.path)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", self.path.display()));
        file.write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", self.path.display()));
    }

    /// Starts `program` like [`Process::start`], in a mount namespace of its own where this
    /// file is `/etc/hosts`.
    pub fn start(&self, program: &Path, dir: &Path, env: &[(&str, String)]) -> Process {
        let name = program
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("process");
        let mut command = Command::new("unshare");
        command
            .args([
                "--mount",
                "sh",
                "-c",
                r#"mount --bind "$0" /etc/hosts && exec "$1""#,
            ])
            .arg(&self.path)
            .arg(program);
        Process::start_command(command, name, dir, env)
    }
}

/// Panics with what is missing unless `unshare --mount` and a bind mount work here.
fn check_unshare() {
    let outcome = Command::new("unshare")
        .args(["--mount", "sh", "-c", "mount --bind /etc/hosts /etc/hosts"])
        .output();
    match outcome {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "these tests give a worker a private /etc/hosts with `unshare --mount` and a bind \
             mount, which needs root: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(e) => panic!(
            "these tests give a worker a private /etc/hosts with `unshare --mount` (util-linux), \
             which cannot be run here: {e}"
        ),
    }
}
