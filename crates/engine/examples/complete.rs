//! Embedding the engine: load a model, stream a completion, then look at the
//! logits of a session directly.
//!
//! ```text
//! cargo run --release -p engine --example complete -- MODEL.gguf "The capital of France is"
//! ```

use engine::{Engine, EngineOptions, SamplingOptions};
use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(model), Some(prompt)) = (args.next(), args.next()) else {
        eprintln!("usage: complete MODEL.gguf PROMPT");
        std::process::exit(2);
    };
    let engine = Engine::load(
        &model,
        EngineOptions {
            n_ctx: Some(1024),
            ..Default::default()
        },
    )?;

    // Streaming generation with per-call sampling options.
    let ids = engine.tokenize(&prompt, true, false)?;
    let opts = SamplingOptions {
        temperature: 0.7,
        seed: 1234,
        max_tokens: 48,
        ..Default::default()
    };
    print!("{prompt}");
    let mut generation = engine.generate(&ids, opts)?;
    for token in generation.by_ref() {
        print!("{}", token?.text_piece);
        std::io::stdout().flush()?;
    }
    let t = generation.timings();
    println!(
        "\n[{:?}; prompt {:.1} tok/s, generation {:.1} tok/s]",
        generation.finish_reason(),
        t.prompt_tokens_per_s(),
        t.gen_tokens_per_s()
    );

    // Logits access: the five most likely next tokens after the prompt.
    let mut session = engine.session()?;
    let logits = session.eval(&ids)?;
    let mut ranked: Vec<(usize, f32)> = logits.iter().copied().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (id, logit) in ranked.into_iter().take(5) {
        println!(
            "{id:>6} {logit:>8.3} {:?}",
            engine.detokenize(&[id as u32])?
        );
    }
    Ok(())
}
