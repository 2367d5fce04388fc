//! `cargo xtask bench`: our numbers next to llama.cpp's, measured in the same
//! run on the same machine, with the ratio.
//!
//! - default (`--cpu`): pp128/tg64 at 1 and 2 threads for the SmolLM2 fixture
//!   and its Q4_0, Q4_K_M, Q6_K, Q8_0 requantizations, `rocmforge bench` vs
//!   `llama-bench`.
//! - `--server`: aggregate generated tokens/s with 1, 4 and 8 concurrent
//!   clients, `rocmforge serve` vs `llama-server -np 8 -cb`.
//!
//! llama.cpp's tools are looked up in `$LLAMACPP_BIN`, default
//! `~/.cache/llamacpp-ref/bin` (built by `shared/tools/build-llamacpp.sh`).

use crate::fixtures::fixture_dir;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

mod http_load;

/// Entry point of `cargo xtask bench`.
pub fn run(args: &[String]) -> Result<()> {
    let has = |f: &str| args.iter().any(|a| a == f);
    let quick = has("--quick");
    if has("--server") {
        return server(quick);
    }
    cpu(quick)
}

pub(crate) fn llamacpp_bin(tool: &str) -> Result<PathBuf> {
    let dir = match std::env::var_os("LLAMACPP_BIN") {
        Some(d) => PathBuf::from(d),
        None => {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/llamacpp-ref/bin")
        }
    };
    let p = dir.join(tool);
    if !p.exists() {
        bail!(
            "{} not found: build llama.cpp's tools with `shared/tools/build-llamacpp.sh` (or set LLAMACPP_BIN)",
            p.display()
        );
    }
    Ok(p)
}

/// Build the release binary once and return its path.
pub(crate) fn rocmforge_bin() -> Result<PathBuf> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--quiet", "--bin", "rocmforge"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --release failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    Ok(target.join("release/rocmforge"))
}

const FIXTURE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const REQUANTS: [&str; 4] = ["Q4_0", "Q4_K_M", "Q6_K", "Q8_0"];

/// The fixture plus its requantizations (made with llama-quantize when missing).
fn bench_models() -> Result<Vec<(String, PathBuf)>> {
    let dir = fixture_dir();
    let base = dir.join(FIXTURE);
    if !base.exists() {
        bail!("{} is missing: run `cargo xtask fixtures`", base.display());
    }
    let mut models = vec![("Q4_1".to_string(), base.clone())];
    for t in REQUANTS {
        let out = dir.join(format!("SmolLM2-135M-Instruct.{t}.gguf"));
        if !out.exists() {
            let q = llamacpp_bin("llama-quantize")?;
            let st = Command::new(q)
                .arg("--allow-requantize")
                .arg(&base)
                .arg(&out)
                .arg(t)
                .output()
                .context("running llama-quantize")?;
            if !st.status.success() {
                bail!(
                    "llama-quantize {t} failed: {}",
                    String::from_utf8_lossy(&st.stderr)
                );
            }
        }
        models.push((t.to_string(), out));
    }
    Ok(models)
}

