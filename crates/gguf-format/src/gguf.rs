//! [`Gguf`]: a parsed file over its storage (a memory map, a vector or a slice).

use std::collections::HashMap;
use std::path::Path;

use crate::error::GgufError;
use crate::parse::{parse, Kv};
use crate::tensor::TensorInfo;
use crate::value::{node_value, Value};

/// A parsed GGUF file. Metadata and tensor infos are parsed and validated
/// once; values and tensor data are then borrowed from `storage` on access.
pub struct Gguf<S: AsRef<[u8]>> {
    storage: S,
    version: u32,
    alignment: u64,
    data_offset: u64,
    kvs: Vec<Kv>,
    key_index: HashMap<Box<str>, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

/// A GGUF file read through a read-only memory map.
pub type MappedGguf = Gguf<memmap2::Mmap>;

impl<S: AsRef<[u8]>> std::fmt::Debug for Gguf<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("version", &self.version)
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .field("metadata_keys", &self.kvs.len())
            .field("tensors", &self.tensors.len())
            .field("file_size", &self.file_size())
            .finish()
    }
}

impl Gguf<memmap2::Mmap> {
    /// Memory-maps and parses the file at `path`.
    ///
    /// The file must not be modified or truncated while the returned value
    /// lives (the usual contract of memory-mapped model files).
    pub fn open(path: impl AsRef<Path>) -> Result<MappedGguf, GgufError> {
        let path = path.as_ref();
        let io = |error| GgufError::Io {
            path: path.to_path_buf(),
            error,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only and we never hand out a mutable view.
        // Like every mmap-based loader we rely on the file not being modified
        // or truncated by another process while it is mapped (documented on
        // this function); all accesses are bounds-checked slices of the map.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Gguf::from_bytes(map)
    }
}

impl<S: AsRef<[u8]>> Gguf<S> {
    /// Parses a file held in `storage` (`&[u8]`, `Vec<u8>`, a memory map, …).
    pub fn from_bytes(storage: S) -> Result<Gguf<S>, GgufError> {
        let p = parse(storage.as_ref())?;
        Ok(Gguf {
            storage,
            version: p.version,
            alignment: p.alignment,
            data_offset: p.data_offset,
            kvs: p.kvs,
            key_index: p.key_index,
            tensors: p.tensors,
            tensor_index: p.tensor_index,
        })
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        self.storage.as_ref()
    }

    /// The storage the file was parsed from.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Gives back the storage.
    pub fn into_storage(self) -> S {
        self.storage
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of tensor data (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute offset of the data section in the file.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Size of the file in bytes.
    pub fn file_size(&self) -> u64 {
        self.bytes().len() as u64
    }

    /// The value of a metadata key.
    pub fn get(&self, key: &str) -> Option<Value<'_>> {
        let &i = self.key_index.get(key)?;
        let kv = self.kvs.get(i)?;
        Some(node_value(self.bytes(), &kv.node, &kv.key))
    }

    /// True when the file has metadata key `key`.
    pub fn contains_key(&self, key: &str) -> bool {
        self.key_index.contains_key(key)
    }

    /// Number of metadata entries.
    pub fn metadata_len(&self) -> usize {
        self.kvs.len()
    }

    /// All metadata entries in file order.
    pub fn metadata(&self) -> impl Iterator<Item = (&str, Value<'_>)> + '_ {
        let data = self.bytes();
        self.kvs
            .iter()
            .map(move |kv| (&*kv.key, node_value(data, &kv.node, &kv.key)))
    }

    /// All metadata entries in file order (same as [`Gguf::metadata`]).
    pub fn keys(&self) -> impl Iterator<Item = (&str, Value<'_>)> + '_ {
        self.metadata()
    }

    /// The tensor table, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(*self.tensor_index.get(name)?)
    }

    /// The data of a tensor, borrowed from the storage. Empty for an info
    /// that does not come from this file and does not fit in it.
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        let range = (|| {
            let start = usize::try_from(self.data_offset.checked_add(info.offset)?).ok()?;
            let end = start.checked_add(usize::try_from(info.checked_n_bytes().ok()?).ok()?)?;
            self.bytes().get(start..end)
        })();
        range.unwrap_or(&[])
    }
}
