//! Code objects loaded on a device, their kernels, and launching them.

use std::ffi::{c_int, c_void, CString};
use std::sync::Arc;

use crate::device::Device;
use crate::error::{Result, RuntimeError};
use crate::ffi::{
    DevPtr, Handle, LaunchAttribute, LaunchConfigEx, Specific, FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED,
    LAUNCH_ATTRIBUTE_PROGRAMMATIC_SERIALIZATION,
};
use crate::stream::Stream;

/// A loaded code object (cubin/PTX on NVIDIA, HSA code object on AMD).
pub struct Module {
    device: Arc<Device>,
    raw: Handle,
}

// SAFETY: module handles are process-wide driver objects; every use binds
// the device's context first.
unsafe impl Send for Module {}
// SAFETY: as above; looking functions up concurrently is thread-safe.
unsafe impl Sync for Module {}

impl Module {
    /// Load a code object image.
    pub fn load(device: &Arc<Device>, image: &[u8]) -> Result<Arc<Module>> {
        if image.is_empty() {
            return Err(RuntimeError::Invalid("empty code object".into()));
        }
        device.bind()?;
        // PTX images must be NUL-terminated; binary images are read by their
        // own headers, so an extra trailing NUL is harmless.
        let mut owned = image.to_vec();
        owned.push(0);
        let api = device.api();
        let mut raw: Handle = std::ptr::null_mut();
        // SAFETY: the image stays alive for the duration of the call, which
        // copies what it needs.
        api.check("module_load_data", unsafe {
            (api.common.module_load_data)(&mut raw, owned.as_ptr() as *const c_void)
        })?;
        Ok(Arc::new(Module {
            device: device.clone(),
            raw,
        }))
    }

    /// Look up an `extern "C"` kernel by name.
    pub fn function(self: &Arc<Self>, name: &str) -> Result<Function> {
        self.device.bind()?;
        let cname = CString::new(name)
            .map_err(|_| RuntimeError::Invalid(format!("kernel name {name:?}")))?;
        let api = self.device.api();
        let mut raw: Handle = std::ptr::null_mut();
        // SAFETY: writes one function handle; valid while the module is loaded
        // (`Function` keeps the module alive).
        api.check("module_get_function", unsafe {
            (api.common.module_get_function)(&mut raw, self.raw, cname.as_ptr())
        })
        .map_err(|e| match e {
            RuntimeError::Api {
                name: n,
                description,
                code,
                ..
            } => RuntimeError::Api {
                call: "module_get_function",
                code,
                name: n,
                description: format!("{description} (kernel `{name}`)"),
            },
            e => e,
        })?;
        Ok(Function {
            module: self.clone(),
            raw,
            name: name.to_string(),
            skipped: skipped_for_timing(name),
        })
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        if self.device.bind().is_ok() {
            let api = self.device.api();
            // SAFETY: loaded in `load`, unloaded once; no `Function` outlives it.
            unsafe { (api.common.module_unload)(self.raw) };
        }
    }
}

/// A kernel entry point of a [`Module`].
pub struct Function {
    module: Arc<Module>,
    raw: Handle,
    name: String,
    /// Never launched: named in `ROCMFORGE_GPU_SKIP_KERNELS` (see
    /// [`skipped_for_timing`]).
    skipped: bool,
}

/// Whether `name` starts with one of the comma-separated prefixes of
/// `ROCMFORGE_GPU_SKIP_KERNELS`. A timing experiment only: launches of such
/// kernels return at once, so results are wrong, and the time a step loses
/// shows what those kernels cost where they run (docs/gpu.md).
fn skipped_for_timing(name: &str) -> bool {
    std::env::var("ROCMFORGE_GPU_SKIP_KERNELS").is_ok_and(|v| {
        v.split(',')
            .map(str::trim)
            .any(|p| !p.is_empty() && name.starts_with(p))
    })
}

// SAFETY: as for `Module`.
unsafe impl Send for Function {}
// SAFETY: as for `Module`; launching from several threads is thread-safe.
unsafe impl Sync for Function {}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Function({})", self.name)
    }
}

/// Kernel arguments, each at most 8 bytes (pointers, integers, floats),
/// passed by value in declaration order.
#[derive(Debug, Default, Clone)]
pub struct KernelArgs {
    slots: Vec<u64>,
}

impl KernelArgs {
    /// No arguments yet.
    pub fn new() -> Self {
        Self::default()
    }
    /// A device pointer.
    pub fn ptr(mut self, p: DevPtr) -> Self {
        self.slots.push(p);
        self
    }
    /// A 32-bit signed integer.
    pub fn i32(mut self, v: i32) -> Self {
        self.slots.push(v as u32 as u64);
        self
    }
    /// A 32-bit unsigned integer.
    pub fn u32(mut self, v: u32) -> Self {
        self.slots.push(v as u64);
        self
    }
    /// A 32-bit float.
    pub fn f32(mut self, v: f32) -> Self {
        self.slots.push(v.to_bits() as u64);
        self
    }
    /// A 64-bit float.
    pub fn f64(mut self, v: f64) -> Self {
        self.slots.push(v.to_bits());
        self
    }
}

