//! `rocmforge inspect MODEL`: a summary of a GGUF file, the whole file as
//! JSON (`--json`), or one tensor dequantized to f32 (`--dump NAME --out PATH`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use gguf_format::{Gguf, MappedGguf, Value};
use serde_json::{json, Map, Number};

/// Arguments of `rocmforge inspect`.
#[derive(clap::Args)]
pub struct InspectArgs {
    /// The GGUF file.
    model: PathBuf,
    /// Print the whole file (metadata with arrays in full, tensor table) as one JSON object.
    #[arg(long, conflicts_with = "dump")]
    json: bool,
    /// Write this tensor, dequantized to little-endian f32 (ne0 fastest), to --out.
    #[arg(long, value_name = "NAME", requires = "out")]
    dump: Option<String>,
    /// Output file for --dump.
    #[arg(long, value_name = "PATH", requires = "dump")]
    out: Option<PathBuf>,
}

/// Runs `rocmforge inspect`.
pub fn run(args: InspectArgs) -> Result<()> {
    let file = Gguf::open(&args.model).map_err(|e| match e {
        // The I/O error already names the file.
        e @ gguf_format::GgufError::Io { .. } => anyhow::Error::new(e),
        e => anyhow::Error::new(e).context(format!("{}", args.model.display())),
    })?;
    if let (Some(name), Some(out)) = (&args.dump, &args.out) {
        return dump(&file, name, out);
    }
    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    if args.json {
        serde_json::to_writer(&mut w, &to_json(&file))?;
        writeln!(w)?;
    } else {
        summary(&mut w, &args.model, &file)?;
    }
    Ok(())
}

/// A metadata value as JSON; non-finite floats become "NaN", "inf", "-inf".
fn value_json(v: &Value<'_>) -> serde_json::Value {
    let float = |x: f64| match Number::from_f64(x) {
        Some(n) => serde_json::Value::Number(n),
        None if x.is_nan() => json!("NaN"),
        None if x > 0.0 => json!("inf"),
        None => json!("-inf"),
    };
    match *v {
        Value::F32(x) => float(x.into()),
        Value::F64(x) => float(x),
        Value::Bool(b) => json!(b),
        Value::String(s) => json!(s),
        Value::Array(a) => serde_json::Value::Array(a.iter().map(|x| value_json(&x)).collect()),
        Value::I8(_) | Value::I16(_) | Value::I32(_) | Value::I64(_) => {
            json!(v.as_i64().unwrap_or_default())
        }
        _ => json!(v.as_u64().unwrap_or_default()),
    }
}

/// The whole file: `{"version", "alignment", "metadata", "tensors"}`.
pub fn to_json(file: &MappedGguf) -> serde_json::Value {
    let metadata: Map<String, serde_json::Value> = file
        .metadata()
        .map(|(k, v)| (k.to_string(), value_json(&v)))
        .collect();
    let tensors: Vec<serde_json::Value> = file
        .tensors()
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "type": t.ggml_type.name(),
                "shape": t.shape,
                "offset": t.offset,
            })
        })
        .collect();
    json!({
        "version": file.version(),
        "alignment": file.alignment(),
        "metadata": metadata,
        "tensors": tensors,
    })
}

fn dump(file: &MappedGguf, name: &str, out: &PathBuf) -> Result<()> {
    let Some(t) = file.tensor(name) else {
        bail!("no tensor named {name:?} in this file");
    };
    let n = usize::try_from(t.n_elements()).context("tensor too large for this machine")?;
    let mut values = vec![0f32; n];
    quant::dequantize(t.ggml_type, file.tensor_data(t), &mut values)
        .with_context(|| format!("cannot dequantize tensor {name:?}"))?;
    let mut bytes = Vec::with_capacity(n * 4);
    for v in &values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(out, bytes).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

fn summary(w: &mut impl Write, path: &std::path::Path, f: &MappedGguf) -> Result<()> {
    let arch = f.architecture().unwrap_or("(unknown)");
    let name = f.get_str_opt("general.name").ok().flatten();
    let params: u64 = f.tensors().iter().map(|t| t.n_elements()).sum();
    let mut mix: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    for t in f.tensors() {
        let e = mix.entry(t.ggml_type.name()).or_default();
        e.0 += 1;
        e.1 += t.n_bytes();
    }
    let mut mix: Vec<_> = mix.into_iter().collect();
    mix.sort_by_key(|e| std::cmp::Reverse(e.1 .1));
    let mix: Vec<String> = mix
        .iter()
        .map(|(ty, (n, bytes))| format!("{ty} ×{n} ({})", human_bytes(*bytes)))
        .collect();

    writeln!(w, "file:           {}", path.display())?;
    writeln!(
        w,
        "format:         GGUF v{}, {} ({} bytes), alignment {}",
        f.version(),
        human_bytes(f.file_size()),
        f.file_size(),
        f.alignment()
    )?;
    match name {
        Some(n) => writeln!(w, "architecture:   {arch} ({n})")?,
        None => writeln!(w, "architecture:   {arch}")?,
    }
    writeln!(
        w,
        "parameters:     {} ({params}) in {} tensors",
        human_count(params),
        f.tensors().len()
    )?;
    writeln!(w, "tensor types:   {}", mix.join(", "))?;
    let hp = |s: &str| -> String {
        match f.arch_u32_opt(s) {
            Ok(Some(v)) => v.to_string(),
            _ => "-".into(),
        }
    };
    writeln!(w, "context length: {}", hp("context_length"))?;
    writeln!(
        w,
        "layers:         {}, embedding {}, heads {} (kv {})",
        hp("block_count"),
        hp("embedding_length"),
        hp("attention.head_count"),
        hp("attention.head_count_kv")
    )?;
    let tok = f
        .get_str_opt("tokenizer.ggml.model")
        .ok()
        .flatten()
        .unwrap_or("none");
    let mut tok_line = tok.to_string();
    if let Ok(Some(pre)) = f.get_str_opt("tokenizer.ggml.pre") {
        tok_line += &format!(" (pre-tokenizer {pre})");
    }
    if let Ok(Some(a)) = f.get_array_opt("tokenizer.ggml.tokens") {
        tok_line += &format!(", {} tokens", a.len());
    }
    if let Ok(Some(a)) = f.get_array_opt("tokenizer.ggml.merges") {
        tok_line += &format!(", {} merges", a.len());
    }
    writeln!(w, "tokenizer:      {tok_line}")?;
    match f.get_str_opt("tokenizer.chat_template") {
        Ok(Some(t)) => writeln!(w, "chat template:  present ({} bytes)", t.len())?,
        _ => writeln!(w, "chat template:  none")?,
    }
    Ok(())
}

fn human_bytes(n: u64) -> String {
    let n = n as f64;
    match n {
        n if n >= 1e9 => format!("{:.2} GB", n / 1e9),
        n if n >= 1e6 => format!("{:.1} MB", n / 1e6),
        n if n >= 1e3 => format!("{:.1} kB", n / 1e3),
        n => format!("{n} B"),
    }
}

fn human_count(n: u64) -> String {
    let x = n as f64;
    match x {
        x if x >= 1e9 => format!("{:.2} B", x / 1e9),
        x if x >= 1e6 => format!("{:.1} M", x / 1e6),
        x if x >= 1e3 => format!("{:.1} K", x / 1e3),
        _ => n.to_string(),
    }
}
