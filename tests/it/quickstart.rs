//! The README's first command, run the way a newcomer runs it (the binary `cargo run` builds,
//! with the same arguments), must do the operator's real job and succeed.

use std::process::Command;

fn operator() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mediajob-dev"))
}

#[test]
fn the_quick_start_succeeds() {
    let data = tempfile::tempdir().unwrap();
    let output = operator()
        .args(["local", "-f", "examples/quickstart.yaml", "--data-dir"])
        .arg(data.path())
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        output.status
    );
    for expected in [
        "Submitted",
        "Running",
        "Succeeded after 1 attempt(s)",
        "URLs expire",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing from:\n{stdout}"
        );
    }
    let written = data.path().join("studio-out/ep42-enhanced.wav");
    assert!(
        std::fs::metadata(&written).is_ok_and(|m| m.len() > 44),
        "no output at {}",
        written.display()
    );
    // The run never prints credentials or signed URLs.
    assert!(!stdout.contains("X-Amz-Signature") && !stderr.contains("X-Amz-Signature"));
}

#[test]
fn a_bad_manifest_gets_the_clusters_error_without_a_stack_trace() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: mediajob.io/v1alpha1\nkind: MediaJob\nmetadata: {name: bad}\n\
         spec: {operation: enhance, input: {url: s3://raw/a.wav}, output: {url: s3://out/a.wav},\n\
         credentials: {secretRef: {name: s}}, urls: {ttl: 200h}}\n",
    )
    .unwrap();
    let output = operator()
        .args(["local", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("ttl must be at most 7 days"), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
}
