//! The Dockerfiles build the dependencies first, in a layer of their own, from the manifests
//! alone: every crate's sources and every bench a manifest names are stubbed for it. A bench
//! missing from that list makes cargo refuse the manifest, and the image build fails — which
//! only the Docker test would otherwise show. This checks the lists against the manifests.

use std::path::Path;

/// The `benches/<name>.rs` files the manifest at `crate_dir` names in `[[bench]]` tables.
fn benches_named(root: &Path, crate_dir: &str) -> Vec<String> {
    let manifest = std::fs::read_to_string(root.join(crate_dir).join("Cargo.toml"))
        .unwrap_or_else(|e| panic!("{crate_dir}/Cargo.toml: {e}"));
    let mut benches = Vec::new();
    let mut in_bench = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bench = line == "[[bench]]";
        } else if in_bench && let Some(name) = line.strip_prefix("name = ") {
            benches.push(format!("{crate_dir}/benches/{}.rs", name.trim_matches('"')));
        }
    }
    benches
}

#[test]
fn every_bench_a_manifest_names_is_stubbed_in_each_dockerfiles_dependency_layer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let crates = [
        "wire",
        "plumbing",
        "guard",
        "publisher",
        "subscriber",
        "verifier",
    ];
    let benches: Vec<String> = crates
        .iter()
        .flat_map(|dir| benches_named(&root, dir))
        .collect();
    assert!(benches.len() >= 4, "found only {benches:?}");
    for dockerfile in ["Dockerfile.pub", "Dockerfile.sub"] {
        let text = std::fs::read_to_string(root.join(dockerfile)).expect("a Dockerfile");
        for bench in &benches {
            assert!(
                text.contains(bench.as_str()),
                "{dockerfile} does not stub {bench}, which a manifest names: its dependency layer would fail"
            );
        }
    }
}
