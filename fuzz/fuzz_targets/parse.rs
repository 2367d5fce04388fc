//! Fuzz target: any byte string either parses or is rejected with an error;
//! whatever parses can be walked completely and written back, and the
//! rewrite parses to the same metadata and tensor table.
#![no_main]

use gguf_format::{Gguf, GgufWriter, Value};
use libfuzzer_sys::fuzz_target;

fn walk(v: &Value<'_>, budget: &mut usize) {
    if *budget == 0 {
        return;
    }
    *budget -= 1;
    let _ = v.describe();
    if let Value::Array(a) = v {
        let _ = a.to_f32_vec();
        let _ = a.to_i32_vec();
        let _ = a.strings().count();
        for item in a.iter() {
            walk(&item, budget);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(file) = Gguf::from_bytes(data) else {
        return;
    };
    let mut budget = 1 << 16;
    for (key, value) in file.metadata() {
        let _ = file.get_u32(key);
        let _ = file.get_f32(key);
        let _ = file.get_str(key);
        walk(&value, &mut budget);
    }
    let _ = file.arch_u32("block_count");
    for t in file.tensors() {
        assert_eq!(file.tensor_data(t).len() as u64, t.n_bytes());
    }
    if file.alignment() > 1 << 16 {
        return; // a valid rewrite would be gigabytes of padding
    }
    let writer = GgufWriter::from_gguf(&file).expect("a parsed file can be re-added");
    let bytes = writer.to_bytes().expect("a parsed file can be written");
    let again = Gguf::from_bytes(bytes.as_slice()).expect("a written file parses");
    assert_eq!(again.tensors().len(), file.tensors().len());
    for (a, b) in file.tensors().iter().zip(again.tensors()) {
        assert_eq!(
            (&a.name, a.ggml_type, &a.shape),
            (&b.name, b.ggml_type, &b.shape)
        );
        assert_eq!(file.tensor_data(a), again.tensor_data(b));
    }
    let left: Vec<_> = file
        .metadata()
        .map(|(k, v)| (k, v.to_owned_value()))
        .collect();
    let right: Vec<_> = again
        .metadata()
        .map(|(k, v)| (k, v.to_owned_value()))
        .collect();
    assert_eq!(format!("{left:?}"), format!("{right:?}"));
});
