//! Runtimes and devices.
//!
//! # Context and thread rule
//!
//! Each [`Device`] owns exactly one context: the device's *primary* context
//! (CUDA), or the device selected with `hipSetDevice` (HIP, whose runtime
//! keeps one primary context per device). Every call this crate makes on a
//! device's behalf first makes that context current **on the calling
//! thread** ([`Device::bind`]). So a `Device` (it is `Send + Sync`, shared
//! through an `Arc`) and everything made from it (buffers, streams, modules,
//! graphs) may be used from any thread, concurrently; no thread ever creates
//! its own context, and nothing relies on which context a thread had before.
//! Work submitted to one [`crate::Stream`] runs in submission order; work on
//! different streams may overlap.

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void};
use std::sync::Arc;

use crate::error::{Result, RuntimeError};
use crate::ffi::{Api, Handle, Specific, Vendor};

/// A loaded GPU runtime (one vendor library), shared by its devices.
pub struct Runtime {
    pub(crate) api: Api,
    driver_version: i32,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("vendor", &self.api.vendor)
            .field("library", &self.api.library_name)
            .field("driver_version", &self.driver_version)
            .finish()
    }
}

impl Runtime {
    /// Load and initialise one vendor's runtime.
    pub fn load(vendor: Vendor) -> Result<Arc<Runtime>> {
        let api = Api::load(vendor)?;
        // SAFETY: `init` takes a flags word (must be 0) and has no other inputs.
        api.check("init", unsafe { (api.common.init)(0) })?;
        let mut v = 0;
        // SAFETY: writes one int into `v`.
        api.check("driver_version", unsafe {
            (api.common.driver_version)(&mut v)
        })?;
        Ok(Arc::new(Runtime {
            api,
            driver_version: v,
        }))
    }

    /// Try the vendors in order (`ROCMFORGE_GPU_RUNTIME=hip|cuda` picks one)
    /// and return the first whose runtime loads and reports a device, or the
    /// reasons every one failed.
    pub fn load_any() -> Result<Arc<Runtime>> {
        let order: Vec<Vendor> = match std::env::var("ROCMFORGE_GPU_RUNTIME").ok().as_deref() {
            Some("hip") => vec![Vendor::Hip],
            Some("cuda") => vec![Vendor::Cuda],
            _ => vec![Vendor::Hip, Vendor::Cuda],
        };
        let mut reasons = Vec::new();
        for v in order {
            match Runtime::load(v).and_then(|rt| match rt.device_count()? {
                0 => Err(RuntimeError::NoDevice {
                    ordinal: 0,
                    count: 0,
                }),
                _ => Ok(rt),
            }) {
                Ok(rt) => return Ok(rt),
                Err(e) => reasons.push(format!("{}: {e}", v.name())),
            }
        }
        Err(RuntimeError::LibraryNotFound(reasons.join("; ")))
    }

    /// The vendor.
    pub fn vendor(&self) -> Vendor {
        self.api.vendor
    }

    /// The library file that was loaded.
    pub fn library_name(&self) -> &str {
        &self.api.library_name
    }

    /// The driver version as the runtime reports it (e.g. 13000 for CUDA 13.0).
    pub fn driver_version(&self) -> i32 {
        self.driver_version
    }

    /// Number of devices.
    pub fn device_count(&self) -> Result<usize> {
        let mut n: c_int = 0;
        // SAFETY: writes one int.
        self.api.check("device_count", unsafe {
            (self.api.common.device_count)(&mut n)
        })?;
        Ok(n.max(0) as usize)
    }
}

/// What a device is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceProps {
    /// Marketing name ("NVIDIA H200", "AMD Instinct MI300X").
    pub name: String,
    /// Architecture as compilers name it: `sm_90`, `gfx90a`, `gfx1100`.
    pub arch: String,
    /// Threads per wave (32 on NVIDIA and RDNA, 64 on CDNA/GCN).
    pub wave_size: u32,
    /// Streaming multiprocessors / compute units.
    pub compute_units: u32,
    /// Total device memory in bytes.
    pub total_memory: usize,
    /// Largest thread block.
    pub max_threads_per_block: u32,
    /// Shared (LDS) memory per block in bytes.
    pub shared_memory_per_block: u32,
}