/// Whether llama.cpp's CPU weight repacking must be turned off on this
/// machine: some VMs report AMX in CPUID without enabling it, and the
/// repacked AMX kernels then die of SIGILL. Probed once with a short
/// llama-bench prompt run; the answer is printed.
fn repack_off(model: &Path) -> Result<bool> {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if let Some(&off) = OFF.get() {
        return Ok(off);
    }
    let status = Command::new(llamacpp_bin("llama-bench")?)
        .arg("-m")
        .arg(model)
        .args(["-p", "32", "-n", "0", "-r", "1", "-t", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .context("running llama-bench")?;
    let off = !status.success();
    if off {
        eprintln!(
            "note: llama-bench with its default weight repacking failed on this machine ({status}); \
             llama.cpp runs with --repack 0 (llama-server: LLAMA_ARG_REPACK=false)"
        );
    }
    Ok(*OFF.get_or_init(|| off))
}

/// llama-bench's JSON rows for `model` with `args` (`-o json`, threads and
/// repetitions added here); `Ok(None)` when it exits unsuccessfully.
fn llama_bench_rows(
    model: &Path,
    args: &[&str],
    threads: usize,
    reps: usize,
) -> Result<Option<serde_json::Value>> {
    let out = Command::new(llamacpp_bin("llama-bench")?)
        .arg("-m")
        .arg(model)
        .args(args)
        .args([
            "-o",
            "json",
            "-t",
            &threads.to_string(),
            "-r",
            &reps.to_string(),
        ])
        .output()
        .context("running llama-bench")?;
    if !out.status.success() {
        eprintln!(
            "llama-bench {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return Ok(None);
    }
    Ok(Some(
        serde_json::from_slice(&out.stdout).context("parsing llama-bench JSON")?,
    ))
}

/// (pp t/s, tg t/s) from llama-bench's JSON output.
fn llama_bench(model: &Path, threads: usize, reps: usize) -> Result<(f64, f64)> {
    let mut args = vec!["-p", "128", "-n", "64"];
    if repack_off(model)? {
        args.extend(["--repack", "0"]);
    }
    let Some(v) = llama_bench_rows(model, &args, threads, reps)? else {
        bail!("llama-bench failed");
    };
    let mut pp = 0.0;
    let mut tg = 0.0;
    for row in v.as_array().context("llama-bench JSON is not a list")? {
        let ts = row["avg_ts"].as_f64().unwrap_or(0.0);
        if row["n_prompt"].as_u64() == Some(128) && row["n_gen"].as_u64() == Some(0) {
            pp = ts;
        } else if row["n_gen"].as_u64() == Some(64) {
            tg = ts;
        }
    }
    Ok((pp, tg))
}

/// llama.cpp's tg64 with its default weight repacking, where
/// [`repack_off`] turned repacking off for the main columns: one-token
/// decode with repacked weights does run on such machines (only prompt
/// batches hit the missing instructions), so the decode rows can also be
/// compared with llama.cpp's fastest decode. `None` where repacking is on
/// anyway, or where this run fails too.
fn llama_tg_repacked(model: &Path, threads: usize, reps: usize) -> Result<Option<f64>> {
    if !repack_off(model)? {
        return Ok(None);
    }
    let Some(v) = llama_bench_rows(model, &["-p", "0", "-n", "64"], threads, reps)? else {
        return Ok(None);
    };
    Ok(v.as_array()
        .and_then(|rows| rows.iter().find(|r| r["n_gen"].as_u64() == Some(64)))
        .and_then(|r| r["avg_ts"].as_f64()))
}

/// Our numbers from `rocmforge bench --json`.
fn ours(bin: &Path, model: &Path, threads: usize, reps: usize) -> Result<(f64, f64, f64)> {
    let out = Command::new(bin)
        .arg("bench")
        .arg("-m")
        .arg(model)
        .args(["-p", "128", "-n", "64", "--json"])
        .args(["-t", &threads.to_string(), "-r", &reps.to_string()])
        .output()
        .context("running rocmforge bench")?;
    if !out.status.success() {
        bail!(
            "rocmforge bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing rocmforge bench JSON")?;
    let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
    let rss_headroom = f("peak_rss_bytes") - f("model_bytes") - f("kv_cache_bytes");
    Ok((
        f("pp_tokens_per_s"),
        f("tg_tokens_per_s"),
        rss_headroom / 1e6,
    ))
}

fn cpu(quick: bool) -> Result<()> {
    let bin = rocmforge_bin()?;
    let reps = if quick { 1 } else { 3 };
    let models = bench_models()?;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    println!(
        "CPU: {cpu}; pp128 / tg64 tokens/s, {reps} repetition(s); ratio = rocmforge / llama.cpp\n"
    );
    println!("| model | threads | pp128 ours | pp128 llama.cpp | ratio | tg64 ours | tg64 llama.cpp | ratio | RSS over model+KV (MB) | tg64 llama.cpp repacked | ratio |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, path) in &models {
        for threads in [1, 2] {
            let (opp, otg, rss) = ours(&bin, path, threads, reps)?;
            let (lpp, ltg) = llama_bench(path, threads, reps)?;
            let repacked = match llama_tg_repacked(path, threads, reps)? {
                Some(r) => format!("{r:.1} | {:.2}", otg / r),
                None => "— | —".into(),
            };
            println!(
                "| {name} | {threads} | {opp:.1} | {lpp:.1} | {:.2} | {otg:.1} | {ltg:.1} | {:.2} | {rss:.0} | {repacked} |",
                opp / lpp,
                otg / ltg
            );
        }
    }
    if models
        .first()
        .is_some_and(|(_, p)| repack_off(p).unwrap_or(false))
    {
        println!(
            "\n(last two columns: llama.cpp's decode alone, `-p 0 -n 64`, with its default weight repacking, which runs here for one-token decode only)"
        );
    }
    Ok(())
}

fn server(quick: bool) -> Result<()> {
    let bin = rocmforge_bin()?;
    let model = fixture_dir().join(FIXTURE);
    if !model.exists() {
        bail!("{} is missing: run `cargo xtask fixtures`", model.display());
    }
    let max_tokens = if quick { 32 } else { 64 };
    println!(
        "aggregate generated tokens/s, {max_tokens} tokens per request, 2 threads, --parallel 8, best of {} rounds\n",
        http_load::ROUNDS
    );
    println!("| clients | rocmforge | llama-server | ratio | rocmforge scaling vs 1 client |");
    println!("|---:|---:|---:|---:|---:|");
    let ours = http_load::with_server(
        Command::new(&bin).arg("serve").arg("-m").arg(&model).args([
            "--parallel",
            "8",
            "-t",
            "2",
            "--ctx-size",
            "4096",
        ]),
        max_tokens,
    )?;
    let mut llama_server = Command::new(llamacpp_bin("llama-server")?);
    llama_server
        .arg("-m")
        .arg(&model)
        .args(["-np", "8", "-cb", "-t", "2", "-c", "4096"]);
    if repack_off(&model)? {
        llama_server.env("LLAMA_ARG_REPACK", "false");
    }
    let theirs = http_load::with_server(&mut llama_server, max_tokens)?;
    for ((c, o), (_, t)) in ours.iter().zip(&theirs) {
        println!(
            "| {c} | {o:.1} | {t:.1} | {:.2} | {:.2}x |",
            o / t,
            o / ours[0].1
        );
    }
    Ok(())
}
