//! `rocmforge serve` on the SmolLM2 fixture, checked with the official
//! `openai` Python client (tests/openai_client_checks.py), then stopped with
//! SIGTERM, which must end it cleanly (exit code 0).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use test_fixtures::{fixture, SMOLLM2};

fn python_has_openai() -> bool {
    Command::new("python3")
        .args(["-c", "import openai"])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn openai_client_against_rocmforge_serve() {
    assert!(
        python_has_openai(),
        "the `openai` Python package is required: pip install openai"
    );
    let bin = env!("CARGO_BIN_EXE_rocmforge");
    let model = fixture(SMOLLM2);
    let prompt = "The capital of France is";
    let max_tokens = 24;

    let gen = Command::new(bin)
        .arg("generate")
        .arg("-m")
        .arg(&model)
        .args([
            "-p",
            prompt,
            "-n",
            &max_tokens.to_string(),
            "--temp",
            "0",
            "-t",
            "2",
            "--json",
        ])
        .output()
        .expect("running rocmforge generate");
    assert!(
        gen.status.success(),
        "{}",
        String::from_utf8_lossy(&gen.stderr)
    );
    let g: serde_json::Value = serde_json::from_slice(&gen.stdout).expect("generate --json output");
    let expected =
        std::env::temp_dir().join(format!("rocmforge-expected-{}.json", std::process::id()));
    std::fs::write(
        &expected,
        serde_json::json!({"prompt": prompt, "max_tokens": max_tokens, "text": g["text"]})
            .to_string(),
    )
    .unwrap();

    let mut server = Command::new(bin)
        .arg("serve")
        .arg("-m")
        .arg(&model)
        .args([
            "--port",
            "0",
            "-t",
            "2",
            "--parallel",
            "8",
            "-c",
            "1024",
            "--device",
            "cpu",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting rocmforge serve");
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in the server's first line: {line:?}"))
        .to_string();

    let checks = Command::new("python3")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client_checks.py"))
        .arg(&url)
        .arg(&expected)
        .status()
        .expect("running the openai client checks");

    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let exit = server.wait().unwrap();
    let _ = std::fs::remove_file(&expected);
    assert!(
        checks.success(),
        "openai client checks failed (see output above)"
    );
    assert!(
        exit.success(),
        "the server did not exit cleanly on SIGTERM: {exit}"
    );
}
