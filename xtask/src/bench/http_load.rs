//! A minimal HTTP load generator for the server benchmark: N concurrent
//! clients each POST one `/v1/completions` request (std only, HTTP/1.1).

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PROMPT: &str = "Write a short story about a robot who learns to paint.";

/// Rounds of the 1, 4 and 8 client runs; each client count reports its best
/// round (the figure least disturbed by other work on a shared machine).
pub const ROUNDS: usize = 3;

/// Start a server with `cmd` (plus `--host 127.0.0.1 --port P`), wait until
/// `/health` answers, run 1, 4 and 8 concurrent clients [`ROUNDS`] times
/// (interleaved: 1, 4, 8, 1, 4, 8, …), stop it; returns `(clients, best
/// aggregate generated tokens/s)` rows. Every round's figure goes to stderr.
pub fn with_server(cmd: &mut Command, max_tokens: usize) -> Result<Vec<(usize, f64)>> {
    let port = free_port()?;
    let mut child = cmd
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the server")?;
    let result = (|| {
        wait_healthy(port, &mut child)?;
        // Warm-up.
        complete(port, max_tokens.min(8))?;
        let mut rows: Vec<(usize, f64)> = [1usize, 4, 8].iter().map(|&c| (c, 0.0)).collect();
        for round in 1..=ROUNDS {
            for (clients, best) in &mut rows {
                let clients = *clients;
                let start = Instant::now();
                let handles: Vec<_> = (0..clients)
                    .map(|_| std::thread::spawn(move || complete(port, max_tokens)))
                    .collect();
                let mut tokens = 0usize;
                for h in handles {
                    tokens += h
                        .join()
                        .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
                }
                let rate = tokens as f64 / start.elapsed().as_secs_f64();
                eprintln!("  round {round}/{ROUNDS}: {clients} clients, {rate:.1} tokens/s");
                *best = best.max(rate);
            }
        }
        Ok(rows)
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_healthy(port: u16, child: &mut Child) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Some(st) = child.try_wait()? {
            bail!("the server exited early ({st})");
        }
        if let Ok((200, _)) = request(port, "GET", "/health", "") {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("the server did not become healthy within 120 s")
}

/// One completion with `ignore_eos`, returning the generated token count.
fn complete(port: u16, max_tokens: usize) -> Result<usize> {
    let body = serde_json::json!({
        "prompt": PROMPT, "max_tokens": max_tokens, "n_predict": max_tokens,
        // Reuse of a finished slot's cached prompt: llama-server's default,
        // opt-in for rocmforge (see `cache_prompt` in docs/server.md).
        "cache_prompt": true,
        "temperature": 0, "ignore_eos": true, "stream": false,
    })
    .to_string();
    let (status, text) = request(port, "POST", "/v1/completions", &body)?;
    if status != 200 {
        bail!("completion failed with HTTP {status}: {text}");
    }
    let v: serde_json::Value = serde_json::from_str(&text).context("parsing the completion")?;
    Ok(v["usage"]["completion_tokens"].as_u64().unwrap_or(0) as usize)
}

fn request(port: u16, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(600)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("malformed HTTP response")?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let body = if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