/// One GPU and its (primary) context. See the module docs for the thread rule.
pub struct Device {
    pub(crate) rt: Arc<Runtime>,
    ordinal: usize,
    handle: c_int,
    context: Handle,
    props: DeviceProps,
    /// Kernels are launched as programmatic dependents of the previous one
    /// (see [`Device::overlapped_launches`]).
    overlapped_launches: bool,
}

// SAFETY: the context handle is a process-wide object of the driver; the
// driver's API is thread-safe, and every use binds it to the calling thread
// first (see `bind`).
unsafe impl Send for Device {}
// SAFETY: as above; `Device` has no interior mutability of its own.
unsafe impl Sync for Device {}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("vendor", &self.rt.vendor())
            .field("ordinal", &self.ordinal)
            .field("props", &self.props)
            .finish()
    }
}

thread_local! {
    /// The context (CUDA) or device ordinal + 1 (HIP) last made current on this thread.
    static BOUND: Cell<usize> = const { Cell::new(0) };
}

// CUDA driver attribute ids (cuda.h `CUdevice_attribute`).
const CU_MAX_THREADS_PER_BLOCK: c_int = 1;
const CU_MAX_SHARED_PER_BLOCK: c_int = 8;
const CU_WARP_SIZE: c_int = 10;
const CU_MULTIPROCESSOR_COUNT: c_int = 16;
const CU_CC_MAJOR: c_int = 75;
const CU_CC_MINOR: c_int = 76;
// HIP attribute ids (hip_runtime_api.h `hipDeviceAttribute_t`, ROCm 5.x/6.x).
const HIP_MAX_THREADS_PER_BLOCK: c_int = 56;
const HIP_MULTIPROCESSOR_COUNT: c_int = 63;
const HIP_MAX_SHARED_PER_BLOCK: c_int = 74;
const HIP_WARP_SIZE: c_int = 87;

impl Device {
    /// Open device `ordinal` of `rt` (retains its primary context).
    pub fn open(rt: &Arc<Runtime>, ordinal: usize) -> Result<Arc<Device>> {
        let count = rt.device_count()?;
        if ordinal >= count {
            return Err(RuntimeError::NoDevice { ordinal, count });
        }
        let api = &rt.api;
        let mut handle: c_int = 0;
        // SAFETY: writes one device handle (an int in both APIs).
        api.check("device_get", unsafe {
            (api.common.device_get)(&mut handle, ordinal as c_int)
        })?;
        let context = match &api.specific {
            Specific::Cuda(c) => {
                let mut ctx: Handle = std::ptr::null_mut();
                // SAFETY: writes the primary context handle; released in Drop.
                api.check("cuDevicePrimaryCtxRetain", unsafe {
                    (c.primary_ctx_retain)(&mut ctx, handle)
                })?;
                ctx
            }
            Specific::Hip(_) => std::ptr::null_mut(),
        };
        let mut dev = Device {
            rt: rt.clone(),
            ordinal,
            handle,
            context,
            props: DeviceProps {
                name: String::new(),
                arch: String::new(),
                wave_size: 0,
                compute_units: 0,
                total_memory: 0,
                max_threads_per_block: 0,
                shared_memory_per_block: 0,
            },
            overlapped_launches: false,
        };
        dev.bind()?;
        dev.props = dev.query_props()?;
        dev.overlapped_launches = dev.supports_overlapped_launches()
            && std::env::var_os("ROCMFORGE_GPU_NO_PDL").is_none_or(|v| v != "1");
        Ok(Arc::new(dev))
    }

