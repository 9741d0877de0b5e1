//! The README's command-line session runs as written.

#[test]
fn readme_example_session_runs() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let after = readme.split("<!-- readme-example -->").nth(1).expect("README has a marked example");
    let block = after.split("```sh\n").nth(1).unwrap().split("```").next().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "set -euo pipefail\nconsentry() {{ \"{}\" \"$@\"; }}\n{block}",
        env!("CARGO_BIN_EXE_consentry")
    );
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env_remove("CONSENTRY_DATA_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("j•••@e•••.com"), "{stdout}");
    assert!(stdout.contains("\"Jane\""), "{stdout}");
    assert!(stdout.contains("ok: workspace"), "{stdout}");
    assert!(stdout.contains("marjolein@example.com\tactive\tmarketer\tlst_"), "{stdout}");
    assert!(std::fs::read_to_string(dir.path().join("viewer.key")).unwrap().starts_with("csk_"));
}
