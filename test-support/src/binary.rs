//! Where the workspace's binaries are, built fresh for the tests that run them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Path of the workspace binary `name` (`publisher`, `subscriber`, `verifier`).
///
/// The first call in a test process builds the workspace's test targets (and so its binaries,
/// with the same features and profile as the tests; a no-op when they are fresh), so a test
/// never runs a stale build of another package. Tests of the package that owns a binary can
/// use `env!("CARGO_BIN_EXE_<name>")` instead, which cargo guarantees fresh.
pub fn binary(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(build_binaries);
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.is_file(), "no binary {name} in {}", dir.display());
    path
}

/// Builds with `--tests`, not `--bins`: only then are dev-dependency features unified as in the
/// test build, so the binaries are the ones the tests were built with, not a rebuild of them.
fn build_binaries() -> PathBuf {
    // A test executable is target/<profile>/deps/<test>-<hash>; binaries are in target/<profile>.
    let exe = std::env::current_exe().expect("the test executable has a path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable is in target/<profile>/deps")
        .to_owned();
    let target_dir = profile_dir
        .parent()
        .expect("target/<profile> is in a target directory");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_owned(),
        Some(other) => other.to_owned(),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--workspace", "--tests", "--quiet", "--profile"])
        .arg(&profile)
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the workspace's binaries failed");
    profile_dir
}