    /// The runtime this device belongs to.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.rt
    }

    /// Its ordinal within the runtime.
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// Its properties.
    pub fn props(&self) -> &DeviceProps {
        &self.props
    }

    /// Whether kernels are launched so that each may start before the
    /// previous kernel of its stream has finished ("programmatic dependent
    /// launch": NVIDIA compute capability 9.0 and newer with CUDA 12+, off
    /// with `ROCMFORGE_GPU_NO_PDL=1`). Every kernel of `kernels/` begins with
    /// `RF_GRID_SYNC()`, which waits for that kernel before reading memory,
    /// so results are the same; the launch latency of the next kernel
    /// overlaps the end of the current one.
    pub fn overlapped_launches(&self) -> bool {
        self.overlapped_launches
    }

    fn supports_overlapped_launches(&self) -> bool {
        let Specific::Cuda(c) = &self.rt.api.specific else {
            return false;
        };
        let cc = self
            .props
            .arch
            .strip_prefix("sm_")
            .and_then(|v| {
                v.trim_end_matches(|ch: char| ch.is_ascii_alphabetic())
                    .parse::<u32>()
                    .ok()
            })
            .unwrap_or(0);
        c.launch_kernel_ex.is_some() && cc >= 90
    }

    /// Make this device's context current on the calling thread (cheap when
    /// it already is). Every method of this crate calls it; callers that use
    /// the raw API themselves must too.
    pub fn bind(&self) -> Result<()> {
        let api = &self.rt.api;
        let key = match &api.specific {
            Specific::Cuda(_) => self.context as usize,
            Specific::Hip(_) => self.ordinal + 1,
        };
        if BOUND.with(|b| b.get()) == key {
            return Ok(());
        }
        match &api.specific {
            // SAFETY: the context is retained for as long as `self` lives.
            Specific::Cuda(c) => api.check("cuCtxSetCurrent", unsafe {
                (c.ctx_set_current)(self.context)
            })?,
            // SAFETY: selects an existing device ordinal for this thread.
            Specific::Hip(h) => api.check("hipSetDevice", unsafe {
                (h.set_device)(self.ordinal as c_int)
            })?,
        }
        BOUND.with(|b| b.set(key));
        Ok(())
    }

    fn attribute(&self, attr: c_int) -> Result<i32> {
        let mut v: c_int = 0;
        let api = &self.rt.api;
        // SAFETY: writes one int; `attr` is a valid attribute id of this vendor.
        api.check("device_attribute", unsafe {
            (api.common.device_attribute)(&mut v, attr, self.handle)
        })?;
        Ok(v)
    }

    fn query_props(&self) -> Result<DeviceProps> {
        let api = &self.rt.api;
        let mut name_buf = [0 as c_char; 256];
        // SAFETY: writes at most 256 bytes including the NUL into `name_buf`.
        api.check("device_name", unsafe {
            (api.common.device_name)(name_buf.as_mut_ptr(), 256, self.handle)
        })?;
        // SAFETY: the runtime NUL-terminates the name inside the buffer (we zeroed it too).
        let name = unsafe { std::ffi::CStr::from_ptr(name_buf.as_ptr()) }
            .to_string_lossy()
            .trim()
            .to_string();
        let mut total = 0usize;
        // SAFETY: writes one size_t.
        api.check("device_total_mem", unsafe {
            (api.common.device_total_mem)(&mut total, self.handle)
        })?;
        match &api.specific {
            Specific::Cuda(_) => Ok(DeviceProps {
                name,
                arch: format!(
                    "sm_{}{}",
                    self.attribute(CU_CC_MAJOR)?,
                    self.attribute(CU_CC_MINOR)?
                ),
                wave_size: self.attribute(CU_WARP_SIZE)? as u32,
                compute_units: self.attribute(CU_MULTIPROCESSOR_COUNT)? as u32,
                total_memory: total,
                max_threads_per_block: self.attribute(CU_MAX_THREADS_PER_BLOCK)? as u32,
                shared_memory_per_block: self.attribute(CU_MAX_SHARED_PER_BLOCK)? as u32,
            }),
            Specific::Hip(h) => {
                // The properties struct's layout changes between ROCm
                // releases; we only need `gcnArchName`, which is the only
                // string in it starting with "gfx": find it in a buffer far
                // larger than any release's struct.
                let mut buf = vec![0u8; 16384];
                // SAFETY: the buffer is larger than hipDeviceProp_t of any ROCm release.
                api.check("hipGetDeviceProperties", unsafe {
                    (h.get_device_properties)(
                        buf.as_mut_ptr() as *mut c_void,
                        self.ordinal as c_int,
                    )
                })?;
                let arch = find_gfx_name(&buf[256..]).ok_or_else(|| {
                    RuntimeError::Invalid(
                        "hipGetDeviceProperties returned no gcnArchName".to_string(),
                    )
                })?;
                let attr_wave = self.attribute(HIP_WARP_SIZE).unwrap_or(0) as u32;
                let wave_size = if attr_wave == 32 || attr_wave == 64 {
                    attr_wave
                } else if arch.starts_with("gfx9") || arch.starts_with("gfx8") {
                    64
                } else {
                    32
                };
                Ok(DeviceProps {
                    name,
                    arch,
                    wave_size,
                    compute_units: self.attribute(HIP_MULTIPROCESSOR_COUNT).unwrap_or(0) as u32,
                    total_memory: total,
                    max_threads_per_block: self.attribute(HIP_MAX_THREADS_PER_BLOCK).unwrap_or(1024)
                        as u32,
                    shared_memory_per_block: self
                        .attribute(HIP_MAX_SHARED_PER_BLOCK)
                        .unwrap_or(65536) as u32,
                })
            }
        }
    }

    /// `(free, total)` device memory in bytes.
    pub fn mem_info(&self) -> Result<(usize, usize)> {
        self.bind()?;
        let (mut free, mut total) = (0usize, 0usize);
        let api = &self.rt.api;
        // SAFETY: writes two size_t values.
        api.check("mem_get_info", unsafe {
            (api.common.mem_get_info)(&mut free, &mut total)
        })?;
        Ok((free, total))
    }

    pub(crate) fn api(&self) -> &Api {
        &self.rt.api
    }
}

