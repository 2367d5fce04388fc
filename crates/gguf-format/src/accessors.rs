//! Typed metadata accessors, with errors naming the key and the expected and
//! found types, and helpers for `{architecture}.` prefixed hyperparameters.

use crate::error::GgufError;
use crate::value::{ArrayView, Value};
use crate::Gguf;

/// Key holding the architecture name that prefixes hyperparameter keys.
pub const ARCHITECTURE_KEY: &str = "general.architecture";

macro_rules! typed_accessors {
    ($(($get:ident, $opt:ident, $arch:ident, $arch_opt:ident, $ty:ty, $conv:expr, $expected:literal)),* $(,)?) => {
        impl<S: AsRef<[u8]>> Gguf<S> {
            $(
                #[doc = concat!("The value of `key` as ", $expected, "; an error when missing or mistyped.")]
                pub fn $get(&self, key: &str) -> Result<$ty, GgufError> {
                    self.$opt(key)?.ok_or_else(|| GgufError::MissingKey { key: key.to_string() })
                }

                #[doc = concat!("The value of `key` as ", $expected, "; `Ok(None)` when missing, an error when mistyped.")]
                pub fn $opt(&self, key: &str) -> Result<Option<$ty>, GgufError> {
                    match self.get(key) {
                        None => Ok(None),
                        Some(v) => {
                            let conv: fn(&Value<'_>) -> Option<$ty> = $conv;
                            match conv(&v) {
                                Some(x) => Ok(Some(x)),
                                None => Err(GgufError::wrong_type(key, $expected, v.describe())),
                            }
                        }
                    }
                }

                #[doc = concat!("`{architecture}.{suffix}` as ", $expected, "; an error naming the full key when missing or mistyped.")]
                pub fn $arch(&self, suffix: &str) -> Result<$ty, GgufError> {
                    self.$get(&self.arch_key(suffix)?)
                }

                #[doc = concat!("`{architecture}.{suffix}` as ", $expected, "; `Ok(None)` when missing.")]
                pub fn $arch_opt(&self, suffix: &str) -> Result<Option<$ty>, GgufError> {
                    self.$opt(&self.arch_key(suffix)?)
                }
            )*
        }
    };
}

typed_accessors!(
    (
        get_u32,
        get_u32_opt,
        arch_u32,
        arch_u32_opt,
        u32,
        |v| v.as_u32(),
        "u32"
    ),
    (
        get_u64,
        get_u64_opt,
        arch_u64,
        arch_u64_opt,
        u64,
        |v| v.as_u64(),
        "u64"
    ),
    (
        get_i32,
        get_i32_opt,
        arch_i32,
        arch_i32_opt,
        i32,
        |v| v.as_i32(),
        "i32"
    ),
    (
        get_i64,
        get_i64_opt,
        arch_i64,
        arch_i64_opt,
        i64,
        |v| v.as_i64(),
        "i64"
    ),
    (
        get_f32,
        get_f32_opt,
        arch_f32,
        arch_f32_opt,
        f32,
        |v| v.as_f32(),
        "f32"
    ),
    (
        get_f64,
        get_f64_opt,
        arch_f64,
        arch_f64_opt,
        f64,
        |v| v.as_f64(),
        "f64"
    ),
    (
        get_bool,
        get_bool_opt,
        arch_bool,
        arch_bool_opt,
        bool,
        |v| v.as_bool(),
        "bool"
    ),
);

impl<S: AsRef<[u8]>> Gguf<S> {
    /// The value of `key` as a string borrowed from the file.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        self.get_str_opt(key)?.ok_or_else(|| GgufError::MissingKey {
            key: key.to_string(),
        })
    }

    /// The value of `key` as a string; `Ok(None)` when missing.
    pub fn get_str_opt(&self, key: &str) -> Result<Option<&str>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(GgufError::wrong_type(key, "string", v.describe())),
        }
    }

    /// The value of `key` as an array.
    pub fn get_array(&self, key: &str) -> Result<ArrayView<'_>, GgufError> {
        self.get_array_opt(key)?
            .ok_or_else(|| GgufError::MissingKey {
                key: key.to_string(),
            })
    }

    /// The value of `key` as an array; `Ok(None)` when missing.
    pub fn get_array_opt(&self, key: &str) -> Result<Option<ArrayView<'_>>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(v) => Err(GgufError::wrong_type(key, "array", v.describe())),
        }
    }

    /// The architecture name (`general.architecture`, e.g. `"llama"`).
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.get_str(ARCHITECTURE_KEY)
    }

    /// The full key `{architecture}.{suffix}`.
    pub fn arch_key(&self, suffix: &str) -> Result<String, GgufError> {
        Ok(format!("{}.{suffix}", self.architecture()?))
    }

    /// `{architecture}.{suffix}` as a string.
    pub fn arch_str(&self, suffix: &str) -> Result<&str, GgufError> {
        let key = self.arch_key(suffix)?;
        self.get_str(&key)
    }

    /// `{architecture}.{suffix}` as a string; `Ok(None)` when missing.
    pub fn arch_str_opt(&self, suffix: &str) -> Result<Option<&str>, GgufError> {
        let key = self.arch_key(suffix)?;
        self.get_str_opt(&key)
    }

    /// `{architecture}.{suffix}` as an array.
    pub fn arch_array(&self, suffix: &str) -> Result<ArrayView<'_>, GgufError> {
        let key = self.arch_key(suffix)?;
        self.get_array(&key)
    }

    /// `{architecture}.{suffix}` as an array; `Ok(None)` when missing.
    pub fn arch_array_opt(&self, suffix: &str) -> Result<Option<ArrayView<'_>>, GgufError> {
        let key = self.arch_key(suffix)?;
        self.get_array_opt(&key)
    }
}
