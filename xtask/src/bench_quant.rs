//! `cargo xtask bench --quant`: single-thread `vec_dot` throughput of
//! `quant::dot` against ggml's on the same machine, in one run.
//!
//! 1. Runs the criterion benchmark `benches/quant_dot.rs` (4096-element rows).
//! 2. Runs llama.cpp's `test-quantize-perf --op vec_dot_q --size 4096` per type.
//! 3. Prints `type | ours GB/s | ggml GB/s | ratio`.
//!
//! GB/s is weight bytes read per second, in GiB/s (2^30 bytes), exactly as
//! test-quantize-perf reports its "quantized throughput": the quantized row
//! size times the iterations, divided by the total time. Ours divides the row
//! size by criterion's mean time per call. test-quantize-perf also prints
//! `avg cycles/32 vals` (TSC cycles, without the two clock reads it puts
//! around each call), shown as a second ggml column converted with the TSC
//! frequency so the reader can see the timing overhead it includes.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The benchmark set of issue 3, as ggml spells the type names.
const TYPES: &[(&str, &str)] = &[
    ("Q4_0", "q4_0"),
    ("Q4_1", "q4_1"),
    ("Q8_0", "q8_0"),
    ("Q4_K", "q4_K"),
    ("Q5_K", "q5_K"),
    ("Q6_K", "q6_K"),
    ("IQ4_XS", "iq4_xs"),
    ("MXFP4", "mxfp4"),
];

const BUILD_SCRIPT: &str = "/work/shared/tools/build-llamacpp.sh";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The test-quantize-perf binary: $LLAMACPP_BIN/test-quantize-perf or ~/.cache/llamacpp-ref/bin.
fn ggml_tool() -> Result<PathBuf> {
    let dir = std::env::var_os("LLAMACPP_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/root"));
            home.join(".cache/llamacpp-ref/bin")
        });
    let tool = dir.join("test-quantize-perf");
    if !tool.is_file() {
        bail!(
            "{} not found: build llama.cpp's reference tools with `{BUILD_SCRIPT}` \
             (10-20 minutes), or point LLAMACPP_BIN at a directory that has test-quantize-perf",
            tool.display()
        );
    }
    Ok(tool)
}

/// TSC frequency in Hz, from /proc/cpuinfo's `cpu MHz` (x86 with a constant TSC).
fn tsc_hz() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("cpu MHz"))?;
    let mhz: f64 = line.split(':').nth(1)?.trim().parse().ok()?;
    Some(mhz * 1e6)
}

/// The CPU model for the report header.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Bytes of a 4096-element row of the type (ggml's row size).
fn row_bytes(name: &str) -> f64 {
    let (block, size) = match name {
        "Q4_0" => (32, 18),
        "Q4_1" => (32, 20),
        "Q8_0" => (32, 34),
        "Q4_K" => (256, 144),
        "Q5_K" => (256, 176),
        "Q6_K" => (256, 210),
        "IQ4_XS" => (256, 136),
        "MXFP4" => (32, 17),
        _ => (1, 4),
    };
    (4096 / block * size) as f64
}

/// The first number after `key` in `text`.
fn number_after(text: &str, key: &str) -> Option<f64> {
    let rest = &text[text.find(key)? + key.len()..];
    let start = rest.find(|c: char| c.is_ascii_digit() || c == '-' || c == '.')?;
    let rest = &rest[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || "-.eE+".contains(c)))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Our mean seconds per call, from criterion's estimates.json.
fn ours_seconds(name: &str) -> Result<f64> {
    let path = target_dir()
        .join("criterion/quant_vec_dot")
        .join(name)
        .join("new/estimates.json");
    let json =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mean = &json[json.find("\"mean\"").context("no mean in estimates.json")?..];
    let ns = number_after(mean, "\"point_estimate\":").context("no point_estimate")?;
    Ok(ns * 1e-9)
}

/// ggml's (quantized throughput GiB/s, avg TSC cycles per 32 values).
fn ggml_numbers(tool: &Path, ggml_name: &str, iterations: u32) -> Result<(f64, f64)> {
    let out = Command::new(tool)
        .args([
            "--op",
            "vec_dot_q",
            "--size",
            "4096",
            "-i",
            &iterations.to_string(),
            "--type",
            ggml_name,
        ])
        .output()
        .with_context(|| format!("running {}", tool.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let gbs = number_after(&text, "quantized throughput :")
        .with_context(|| format!("no throughput for {ggml_name} in:\n{text}"))?;
    let cycles = number_after(&text, "avg cycles/32 vals   :").unwrap_or(f64::NAN);
    Ok((gbs, cycles))
}

/// Entry point: `args` are the words after `bench` (`--quant`, optionally `--quick`).
pub fn run(args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let tool = ggml_tool()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut bench = Command::new(cargo);
    bench.current_dir(workspace_root()).args([
        "bench",
        "-p",
        "rocmforge",
        "--bench",
        "quant_dot",
        "--",
        "quant_vec_dot/",
    ]);
    if quick {
        bench.arg("--quick");
    }
    let status = bench.status().context("running cargo bench")?;
    if !status.success() {
        bail!("cargo bench --bench quant_dot failed");
    }
    let iterations = if quick { 20_000 } else { 200_000 };
    let hz = tsc_hz();
    println!(
        "\nvec_dot, one thread, 4096-element rows, {} (GB/s = GiB of weight bytes per second)",
        cpu_model()
    );
    println!("| type   | ours GB/s | ggml GB/s | ratio | ggml GB/s from avg TSC cycles | ratio vs that |");
    println!("|--------|----------:|----------:|------:|------------------------------:|--------------:|");
    for (ours_name, ggml_name) in TYPES {
        let bytes = row_bytes(ours_name);
        let ours = ours_seconds(ours_name).map(|s| bytes / s / (1u64 << 30) as f64);
        let ggml = ggml_numbers(&tool, ggml_name, iterations);
        match (ours, ggml) {
            (Ok(o), Ok((g, cyc))) => {
                let g_cyc = hz
                    .map(|hz| bytes / (cyc * 4096.0 / 32.0 / hz) / (1u64 << 30) as f64)
                    .unwrap_or(f64::NAN);
                println!(
                    "| {ours_name:<6} | {o:>9.2} | {g:>9.2} | {:>5.2} | {g_cyc:>29.2} | {:>13.2} |",
                    o / g,
                    o / g_cyc
                );
            }
            (o, g) => println!("| {ours_name:<6} | {o:?} | {g:?} |"),
        }
    }
    Ok(())
}