/// The first NUL-terminated ASCII string starting with "gfx" in `buf`,
/// without feature suffixes (`gfx90a:sramecc+:xnack-` -> `gfx90a`).
fn find_gfx_name(buf: &[u8]) -> Option<String> {
    let pos = buf.windows(3).position(|w| w == b"gfx")?;
    let rest = &buf[pos..];
    let end = rest.iter().position(|&b| b == 0 || b == b':')?;
    std::str::from_utf8(&rest[..end]).ok().map(str::to_string)
}

impl Drop for Device {
    fn drop(&mut self) {
        if let Specific::Cuda(c) = &self.rt.api.specific {
            BOUND.with(|b| {
                if b.get() == self.context as usize {
                    b.set(0)
                }
            });
            // SAFETY: releases the reference taken in `open`; nothing made from
            // this device outlives it (they hold an `Arc<Device>`).
            unsafe { (c.primary_ctx_release)(self.handle) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::find_gfx_name;

    #[test]
    fn gfx_name_is_found_and_trimmed() {
        let mut buf = vec![0u8; 64];
        buf[10..31].copy_from_slice(b"gfx90a:sramecc+:xnack");
        assert_eq!(find_gfx_name(&buf).as_deref(), Some("gfx90a"));
        let mut buf = vec![1u8; 16];
        buf.extend_from_slice(b"gfx1100\0");
        assert_eq!(find_gfx_name(&buf).as_deref(), Some("gfx1100"));
        assert_eq!(find_gfx_name(&[0u8; 32]), None);
    }
}
