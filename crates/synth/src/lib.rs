//! `synth`: synthetic GGUF models with random weights, for tests and
//! benchmarks where no real model of the wanted size or architecture exists.
//!
//! A model is described by a [`SynthSpec`] (size [`Preset`], [`Arch`],
//! [`WeightType`], seed) and built with our own GGUF writer and quantizers:
//! the same spec always gives a byte-identical file, on every platform. The
//! tokenizer metadata (SmolLM2's, vocabulary 49152) is copied from a real
//! model, so prompts tokenize as they would for SmolLM2.
//!
//! ```no_run
//! use synth::{Arch, Preset, SynthSpec, WeightType};
//!
//! let fixture = gguf_format::Gguf::open("target/fixtures/SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let tokenizer = synth::tokenizer_metadata(&fixture)?;
//! let spec = SynthSpec::new(Preset::Tiny, Arch::Qwen3, WeightType::Q8_0);
//! let bytes = synth::write_model(&spec, &tokenizer, "tiny-qwen3.gguf".as_ref())?;
//! println!("wrote {bytes} bytes");
//! # Ok::<(), synth::SynthError>(())
//! ```
#![warn(missing_docs)]

mod error;
mod metadata;
pub mod plan;
pub mod rng;
mod spec;
mod write;

pub use error::SynthError;
pub use metadata::{
    model_metadata, tokenizer_metadata, tokenizer_metadata_from_file, TokenizerMetadata,
};
pub use plan::{tensor_plan, Hparams, Init, TensorPlan};
pub use spec::{Arch, Dims, Preset, SynthSpec, WeightType, VOCAB};
pub use write::{planned_file_size, write_model};
