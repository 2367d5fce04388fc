//! gguf-py as the oracle for `gguf-format` and `rocmforge inspect`: the SmolLM2
//! fixture read by both must agree on every metadata key, value (floats
//! exactly) and type, every tensor's name, type, shape and data offset, and
//! every tensor dequantized by `inspect --dump` must match gguf-py's
//! dequantize bit for bit. Needs `pip install gguf`.

use std::path::Path;
use std::process::Command;

use gguf_format::{Gguf, Value, ValueType};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use test_fixtures::fixture;

const FIXTURE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn run_json(cmd: &mut Command) -> Json {
    let out = cmd.output().expect("cannot start the command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the command did not print JSON")
}

fn gguf_py(args: &[&std::ffi::OsStr]) -> Json {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/gguf_py_dump.py");
    run_json(Command::new("python3").arg(script).args(args))
}

fn rocmforge() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rocmforge"))
}

/// The type name gguf_py_dump.py prints: `u32`, `string`, `array[i32]`, ….
fn type_name(v: &Value<'_>) -> String {
    match v {
        Value::Array(a) => {
            let inner = match a.elem_type() {
                ValueType::Array => a.get(0).map_or("?".into(), |x| type_name(&x)),
                t => t.name().to_string(),
            };
            format!("array[{inner}]")
        }
        other => other.value_type().name().to_string(),
    }
}

#[test]
fn metadata_and_tensor_table_match_gguf_py() {
    let path = fixture(FIXTURE);
    let mut oracle = gguf_py(&[path.as_os_str()]);
    let ours = run_json(rocmforge().arg("inspect").arg("--json").arg(&path));
    let file = Gguf::open(&path).unwrap();

    // Oracle-only fields, checked against the library.
    let types = oracle.as_object_mut().unwrap().remove("types").unwrap();
    let data_offset = oracle
        .as_object_mut()
        .unwrap()
        .remove("data_offset")
        .unwrap();
    assert_eq!(data_offset, file.data_offset());
    let types = types.as_object().unwrap();
    assert_eq!(types.len(), file.metadata_len());
    for ((key, value), (okey, otype)) in file.metadata().zip(types) {
        assert_eq!(key, okey, "metadata key order");
        assert_eq!(type_name(&value), otype.as_str().unwrap(), "type of {key}");
        if let Value::F32(x) = value {
            let o = oracle["metadata"][key].as_f64().unwrap();
            assert_eq!(f64::from(x).to_bits(), o.to_bits(), "value of {key}");
        }
    }

    assert_eq!(ours["version"], oracle["version"]);
    assert_eq!(ours["alignment"], oracle["alignment"]);
    let (om, m) = (
        oracle["metadata"].as_object().unwrap(),
        ours["metadata"].as_object().unwrap(),
    );
    assert_eq!(
        m.keys().collect::<Vec<_>>(),
        om.keys().collect::<Vec<_>>(),
        "metadata keys"
    );
    for (k, v) in om {
        assert!(m[k] == *v, "metadata {k}: ours {} vs gguf-py {}", m[k], v);
    }
    let (ot, t) = (
        oracle["tensors"].as_array().unwrap(),
        ours["tensors"].as_array().unwrap(),
    );
    assert_eq!(t.len(), ot.len());
    assert_eq!(t.len(), 272);
    for (a, b) in t.iter().zip(ot) {
        assert_eq!(a, b, "tensor table entry");
    }
}

#[test]
fn dump_matches_gguf_py_dequantize() {
    let path = fixture(FIXTURE);
    let oracle = gguf_py(&["--dequantize-sha256".as_ref(), path.as_os_str()]);
    let oracle = oracle.as_object().unwrap();
    let file = Gguf::open(&path).unwrap();
    assert_eq!(oracle.len(), file.tensors().len());
    let dir = std::env::temp_dir().join(format!("rocmforge-dump-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("tensor.f32");
    let mut mismatched = Vec::new();
    for t in file.tensors() {
        let status = rocmforge()
            .args(["inspect", "--dump", &t.name, "--out"])
            .arg(&out)
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "inspect --dump {} ({}): {}",
            t.name,
            t.ggml_type,
            String::from_utf8_lossy(&status.stderr)
        );
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(bytes.len() as u64, t.n_elements() * 4, "{}", t.name);
        let ours = format!("{:x}", Sha256::digest(&bytes));
        if oracle[&t.name].as_str() != Some(ours.as_str()) {
            mismatched.push(format!("{} ({})", t.name, t.ggml_type));
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    assert!(mismatched.is_empty(), "differ from gguf-py: {mismatched:?}");
}
