//! The README's walkthrough runs as written: its `sh` and `js` blocks between the
//! `<!-- walkthrough:start -->` and `<!-- walkthrough:end -->` markers run in one bash shell, in
//! a fresh directory (so a fresh SQLite database), against the binary this build made. Only the
//! port and the way the binary is started are substituted.

use crate::common::postgres_required;
use crate::process_harness::{free_port, BIN};
use std::process::Stdio;
use std::time::Duration;

const README: &str = include_str!("../../README.md");

/// The fenced blocks of `language` inside the walkthrough regions, in order.
fn walkthrough_blocks(language: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut rest = README;
    while let Some(start) = rest.find("<!-- walkthrough:start -->") {
        let region_and_after = &rest[start..];
        let end = region_and_after
            .find("<!-- walkthrough:end -->")
            .expect("every walkthrough:start has its walkthrough:end");
        let region = &region_and_after[..end];
        let fence = format!("```{language}\n");
        let mut inner = region;
        while let Some(open) = inner.find(&fence) {
            let body = &inner[open + fence.len()..];
            let close = body.find("\n```").expect("a closed fence");
            blocks.push(body[..close + 1].to_owned());
            inner = &body[close + 4..];
        }
        rest = &region_and_after[end..];
    }
    blocks
}

fn tool_available(tool: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough_runs_as_written() {
    let missing: Vec<&str> = ["bash", "curl", "jq", "node"]
        .into_iter()
        .filter(|tool| !tool_available(tool))
        .collect();
    if !missing.is_empty() {
        assert!(
            !postgres_required(),
            "the README walkthrough needs {missing:?} (CI installs them)"
        );
        eprintln!("SKIPPED: the README walkthrough needs {missing:?}");
        return;
    }
    let shell = walkthrough_blocks("sh");
    let scripts = walkthrough_blocks("js");
    assert!(shell.len() >= 3, "walkthrough shell blocks: {shell:?}");
    assert_eq!(scripts.len(), 1, "the JavaScript snippet");

    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let localize = |text: &str| {
        text.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
            .replace("cargo run --release -q --", BIN)
    };
    let snippet = dir.path().join("snippet.js");
    std::fs::write(&snippet, localize(&scripts[0])).expect("write the snippet");
    let mut script =
        String::from("set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n");
    for block in &shell {
        script.push_str(&localize(block));
        script.push('\n');
    }
    script.push_str(&format!("node {}\n", snippet.display()));

    // Its own process group: `heffl serve &` backgrounds a shell function, so the server is a
    // grandchild that `kill $(jobs -p)` misses; the whole group is stopped at the end instead.
    let child = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("HEFFL_BIND", format!("127.0.0.1:{port}"))
        // Not in the README: keeps the default metrics port free for other tests.
        .env("HEFFL_METRICS_BIND", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .expect("run bash");
    let _group = ProcessGroup(child.id().expect("the walkthrough's pid"));
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the walkthrough finished within two minutes")
        .expect("wait for bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the walkthrough failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- script\n{script}",
        output.status
    );
    for expected in [
        "\"owner@acme.test\"",
        "\"Mia Member\"",
        "\"Temporary\"",
        "\"revoked\"",
        "\"Website Forms\"",
        "Jane Smith",
        "pageNo",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected} not in the walkthrough's output:\n{stdout}\n--- stderr\n{stderr}"
        );
    }
}

/// Stops every process of a group when dropped, on success and on a failed assertion alike.
struct ProcessGroup(u32);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.0)])
            .stderr(Stdio::null())
            .status();
    }
}
