//! Runtime compilation of kernel sources with NVRTC (NVIDIA) or hiprtc (AMD),
//! both loaded at run time, with an on-disk cache of the code objects.
//!
//! Cache key: SHA-256 of the source text, the target architecture, the
//! driver version, the compiler's version and the options. Cache directory:
//! `$ROCMFORGE_KERNEL_CACHE`, else `$XDG_CACHE_HOME/rocmforge/kernels`, else
//! `$HOME/.cache/rocmforge/kernels`. A cache that cannot be written is not an
//! error (the code object is still returned).

use std::ffi::{c_char, c_int, CStr, CString};
use std::path::PathBuf;

use libloading::Library;
use sha2::{Digest, Sha256};

use crate::error::{Result, RuntimeError};
use crate::ffi::Vendor;

type Prog = *mut std::ffi::c_void;

/// A runtime compiler (NVRTC or hiprtc; their C APIs have the same shape).
pub struct Compiler {
    vendor: Vendor,
    version: (i32, i32),
    create: unsafe extern "C" fn(
        *mut Prog,
        *const c_char,
        *const c_char,
        c_int,
        *const *const c_char,
        *const *const c_char,
    ) -> c_int,
    compile: unsafe extern "C" fn(Prog, c_int, *const *const c_char) -> c_int,
    log_size: unsafe extern "C" fn(Prog, *mut usize) -> c_int,
    log: unsafe extern "C" fn(Prog, *mut c_char) -> c_int,
    code_size: unsafe extern "C" fn(Prog, *mut usize) -> c_int,
    code: unsafe extern "C" fn(Prog, *mut c_char) -> c_int,
    destroy: unsafe extern "C" fn(*mut Prog) -> c_int,
    error_string: unsafe extern "C" fn(c_int) -> *const c_char,
    _lib: Library,
}

impl std::fmt::Debug for Compiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Compiler({:?} {}.{})",
            self.vendor, self.version.0, self.version.1
        )
    }
}

const NVRTC_NAMES: &[&str] = &[
    "libnvrtc.so",
    "libnvrtc.so.13",
    "libnvrtc.so.12",
    "libnvrtc.so.11.2",
    "libnvrtc.so.11.1",
    "libnvrtc.so.11.0",
];
const HIPRTC_NAMES: &[&str] = &[
    "libhiprtc.so",
    "libhiprtc.so.7",
    "libhiprtc.so.6",
    "libhiprtc.so.5",
];

impl Compiler {
    /// Load the vendor's runtime compiler.
    pub fn load(vendor: Vendor) -> Result<Compiler> {
        let (names, p) = match vendor {
            Vendor::Cuda => (NVRTC_NAMES, "nvrtc"),
            Vendor::Hip => (HIPRTC_NAMES, "hiprtc"),
        };
        let mut errs = Vec::new();
        for name in names {
            // SAFETY: loading the vendor's compiler library runs its
            // initialisers, which are made to be loaded into any process.
            let lib = match unsafe { Library::new(name) } {
                Ok(l) => l,
                Err(e) => {
                    errs.push(format!("{name}: {e}"));
                    continue;
                }
            };
            return Self::resolve(vendor, p, name, lib);
        }
        Err(RuntimeError::LibraryNotFound(format!(
            "no runtime compiler ({p}): {}",
            errs.join("; ")
        )))
    }

    fn resolve(vendor: Vendor, p: &str, file: &str, lib: Library) -> Result<Compiler> {
        // SAFETY: each symbol's type was written from nvrtc.h / hiprtc.h; the
        // pointers stay valid while `_lib` (kept in the struct) is loaded.
        unsafe {
            fn get<T: Copy>(lib: &Library, file: &str, name: String) -> Result<T> {
                let c = format!("{name}\0");
                // SAFETY: see the caller; `T` is the symbol's C signature.
                unsafe { lib.get::<T>(c.as_bytes()) }
                    .map(|s| *s)
                    .map_err(|_| RuntimeError::MissingSymbol {
                        library: file.to_string(),
                        symbol: name,
                    })
            }
            let code_sym = match vendor {
                Vendor::Cuda => ("nvrtcGetCUBINSize".to_string(), "nvrtcGetCUBIN".to_string()),
                Vendor::Hip => ("hiprtcGetCodeSize".to_string(), "hiprtcGetCode".to_string()),
            };
            let version_fn: unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int =
                get(&lib, file, format!("{p}Version"))?;
            let (mut maj, mut min) = (0, 0);
            version_fn(&mut maj, &mut min);
            Ok(Compiler {
                vendor,
                version: (maj, min),
                create: get(&lib, file, format!("{p}CreateProgram"))?,
                compile: get(&lib, file, format!("{p}CompileProgram"))?,
                log_size: get(&lib, file, format!("{p}GetProgramLogSize"))?,
                log: get(&lib, file, format!("{p}GetProgramLog"))?,
                code_size: get(&lib, file, code_sym.0)?,
                code: get(&lib, file, code_sym.1)?,
                destroy: get(&lib, file, format!("{p}DestroyProgram"))?,
                error_string: get(&lib, file, format!("{p}GetErrorString"))?,
                _lib: lib,
            })
        }
    }

