//! `rocmforge tokenize -m MODEL TEXT`: print the token ids of TEXT as a JSON
//! array, as llama.cpp's `llama-tokenize --ids` does by default (BOS when the
//! model's metadata asks for it, special-token text parsed).

use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

/// Arguments of `rocmforge tokenize`.
#[derive(Args)]
pub struct TokenizeArgs {
    /// GGUF model whose tokenizer to use.
    #[arg(short, long)]
    model: PathBuf,
    /// Text to tokenize (taken literally: no escape processing).
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    text: Option<String>,
    /// Read the text from this file instead.
    #[arg(short, long)]
    file: Option<PathBuf>,
    /// Do not add BOS/EOS even when the model's metadata asks for them.
    #[arg(long)]
    no_bos: bool,
    /// Tokenize special-token text (such as `<|im_end|>`) as plain text.
    #[arg(long)]
    no_parse_special: bool,
}

/// Run `rocmforge tokenize`.
pub fn run(args: TokenizeArgs) -> Result<()> {
    let text = match (&args.text, &args.file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        }
        (None, None) => anyhow::bail!("give TEXT or --file"),
    };
    let gguf = gguf_format::Gguf::open(&args.model)?;
    let tok = tokenizer::Tokenizer::from_gguf(&gguf)
        .with_context(|| format!("building the tokenizer of {}", args.model.display()))?;
    let ids = tok.encode(&text, !args.no_bos, !args.no_parse_special)?;
    let list: Vec<String> = ids.iter().map(u32::to_string).collect();
    println!("[{}]", list.join(", "));
    Ok(())
}
