//! Writing a model tensor by tensor, so that even the 8b preset never has
//! more than a few hundred MB in memory.
//!
//! The header (metadata and tensor infos) comes from [`GgufWriter`]: it is
//! given zero-filled stand-ins of the right sizes (one lazily zeroed buffer,
//! never touched) and its output is cut after the header; the tensor data is
//! then generated, quantized and appended here with the same alignment rule.

use crate::error::SynthError;
use crate::metadata::{model_metadata, TokenizerMetadata};
use crate::plan::{tensor_plan, TensorPlan};
use crate::rng::{fill_normal, tensor_key};
use crate::spec::SynthSpec;
use gguf_format::{GgufWriter, DEFAULT_ALIGNMENT};
use rayon::prelude::*;
use std::io::Write;
use std::path::Path;

/// Elements generated and quantized per work item.
const CHUNK_ELEMENTS: usize = 1 << 18;
/// Work items processed (in parallel) before their bytes are written.
const CHUNKS_PER_BATCH: usize = 64;

fn padded(n: u64) -> u64 {
    n.div_ceil(DEFAULT_ALIGNMENT) * DEFAULT_ALIGNMENT
}

/// A sink that keeps the first `cap` bytes and counts the rest.
struct PrefixSink {
    kept: Vec<u8>,
    cap: usize,
    total: u64,
}

impl Write for PrefixSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = self.cap.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&buf[..room.min(buf.len())]);
        self.total += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The header of the file, padded to the data alignment, plus the plan.
fn header(
    spec: &SynthSpec,
    tokenizer: &TokenizerMetadata,
) -> Result<(Vec<u8>, Vec<TensorPlan>), SynthError> {
    let plan = tensor_plan(spec);
    let largest = plan.iter().map(|t| t.n_bytes()).max().unwrap_or(0) as usize;
    // Zero-initialised allocations of this size are mapped lazily by the OS;
    // the sink below never reads them.
    let zeros = vec![0u8; largest];
    let mut w = GgufWriter::new();
    for (k, v) in model_metadata(spec, tokenizer) {
        w.add_metadata(k, v);
    }
    for t in &plan {
        w.add_tensor(
            t.name.clone(),
            t.ggml_type,
            t.shape.clone(),
            &zeros[..t.n_bytes() as usize],
        )?;
    }
    let data: u64 = plan.iter().map(|t| padded(t.n_bytes())).sum();
    let mut sink = PrefixSink {
        kept: Vec::new(),
        cap: 64 << 20,
        total: 0,
    };
    w.write_to(&mut sink)?;
    let header_len = (sink.total - data) as usize;
    if header_len > sink.kept.len() {
        return Err(SynthError::Tokenizer(format!(
            "metadata of {header_len} bytes is larger than any tokenizer should be"
        )));
    }
    sink.kept.truncate(header_len);
    Ok((sink.kept, plan))
}

/// The size in bytes of the file [`write_model`] would write, computed
/// without generating any weights.
pub fn planned_file_size(
    spec: &SynthSpec,
    tokenizer: &TokenizerMetadata,
) -> Result<u64, SynthError> {
    let (head, plan) = header(spec, tokenizer)?;
    Ok(head.len() as u64 + plan.iter().map(|t| padded(t.n_bytes())).sum::<u64>())
}

/// Generates and encodes elements `first..first + n` of tensor `t`.
fn encode_chunk(t: &TensorPlan, key: u64, first: u64, n: usize) -> Result<Vec<u8>, SynthError> {
    let mut values = vec![0f32; n];
    fill_normal(key, first, t.init.mean, t.init.std, &mut values);
    let bytes = n / t.ggml_type.block_size() * t.ggml_type.type_size();
    let mut out = vec![0u8; bytes];
    quant::quantize(t.ggml_type, &values, &mut out).map_err(|source| SynthError::Quant {
        tensor: t.name.clone(),
        source,
    })?;
    Ok(out)
}

/// Writes the data of one tensor (without padding) to `w`.
fn write_tensor(
    spec: &SynthSpec,
    t: &TensorPlan,
    w: &mut impl Write,
    io: &impl Fn(std::io::Error) -> SynthError,
) -> Result<(), SynthError> {
    let key = tensor_key(spec.seed, &t.name);
    let row = t.shape[0] as usize;
    let total = t.n_elements() as usize;
    // Chunks hold whole rows (so whole blocks) of about CHUNK_ELEMENTS.
    let chunk = (CHUNK_ELEMENTS / row).max(1) * row;
    let starts: Vec<usize> = (0..total).step_by(chunk).collect();
    for batch in starts.chunks(CHUNKS_PER_BATCH) {
        let encoded: Vec<Result<Vec<u8>, SynthError>> = batch
            .par_iter()
            .map(|&s| encode_chunk(t, key, s as u64, chunk.min(total - s)))
            .collect();
        for bytes in encoded {
            w.write_all(&bytes?).map_err(io)?;
        }
    }
    Ok(())
}

/// Writes the model `spec` to `out` (created or truncated) and returns its
/// size. Tensors are generated, quantized and written one at a time, in
/// parallel chunks; the result depends only on `spec` and the tokenizer.
pub fn write_model(
    spec: &SynthSpec,
    tokenizer: &TokenizerMetadata,
    out: &Path,
) -> Result<u64, SynthError> {
    let io = |source| SynthError::Io {
        path: out.to_path_buf(),
        source,
    };
    let (head, plan) = header(spec, tokenizer)?;
    let file = std::fs::File::create(out).map_err(io)?;
    let mut w = std::io::BufWriter::with_capacity(8 << 20, file);
    w.write_all(&head).map_err(io)?;
    let mut total = head.len() as u64;
    for t in &plan {
        write_tensor(spec, t, &mut w, &io)?;
        let pad = padded(t.n_bytes()) - t.n_bytes();
        w.write_all(&vec![0u8; pad as usize]).map_err(io)?;
        total += padded(t.n_bytes());
    }
    w.flush().map_err(io)?;
    Ok(total)
}
