//! read(write(x)) == x for arbitrary metadata (every value type, nested
//! arrays) and tensor tables.

use gguf_format::{GgmlType, Gguf, GgufWriter, MetadataValue, ValueType};
use proptest::prelude::*;

fn float32() -> impl Strategy<Value = f32> {
    use proptest::num::f32;
    f32::NORMAL | f32::SUBNORMAL | f32::ZERO | f32::INFINITE | f32::NEGATIVE
}

fn float64() -> impl Strategy<Value = f64> {
    use proptest::num::f64;
    f64::NORMAL | f64::SUBNORMAL | f64::ZERO | f64::INFINITE | f64::NEGATIVE
}

/// A value of a given non-array type.
fn scalar(ty: ValueType) -> BoxedStrategy<MetadataValue> {
    match ty {
        ValueType::U8 => any::<u8>().prop_map(MetadataValue::U8).boxed(),
        ValueType::I8 => any::<i8>().prop_map(MetadataValue::I8).boxed(),
        ValueType::U16 => any::<u16>().prop_map(MetadataValue::U16).boxed(),
        ValueType::I16 => any::<i16>().prop_map(MetadataValue::I16).boxed(),
        ValueType::U32 => any::<u32>().prop_map(MetadataValue::U32).boxed(),
        ValueType::I32 => any::<i32>().prop_map(MetadataValue::I32).boxed(),
        ValueType::U64 => any::<u64>().prop_map(MetadataValue::U64).boxed(),
        ValueType::I64 => any::<i64>().prop_map(MetadataValue::I64).boxed(),
        ValueType::F32 => float32().prop_map(MetadataValue::F32).boxed(),
        ValueType::F64 => float64().prop_map(MetadataValue::F64).boxed(),
        ValueType::Bool => any::<bool>().prop_map(MetadataValue::Bool).boxed(),
        _ => ".{0,12}".prop_map(MetadataValue::String).boxed(),
    }
}

fn scalar_type() -> impl Strategy<Value = ValueType> {
    prop::sample::select(
        ValueType::ALL
            .iter()
            .copied()
            .filter(|t| *t != ValueType::Array)
            .collect::<Vec<_>>(),
    )
}

/// An array whose elements are all of one type, nested up to `depth` levels.
fn array(depth: u32) -> BoxedStrategy<MetadataValue> {
    let flat = scalar_type()
        .prop_flat_map(|t| {
            prop::collection::vec(scalar(t), 0..6).prop_map(move |v| MetadataValue::Array(t, v))
        })
        .boxed();
    if depth == 0 {
        return flat;
    }
    prop_oneof![
        3 => flat,
        1 => prop::collection::vec(array(depth - 1), 0..4)
            .prop_map(|v| MetadataValue::Array(ValueType::Array, v)),
    ]
    .boxed()
}

fn value() -> impl Strategy<Value = MetadataValue> {
    prop_oneof![3 => scalar_type().prop_flat_map(scalar), 1 => array(2)]
}

fn tensor_type() -> impl Strategy<Value = GgmlType> {
    prop::sample::select(GgmlType::ALL.to_vec())
}

/// (type, shape, data) with ne0 a whole number of blocks.
fn tensor() -> impl Strategy<Value = (GgmlType, Vec<u64>, Vec<u8>)> {
    (tensor_type(), 1u64..3, prop::collection::vec(1u64..4, 0..4)).prop_flat_map(
        |(t, blocks, rest)| {
            let mut shape = vec![blocks * t.block_size() as u64];
            shape.extend(rest);
            let n: u64 = shape.iter().product();
            let bytes = t.bytes_for(n).unwrap() as usize;
            prop::collection::vec(any::<u8>(), bytes).prop_map(move |d| (t, shape.clone(), d))
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn read_write_read(
        meta in prop::collection::btree_map("[a-z._]{1,16}", value(), 0..8),
        tensors in prop::collection::vec(tensor(), 0..5),
        align_pow in prop::option::of(0u32..8),
    ) {
        let mut w = GgufWriter::new();
        if let Some(p) = align_pow {
            w.set_alignment(1 << p);
        }
        for (k, v) in &meta {
            w.add_metadata(k.clone(), v.clone());
        }
        for (i, (t, shape, data)) in tensors.iter().enumerate() {
            w.add_tensor(format!("t{i}"), *t, shape.clone(), data.as_slice()).unwrap();
        }
        let bytes = w.to_bytes().unwrap();
        let f = Gguf::from_bytes(bytes.as_slice()).unwrap();
        prop_assert_eq!(f.alignment(), align_pow.map_or(32, |p| 1u64 << p));
        let mut expected: Vec<(String, MetadataValue)> = Vec::new();
        if let Some(p) = align_pow {
            expected.push(("general.alignment".into(), MetadataValue::U32(1 << p)));
        }
        expected.extend(meta.iter().map(|(k, v)| (k.clone(), v.clone())));
        let got: Vec<(String, MetadataValue)> =
            f.metadata().map(|(k, v)| (k.to_string(), v.to_owned_value())).collect();
        prop_assert_eq!(got, expected);
        prop_assert_eq!(f.tensors().len(), tensors.len());
        for (i, (info, (t, shape, data))) in f.tensors().iter().zip(&tensors).enumerate() {
            prop_assert_eq!(&info.name, &format!("t{i}"));
            prop_assert_eq!(info.ggml_type, *t);
            prop_assert_eq!(&info.shape, shape);
            prop_assert_eq!(info.offset % f.alignment(), 0);
            prop_assert_eq!(f.tensor_data(info), data.as_slice());
        }
        // Writing what was read reproduces the bytes.
        let again = GgufWriter::from_gguf(&f).unwrap().to_bytes().unwrap();
        prop_assert_eq!(again, bytes);
    }
}