    /// The compiler's `(major, minor)` version.
    pub fn version(&self) -> (i32, i32) {
        self.version
    }

    fn err(&self, call: &'static str, code: c_int) -> RuntimeError {
        // SAFETY: returns a static NUL-terminated string for any code.
        let p = unsafe { (self.error_string)(code) };
        let description = if p.is_null() {
            "unknown".to_string()
        } else {
            // SAFETY: non-null static string from the compiler.
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        };
        RuntimeError::Api {
            call,
            code,
            name: description.clone(),
            description: format!("{:?} runtime compiler", self.vendor),
        }
    }

    /// Compile `source` for `arch` (`sm_90`, `gfx90a`) into a code object.
    pub fn compile(
        &self,
        name: &str,
        source: &str,
        arch: &str,
        extra_options: &[&str],
    ) -> Result<Vec<u8>> {
        let csrc = CString::new(source)
            .map_err(|_| RuntimeError::Invalid("source contains NUL".into()))?;
        let cname =
            CString::new(name).map_err(|_| RuntimeError::Invalid("name contains NUL".into()))?;
        let mut opts: Vec<CString> =
            vec![CString::new(format!("--gpu-architecture={arch}")).expect("no NUL")];
        opts.push(CString::new("-DROCMFORGE_RTC=1").expect("no NUL"));
        for o in extra_options {
            opts.push(
                CString::new(*o)
                    .map_err(|_| RuntimeError::Invalid("option contains NUL".into()))?,
            );
        }
        let opt_ptrs: Vec<*const c_char> = opts.iter().map(|o| o.as_ptr()).collect();
        let mut prog: Prog = std::ptr::null_mut();
        // SAFETY: all strings are NUL-terminated and outlive the calls; the
        // program is destroyed below on every path.
        unsafe {
            let st = (self.create)(
                &mut prog,
                csrc.as_ptr(),
                cname.as_ptr(),
                0,
                std::ptr::null(),
                std::ptr::null(),
            );
            if st != 0 {
                return Err(self.err("CreateProgram", st));
            }
            let st = (self.compile)(prog, opt_ptrs.len() as c_int, opt_ptrs.as_ptr());
            let mut log_len = 0usize;
            (self.log_size)(prog, &mut log_len);
            let mut log = vec![0u8; log_len.max(1)];
            (self.log)(prog, log.as_mut_ptr() as *mut c_char);
            let log = String::from_utf8_lossy(&log)
                .trim_end_matches('\0')
                .trim()
                .to_string();
            if st != 0 {
                (self.destroy)(&mut prog);
                return Err(RuntimeError::Compile {
                    source_name: name.to_string(),
                    arch: arch.to_string(),
                    log,
                });
            }
            if !log.is_empty() {
                tracing::debug!("{name} for {arch}: {log}");
            }
            let mut size = 0usize;
            let st = (self.code_size)(prog, &mut size);
            if st != 0 {
                (self.destroy)(&mut prog);
                return Err(self.err("GetCodeSize", st));
            }
            let mut code = vec![0u8; size];
            let st = (self.code)(prog, code.as_mut_ptr() as *mut c_char);
            (self.destroy)(&mut prog);
            if st != 0 {
                return Err(self.err("GetCode", st));
            }
            Ok(code)
        }
    }

    /// [`Compiler::compile`] through the on-disk cache (see the module docs).
    pub fn compile_cached(
        &self,
        name: &str,
        source: &str,
        arch: &str,
        driver_version: i32,
        extra_options: &[&str],
    ) -> Result<Vec<u8>> {
        let mut h = Sha256::new();
        for part in [
            source,
            arch,
            &driver_version.to_string(),
            &format!("{:?}", self.version),
        ] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        for o in extra_options {
            h.update(o.as_bytes());
            h.update([0u8]);
        }
        let digest = h.finalize();
        let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
        let ext = match self.vendor {
            Vendor::Cuda => "cubin",
            Vendor::Hip => "hsaco",
        };
        let path = cache_dir().map(|d| d.join(format!("{name}-{arch}-{hex}.{ext}")));
        if let Some(p) = &path {
            if let Ok(bytes) = std::fs::read(p) {
                if !bytes.is_empty() {
                    tracing::debug!("kernel cache hit {}", p.display());
                    return Ok(bytes);
                }
            }
        }
        let code = self.compile(name, source, arch, extra_options)?;
        if let Some(p) = &path {
            if let Err(e) = write_atomic(p, &code) {
                tracing::warn!("kernel cache not written ({}): {e}", p.display());
            }
        }
        Ok(code)
    }
}

/// The kernel cache directory (see the module docs), if one can be named.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("ROCMFORGE_KERNEL_CACHE") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("rocmforge/kernels"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/rocmforge/kernels"))
}

fn write_atomic(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}
