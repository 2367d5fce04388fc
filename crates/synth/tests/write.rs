//! Files written by `synth` parse back with gguf-format, hold the planned
//! tensors with the planned values, and are deterministic.

use gguf_format::{Gguf, GgufWriter, MetadataValue};
use synth::{Arch, Preset, SynthSpec, WeightType};

/// A small stand-in for the SmolLM2 tokenizer (the real one is only needed
/// by llama.cpp and the engine; here the layout is what matters).
fn fake_tokenizer() -> synth::TokenizerMetadata {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", "llama");
    w.add_metadata(
        "tokenizer.ggml.tokens",
        MetadataValue::string_array((0..synth::VOCAB).map(|i| format!("t{i}"))),
    );
    w.add_metadata("tokenizer.ggml.model", "gpt2");
    let bytes = w.to_bytes().unwrap();
    let g = Gguf::from_bytes(bytes).unwrap();
    let md = synth::tokenizer_metadata(&g).unwrap();
    assert_eq!(md.len(), 2);
    md
}

#[test]
fn tiny_models_round_trip_and_are_deterministic() {
    let tok = fake_tokenizer();
    let dir = std::env::temp_dir().join(format!("synth-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (arch, wt) in [
        (Arch::Llama, WeightType::Q4KM),
        (Arch::Qwen2, WeightType::F16),
        (Arch::Gemma3, WeightType::Q4_0),
        (Arch::LlamaMoe, WeightType::Q8_0),
    ] {
        let spec = SynthSpec::new(Preset::Tiny, arch, wt);
        let path = dir.join(spec.file_name());
        let n = synth::write_model(&spec, &tok, &path).unwrap();
        assert_eq!(n, std::fs::metadata(&path).unwrap().len());
        assert_eq!(n, synth::planned_file_size(&spec, &tok).unwrap());
        let g = Gguf::open(&path).unwrap();
        assert_eq!(g.architecture().unwrap(), arch.gguf_name());
        let plan = synth::tensor_plan(&spec);
        assert_eq!(g.tensors().len(), plan.len());
        for (t, p) in g.tensors().iter().zip(&plan) {
            assert_eq!(
                (&t.name, t.ggml_type, &t.shape),
                (&p.name, p.ggml_type, &p.shape)
            );
        }
        // Norm weights are F32 and stored exactly as drawn.
        let norm = g.tensor("blk.0.attn_norm.weight").unwrap();
        let stored: Vec<f32> = bytemuck_f32(g.tensor_data(norm));
        let mut want = vec![0f32; stored.len()];
        synth::rng::fill_normal(
            synth::rng::tensor_key(0, "blk.0.attn_norm.weight"),
            0,
            1.0,
            0.1,
            &mut want,
        );
        assert_eq!(stored, want);
        if arch != Arch::Llama {
            continue;
        }
        // Same spec, same bytes; another seed, other bytes.
        let again = dir.join("again.gguf");
        synth::write_model(&spec, &tok, &again).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(&again).unwrap()
        );
        let other = SynthSpec { seed: 1, ..spec };
        synth::write_model(&other, &tok, &again).unwrap();
        assert_ne!(
            std::fs::read(&path).unwrap(),
            std::fs::read(&again).unwrap()
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn bytemuck_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn quantized_weights_have_the_planned_scale() {
    let tok = fake_tokenizer();
    let spec = SynthSpec::new(Preset::Tiny, Arch::Llama, WeightType::Q8_0);
    let path = std::env::temp_dir().join(format!("synth-scale-{}.gguf", std::process::id()));
    synth::write_model(&spec, &tok, &path).unwrap();
    let g = Gguf::open(&path).unwrap();
    let t = g.tensor("blk.1.ffn_down.weight").unwrap();
    let n = t.shape.iter().product::<u64>() as usize;
    let mut v = vec![0f32; n];
    quant::dequantize(t.ggml_type, g.tensor_data(t), &mut v).unwrap();
    let rms = (v.iter().map(|x| x * x).sum::<f32>() / n as f32).sqrt();
    let want = 1.0 / (512f32).sqrt();
    assert!((rms / want - 1.0).abs() < 0.02, "rms {rms} vs {want}");
    drop(g);
    std::fs::remove_file(&path).unwrap();
}
