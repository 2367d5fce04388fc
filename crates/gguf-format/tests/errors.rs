//! Hand-built malformed files: each is rejected with the error that names
//! what is wrong.

use gguf_format::{GgmlType, Gguf, GgufError, GgufWriter, MetadataValue, ValueType};

/// Raw little-endian GGUF bytes.
#[derive(Default)]
struct Raw(Vec<u8>);

impl Raw {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        let mut r = Raw::default();
        r.0.extend_from_slice(b"GGUF");
        r.u32(version).u64(n_tensors).u64(n_kv);
        r
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn str(&mut self, s: &[u8]) -> &mut Self {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s);
        self
    }
    fn tensor(&mut self, name: &str, shape: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name.as_bytes()).u32(shape.len() as u32);
        for &d in shape {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    fn pad_and_data(&mut self, data_len: usize) -> &mut Self {
        while !self.0.len().is_multiple_of(32) {
            self.0.push(0);
        }
        self.0.resize(self.0.len() + data_len, 0);
        self
    }
    fn parse(&self) -> Result<(), GgufError> {
        Gguf::from_bytes(self.0.as_slice()).map(|_| ())
    }
}

fn message(r: &Raw) -> String {
    r.parse().unwrap_err().to_string()
}

#[test]
fn minimal_files_parse() {
    Raw::header(3, 0, 0).parse().unwrap();
    Raw::header(2, 0, 0).parse().unwrap();
    let mut r = Raw::header(3, 1, 0);
    r.tensor("w", &[4], GgmlType::F32.id(), 0).pad_and_data(16);
    r.parse().unwrap();
}

#[test]
fn bad_magic_and_versions() {
    let mut r = Raw::header(3, 0, 0);
    r.0[0] = b'X';
    assert!(matches!(r.parse(), Err(GgufError::BadMagic { .. })));
    assert!(message(&Raw::header(1, 0, 0)).contains("version 1 is not supported"));
    assert!(message(&Raw::header(3u32.swap_bytes(), 0, 0)).contains("big-endian"));
    assert!(matches!(
        Raw::header(4, 0, 0).parse(),
        Err(GgufError::UnsupportedVersion { version: 4 })
    ));
    assert!(matches!(
        Raw(b"GGU".to_vec()).parse(),
        Err(GgufError::Truncated { .. })
    ));
}

#[test]
fn huge_counts_do_not_allocate() {
    for n in [1u64 << 60, u64::MAX, 1 << 32] {
        assert!(matches!(
            Raw::header(3, n, 0).parse(),
            Err(GgufError::CountTooLarge { .. })
        ));
        assert!(matches!(
            Raw::header(3, 0, n).parse(),
            Err(GgufError::CountTooLarge { .. })
        ));
        let mut r = Raw::header(3, 0, 1);
        r.str(b"k")
            .u32(ValueType::Array.id())
            .u32(ValueType::String.id())
            .u64(n);
        let e = message(&r);
        assert!(e.contains("\"k\"") && e.contains(&n.to_string()), "{e}");
        let mut r = Raw::header(3, 0, 1);
        r.str(b"k").u32(ValueType::String.id()).u64(n);
        assert!(matches!(r.parse(), Err(GgufError::Truncated { .. })));
    }
}

#[test]
fn bad_metadata() {
    let mut r = Raw::header(3, 0, 1);
    r.str(b"k").u32(13).u32(0);
    assert!(matches!(
        r.parse(),
        Err(GgufError::UnknownValueType { id: 13, .. })
    ));

    let mut r = Raw::header(3, 0, 1);
    r.str(b"k").u32(ValueType::String.id()).str(b"\xff\xfe");
    let e = message(&r);
    assert!(e.contains("\"k\"") && e.contains("UTF-8"), "{e}");

    let mut r = Raw::header(3, 0, 1);
    r.str(b"\xc3").u32(ValueType::U8.id()).0.push(1);
    assert!(matches!(r.parse(), Err(GgufError::InvalidUtf8 { .. })));

    let mut r = Raw::header(3, 0, 1);
    r.str(b"b").u32(ValueType::Bool.id()).0.push(2);
    assert!(matches!(
        r.parse(),
        Err(GgufError::InvalidBool { byte: 2, .. })
    ));

    let mut r = Raw::header(3, 0, 2);
    r.str(b"k").u32(ValueType::U32.id()).u32(1);
    r.str(b"k").u32(ValueType::U32.id()).u32(2);
    assert!(matches!(r.parse(), Err(GgufError::DuplicateKey { key }) if key == "k"));

    let mut r = Raw::header(3, 0, 1);
    r.str(b"deep").u32(ValueType::Array.id());
    for _ in 0..200 {
        r.u32(ValueType::Array.id()).u64(1);
    }
    r.u32(ValueType::U8.id()).u64(0);
    assert!(matches!(r.parse(), Err(GgufError::NestingTooDeep { .. })));
}

