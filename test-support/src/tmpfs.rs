//! A small tmpfs mounted for one test, so a full disk is real: writes fail with `ENOSPC`, and
//! space returns when a file is removed. Mounting needs root (CAP_SYS_ADMIN), as on the
//! development machine and in CI.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted at a directory; unmounted when dropped.
pub struct Tmpfs {
    at: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount`'s syntax: `2m`) at `at`, made when missing.
    pub fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("a mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("mount runs");
        assert!(
            mounted.success(),
            "this test mounts a tmpfs and needs root (CAP_SYS_ADMIN)"
        );
        Tmpfs { at: at.to_owned() }
    }

    /// Fills what space is left with the file `filler` in it; remove that file to free it.
    pub fn fill(&self) -> PathBuf {
        let filler = self.at.join("filler");
        // The write fails once the file system is full; what it wrote stays.
        let _ = std::fs::write(&filler, vec![0u8; 64 * 1024 * 1024]);
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}
