//! Records the git commit the crate is built from (when built from a git
//! checkout) as `DYADSIM_GIT_COMMIT`, for the provenance of every result.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let git = std::path::Path::new(&dir).join(".git");
    if git.exists() {
        println!("cargo:rerun-if-changed={}", git.join("HEAD").display());
        println!("cargo:rerun-if-changed={}", git.join("refs").display());
    }
    let commit = std::process::Command::new("git")
        .args(["-C", &dir, "rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    if let Some(c) = commit {
        println!("cargo:rustc-env=DYADSIM_GIT_COMMIT={c}");
    }
}
