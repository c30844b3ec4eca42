//! Golden files: rendered outputs checked in next to the tests. A mismatch
//! fails with a line diff; `UPDATE_GOLDEN=1` rewrites the file instead.

use std::path::{Path, PathBuf};

/// The workspace root (parent of `operator/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("operator/ has a parent").to_path_buf()
}

/// Whether golden files should be rewritten rather than compared.
pub fn updating() -> bool {
    std::env::var("UPDATE_GOLDEN").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Compares `actual` with the file at `path` (relative to the workspace
/// root); rewrites it under `UPDATE_GOLDEN=1`.
pub fn check(path: &str, actual: &str) {
    let file = workspace_root().join(path);
    if updating() {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(&file, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!("{path}: {e}; run `UPDATE_GOLDEN=1 cargo test -p predastore-operator` to create it")
    });
    if expected != actual {
        let diff = similar::TextDiff::from_lines(expected.as_str(), actual);
        let shown = diff.unified_diff().context_radius(3).header(path, "generated").to_string();
        panic!(
            "{path} drifted from what the code generates:\n{shown}\n\
             run `UPDATE_GOLDEN=1 cargo test -p predastore-operator` to accept the new output"
        );
    }
}