#[test]
fn bad_alignment() {
    for (ty, value) in [(ValueType::U32, 0u32), (ValueType::U32, 48)] {
        let mut r = Raw::header(3, 0, 1);
        r.str(b"general.alignment").u32(ty.id()).u32(value);
        assert!(matches!(r.parse(), Err(GgufError::BadAlignment { .. })));
    }
    let mut r = Raw::header(3, 0, 1);
    r.str(b"general.alignment").u32(ValueType::F32.id()).u32(0);
    assert!(matches!(r.parse(), Err(GgufError::BadAlignment { .. })));
}

#[test]
fn bad_tensors() {
    let one = |name: &str, shape: &[u64], ty: u32, offset: u64, data: usize| {
        let mut r = Raw::header(3, 1, 0);
        r.tensor(name, shape, ty, offset).pad_and_data(data);
        r.parse().unwrap_err()
    };
    let e = one("w", &[4], 4, 0, 16);
    assert!(
        matches!(&e, GgufError::UnknownTensorType { tensor, id: 4 } if tensor == "w"),
        "{e}"
    );
    let e = one("w", &[1, 1, 1, 1, 1], 0, 0, 16);
    assert!(matches!(e, GgufError::TooManyDims { n_dims: 5, .. }));
    let e = one("w", &[33], GgmlType::Q4_0.id(), 0, 64);
    assert!(
        e.to_string()
            .contains("ne0 is not a multiple of the block size"),
        "{e}"
    );
    let e = one("w", &[1 << 62, 4], 0, 0, 16);
    assert!(e.to_string().contains("overflows"), "{e}");
    let e = one("w", &[4], 0, 16, 64);
    assert!(matches!(e, GgufError::MisalignedTensor { offset: 16, .. }));
    let e = one("w", &[8], 0, 0, 16);
    assert!(matches!(e, GgufError::TensorOutOfBounds { size: 32, .. }));
    let e = one("w", &[4], 0, u64::MAX - 31, 16);
    assert!(matches!(e, GgufError::TensorOutOfBounds { .. }));

    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[16], 0, 0)
        .tensor("b", &[8], 0, 32)
        .pad_and_data(64);
    assert!(
        matches!(r.parse(), Err(GgufError::TensorOverlap { first, second }) if first == "a" && second == "b")
    );

    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[8], 0, 0)
        .tensor("a", &[8], 0, 32)
        .pad_and_data(64);
    assert!(matches!(r.parse(), Err(GgufError::DuplicateTensor { name }) if name == "a"));
}

#[test]
fn accessor_conversions() {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", "demo");
    w.add_metadata("demo.small", MetadataValue::U64(7));
    w.add_metadata("demo.big", MetadataValue::U64(1 << 40));
    w.add_metadata("demo.neg", MetadataValue::I8(-1));
    w.add_metadata("demo.f64", MetadataValue::F64(0.1));
    w.add_metadata(
        "demo.ints",
        MetadataValue::Array(ValueType::U8, vec![MetadataValue::U8(200)]),
    );
    let bytes = w.to_bytes().unwrap();
    let f = Gguf::from_bytes(bytes).unwrap();
    assert_eq!(f.arch_u32("small").unwrap(), 7);
    assert_eq!(f.arch_i32("neg").unwrap(), -1);
    let e = f.arch_u32("big").unwrap_err().to_string();
    assert!(
        e.contains("demo.big") && e.contains("expected u32") && e.contains("u64 1099511627776"),
        "{e}"
    );
    assert!(f.arch_u32("neg").is_err());
    assert!(f.arch_f32("f64").is_err(), "0.1f64 is not exact in f32");
    assert_eq!(f.arch_f64("f64").unwrap(), 0.1);
    assert_eq!(
        f.arch_array("ints").unwrap().to_u32_vec().unwrap(),
        vec![200]
    );
    assert!(f.arch_array("ints").unwrap().to_f32_vec().is_err());
    assert_eq!(f.arch_u32_opt("absent").unwrap(), None);
    assert!(f.arch_u32_opt("f64").is_err());
}

#[test]
fn writer_refuses_inconsistent_input() {
    let mut w = GgufWriter::new();
    assert!(w
        .add_tensor("t", GgmlType::Q4_0, vec![32], vec![0u8; 17])
        .is_err());
    assert!(w
        .add_tensor("t", GgmlType::Q4_0, vec![31], vec![0u8; 18])
        .is_err());
    w.add_tensor("t", GgmlType::Q4_0, vec![32], vec![0u8; 18])
        .unwrap();
    assert!(matches!(
        w.add_tensor("t", GgmlType::F32, vec![1], vec![0u8; 4]),
        Err(GgufError::DuplicateTensor { .. })
    ));
    w.add_metadata(
        "bad",
        MetadataValue::Array(ValueType::U8, vec![MetadataValue::U16(1)]),
    );
    assert!(w.to_bytes().is_err());
}