/// Grid and block shape of a launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchConfig {
    /// Blocks in x, y, z.
    pub grid: (u32, u32, u32),
    /// Threads per block in x, y, z.
    pub block: (u32, u32, u32),
    /// Dynamic shared memory in bytes.
    pub shared_bytes: u32,
}

impl Function {
    /// The kernel's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Let launches of this kernel use up to `bytes` of dynamic shared
    /// memory (past the default 48 KiB, on NVIDIA: the function attribute
    /// `MAX_DYNAMIC_SHARED_SIZE_BYTES`). HIP needs no such step for the
    /// sizes its devices allow; there this does nothing.
    pub fn allow_dynamic_shared(&self, bytes: u32) -> Result<()> {
        let device = &self.module.device;
        device.bind()?;
        let api = device.api();
        match &api.specific {
            Specific::Cuda(c) => {
                let Some(set) = c.func_set_attribute else {
                    return Err(RuntimeError::Invalid(
                        "cuFuncSetAttribute is missing from the CUDA driver".into(),
                    ));
                };
                let value = c_int::try_from(bytes).map_err(|_| {
                    RuntimeError::Invalid(format!("{bytes} bytes of shared memory"))
                })?;
                // SAFETY: `self.raw` is a live function of a loaded module;
                // the attribute id and value are plain integers.
                api.check("func_set_attribute", unsafe {
                    set(self.raw, FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED, value)
                })
            }
            Specific::Hip(_) => Ok(()),
        }
    }

    /// Launch on `stream`.
    ///
    /// # Safety
    /// `args` must match the kernel's parameter list (count, order and size of
    /// each), and every pointer argument must address device memory of the
    /// stream's device that is large enough for what the kernel touches and
    /// stays alive until the launch has completed.
    pub unsafe fn launch(
        &self,
        stream: &Stream,
        cfg: LaunchConfig,
        args: &KernelArgs,
    ) -> Result<()> {
        if !Arc::ptr_eq(&self.module.device, &stream.device) {
            return Err(RuntimeError::Invalid(format!(
                "kernel {} launched on a stream of another device",
                self.name
            )));
        }
        let (g, b) = (cfg.grid, cfg.block);
        if g.0 == 0 || g.1 == 0 || g.2 == 0 || self.skipped {
            return Ok(());
        }
        stream.device.bind()?;
        let mut slots = args.slots.clone();
        let mut ptrs: Vec<*mut c_void> = slots
            .iter_mut()
            .map(|s| s as *mut u64 as *mut c_void)
            .collect();
        let api = stream.device.api();
        let ex = match &api.specific {
            Specific::Cuda(c) if stream.device.overlapped_launches() => c.launch_kernel_ex,
            _ => None,
        };
        let status = match ex {
            Some(launch_ex) => {
                let mut attr = LaunchAttribute {
                    id: LAUNCH_ATTRIBUTE_PROGRAMMATIC_SERIALIZATION,
                    pad: [0; 4],
                    value: [0; 64],
                };
                attr.value[..4].copy_from_slice(&1i32.to_ne_bytes());
                let config = LaunchConfigEx {
                    grid: [g.0, g.1, g.2],
                    block: [b.0, b.1, b.2],
                    shared_bytes: cfg.shared_bytes,
                    stream: stream.raw,
                    attrs: &mut attr,
                    num_attrs: 1,
                };
                // SAFETY: `config` and `attr` (cuda.h layouts) and the
                // parameter array pointing at `slots` are alive for the call
                // (the driver copies them); the caller guarantees the
                // argument list and the memory it refers to, and the kernel
                // waits for its predecessor itself (`RF_GRID_SYNC`).
                unsafe { launch_ex(&config, self.raw, ptrs.as_mut_ptr(), std::ptr::null_mut()) }
            }
            // SAFETY: the parameter array points at `slots`, alive for the
            // call (the driver copies the values at launch); the caller
            // guarantees the argument list and the memory it refers to.
            None => unsafe {
                (api.common.launch_kernel)(
                    self.raw,
                    g.0,
                    g.1,
                    g.2,
                    b.0,
                    b.1,
                    b.2,
                    cfg.shared_bytes,
                    stream.raw,
                    ptrs.as_mut_ptr(),
                    std::ptr::null_mut(),
                )
            },
        };
        api.check("launch_kernel", status).map_err(|e| match e {
            RuntimeError::Api {
                name,
                description,
                code,
                ..
            } => RuntimeError::Api {
                call: "launch_kernel",
                code,
                name,
                description: format!(
                    "{description} (kernel `{}`, grid {g:?}, block {b:?})",
                    self.name
                ),
            },
            e => e,
        })
    }
}
