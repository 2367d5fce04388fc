//! The function table: raw entry points of the CUDA driver API or of HIP's
//! module API, loaded from the shared library at run time.
//!
//! The two APIs have the same shape for everything we use (a status code
//! returned, out-parameters by pointer, opaque handles as pointers, device
//! pointers as 64-bit integers), so one table of function pointers serves
//! both; the few calls whose signatures differ are kept per vendor.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};

use libloading::Library;

use crate::error::{Result, RuntimeError};

/// Which GPU API a runtime speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vendor {
    /// AMD ROCm, through `libamdhip64.so`.
    Hip,
    /// NVIDIA, through the CUDA driver API in `libcuda.so.1`.
    Cuda,
}

impl Vendor {
    /// A short lowercase name ("hip", "cuda").
    pub fn name(self) -> &'static str {
        match self {
            Vendor::Hip => "hip",
            Vendor::Cuda => "cuda",
        }
    }

    /// The library file names tried, in order.
    pub fn library_names(self) -> &'static [&'static str] {
        match self {
            Vendor::Hip => &[
                "libamdhip64.so",
                "libamdhip64.so.6",
                "libamdhip64.so.5",
                "libamdhip64.so.7",
            ],
            Vendor::Cuda => &["libcuda.so.1", "libcuda.so"],
        }
    }
}

/// A status code (`CUresult` / `hipError_t`); 0 is success in both.
pub type Status = c_int;
/// An opaque handle (context, stream, event, module, function, graph).
pub type Handle = *mut c_void;
/// A device address.
pub type DevPtr = u64;

type FnStatusOut<T> = unsafe extern "C" fn(*mut T) -> Status;

/// The entry points shared by both vendors (same C signatures).
pub(crate) struct Common {
    pub init: unsafe extern "C" fn(c_uint) -> Status,
    pub driver_version: FnStatusOut<c_int>,
    pub device_count: FnStatusOut<c_int>,
    pub device_get: unsafe extern "C" fn(*mut c_int, c_int) -> Status,
    pub device_name: unsafe extern "C" fn(*mut c_char, c_int, c_int) -> Status,
    pub device_attribute: unsafe extern "C" fn(*mut c_int, c_int, c_int) -> Status,
    pub device_total_mem: unsafe extern "C" fn(*mut usize, c_int) -> Status,
    pub mem_get_info: unsafe extern "C" fn(*mut usize, *mut usize) -> Status,
    pub mem_alloc: unsafe extern "C" fn(*mut DevPtr, usize) -> Status,
    pub mem_free: unsafe extern "C" fn(DevPtr) -> Status,
    pub memcpy_htod_async: unsafe extern "C" fn(DevPtr, *const c_void, usize, Handle) -> Status,
    pub memcpy_dtoh_async: unsafe extern "C" fn(*mut c_void, DevPtr, usize, Handle) -> Status,
    pub memcpy_dtod_async: unsafe extern "C" fn(DevPtr, DevPtr, usize, Handle) -> Status,
    pub memset_d8_async: unsafe extern "C" fn(DevPtr, u8, usize, Handle) -> Status,
    pub stream_create: unsafe extern "C" fn(*mut Handle, c_uint) -> Status,
    pub stream_destroy: unsafe extern "C" fn(Handle) -> Status,
    pub stream_synchronize: unsafe extern "C" fn(Handle) -> Status,
    pub event_create: unsafe extern "C" fn(*mut Handle, c_uint) -> Status,
    pub event_record: unsafe extern "C" fn(Handle, Handle) -> Status,
    pub event_synchronize: unsafe extern "C" fn(Handle) -> Status,
    pub event_elapsed: unsafe extern "C" fn(*mut f32, Handle, Handle) -> Status,
    pub event_destroy: unsafe extern "C" fn(Handle) -> Status,
    pub module_load_data: unsafe extern "C" fn(*mut Handle, *const c_void) -> Status,
    pub module_unload: unsafe extern "C" fn(Handle) -> Status,
    pub module_get_function: unsafe extern "C" fn(*mut Handle, Handle, *const c_char) -> Status,
    #[allow(clippy::type_complexity)]
    pub launch_kernel: unsafe extern "C" fn(
        Handle,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        Handle,
        *mut *mut c_void,
        *mut *mut c_void,
    ) -> Status,
    pub stream_begin_capture: unsafe extern "C" fn(Handle, c_int) -> Status,
    pub stream_end_capture: unsafe extern "C" fn(Handle, *mut Handle) -> Status,
    pub graph_launch: unsafe extern "C" fn(Handle, Handle) -> Status,
    pub graph_exec_destroy: unsafe extern "C" fn(Handle) -> Status,
    pub graph_destroy: unsafe extern "C" fn(Handle) -> Status,
}

/// `CUlaunchAttribute` of cuda.h: an id padded to 8 bytes, then a 64-byte
/// value (a union whose first member we use is an `int`).
#[repr(C, align(8))]
pub(crate) struct LaunchAttribute {
    pub id: c_int,
    pub pad: [u8; 4],
    pub value: [u8; 64],
}

/// `CUlaunchConfig` of cuda.h (the argument of `cuLaunchKernelEx`).
#[repr(C)]
pub(crate) struct LaunchConfigEx {
    pub grid: [c_uint; 3],
    pub block: [c_uint; 3],
    pub shared_bytes: c_uint,
    pub stream: Handle,
    pub attrs: *mut LaunchAttribute,
    pub num_attrs: c_uint,
}

/// `CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION`: the kernel may
/// start before the previous kernel of the stream has finished (it waits
/// for it itself with `griddepcontrol.wait`).
pub(crate) const LAUNCH_ATTRIBUTE_PROGRAMMATIC_SERIALIZATION: c_int = 6;

/// `cuLaunchKernelEx`.
pub(crate) type LaunchKernelEx = unsafe extern "C" fn(
    *const LaunchConfigEx,
    Handle,
    *mut *mut c_void,
    *mut *mut c_void,
) -> Status;

/// CUDA-only entry points.
pub(crate) struct CudaOnly {
    pub get_error_name: unsafe extern "C" fn(Status, *mut *const c_char) -> Status,
    pub get_error_string: unsafe extern "C" fn(Status, *mut *const c_char) -> Status,
    pub primary_ctx_retain: unsafe extern "C" fn(*mut Handle, c_int) -> Status,
    pub primary_ctx_release: unsafe extern "C" fn(c_int) -> Status,
    pub ctx_set_current: unsafe extern "C" fn(Handle) -> Status,
    pub graph_instantiate: unsafe extern "C" fn(*mut Handle, Handle, u64) -> Status,
    /// Missing before CUDA 12.
    pub launch_kernel_ex: Option<LaunchKernelEx>,
    /// `cuFuncSetAttribute` (function, attribute, value).
    pub func_set_attribute: Option<unsafe extern "C" fn(Handle, c_int, c_int) -> Status>,
}

/// `CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES`.
pub(crate) const FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED: c_int = 8;

/// HIP-only entry points.
pub(crate) struct HipOnly {
    pub get_error_name: unsafe extern "C" fn(Status) -> *const c_char,
    pub get_error_string: unsafe extern "C" fn(Status) -> *const c_char,
    pub set_device: unsafe extern "C" fn(c_int) -> Status,
    pub get_device_properties: unsafe extern "C" fn(*mut c_void, c_int) -> Status,
    pub graph_instantiate:
        unsafe extern "C" fn(*mut Handle, Handle, *mut Handle, *mut c_char, usize) -> Status,
}

/// The vendor-specific part of the table.
pub(crate) enum Specific {
    Cuda(CudaOnly),
    Hip(HipOnly),
}

/// A loaded runtime library and its entry points.
pub(crate) struct Api {
    pub vendor: Vendor,
    pub library_name: String,
    pub common: Common,
    pub specific: Specific,
    // Kept last so that it is dropped after nothing can call through the table.
    _lib: Library,
}

/// Look a symbol up and copy the function pointer out of the library.
///
/// # Safety
/// `T` must be the exact C signature of the symbol.
unsafe fn sym<T: Copy>(lib: &Library, library: &str, names: &[&str]) -> Result<T> {
    for name in names {
        let cname = format!("{name}\0");
        // SAFETY: the caller guarantees `T` matches the symbol's C signature;
        // the pointer stays valid while `lib` is loaded, and `Api` keeps `lib`
        // alive for as long as the pointers can be called.
        if let Ok(s) = unsafe { lib.get::<T>(cname.as_bytes()) } {
            return Ok(*s);
        }
    }
    Err(RuntimeError::MissingSymbol {
        library: library.to_string(),
        symbol: names.join(" / "),
    })
}

impl Api {
    /// Load the vendor's library and resolve every entry point.
    pub fn load(vendor: Vendor) -> Result<Api> {
        let mut errors = Vec::new();
        for name in vendor.library_names() {
            // SAFETY: loading a vendor runtime runs its initialisers; these are
            // the system's own GPU runtime libraries, which are designed to be
            // loaded into arbitrary processes.
            match unsafe { Library::new(name) } {
                Ok(lib) => return Self::resolve(vendor, name, lib),
                Err(e) => errors.push(format!("{name}: {e}")),
            }
        }
        Err(RuntimeError::LibraryNotFound(errors.join("; ")))
    }

    fn resolve(vendor: Vendor, name: &str, lib: Library) -> Result<Api> {
        let l = &lib;
        // SAFETY (all `sym` calls below): each function-pointer type was
        // written from the vendor's header for that symbol (CUDA 12/13
        // `cuda.h`, ROCm `hip_runtime_api.h`).
        let (common, specific) = unsafe {
            match vendor {
                Vendor::Cuda => (
                    Common {
                        init: sym(l, name, &["cuInit"])?,
                        driver_version: sym(l, name, &["cuDriverGetVersion"])?,
                        device_count: sym(l, name, &["cuDeviceGetCount"])?,
                        device_get: sym(l, name, &["cuDeviceGet"])?,
                        device_name: sym(l, name, &["cuDeviceGetName"])?,
                        device_attribute: sym(l, name, &["cuDeviceGetAttribute"])?,
                        device_total_mem: sym(l, name, &["cuDeviceTotalMem_v2"])?,
                        mem_get_info: sym(l, name, &["cuMemGetInfo_v2"])?,
                        mem_alloc: sym(l, name, &["cuMemAlloc_v2"])?,
                        mem_free: sym(l, name, &["cuMemFree_v2"])?,
                        memcpy_htod_async: sym(l, name, &["cuMemcpyHtoDAsync_v2"])?,
                        memcpy_dtoh_async: sym(l, name, &["cuMemcpyDtoHAsync_v2"])?,
                        memcpy_dtod_async: sym(l, name, &["cuMemcpyDtoDAsync_v2"])?,
                        memset_d8_async: sym(l, name, &["cuMemsetD8Async"])?,
                        stream_create: sym(l, name, &["cuStreamCreate"])?,
                        stream_destroy: sym(l, name, &["cuStreamDestroy_v2"])?,
                        stream_synchronize: sym(l, name, &["cuStreamSynchronize"])?,
                        event_create: sym(l, name, &["cuEventCreate"])?,
                        event_record: sym(l, name, &["cuEventRecord"])?,
                        event_synchronize: sym(l, name, &["cuEventSynchronize"])?,
                        event_elapsed: sym(
                            l,
                            name,
                            &["cuEventElapsedTime", "cuEventElapsedTime_v2"],
                        )?,
                        event_destroy: sym(l, name, &["cuEventDestroy_v2"])?,
                        module_load_data: sym(l, name, &["cuModuleLoadData"])?,
                        module_unload: sym(l, name, &["cuModuleUnload"])?,
                        module_get_function: sym(l, name, &["cuModuleGetFunction"])?,
                        launch_kernel: sym(l, name, &["cuLaunchKernel"])?,
                        stream_begin_capture: sym(l, name, &["cuStreamBeginCapture_v2"])?,
                        stream_end_capture: sym(l, name, &["cuStreamEndCapture"])?,
                        graph_launch: sym(l, name, &["cuGraphLaunch"])?,
                        graph_exec_destroy: sym(l, name, &["cuGraphExecDestroy"])?,
                        graph_destroy: sym(l, name, &["cuGraphDestroy"])?,
                    },
                    Specific::Cuda(CudaOnly {
                        get_error_name: sym(l, name, &["cuGetErrorName"])?,
                        get_error_string: sym(l, name, &["cuGetErrorString"])?,
                        primary_ctx_retain: sym(l, name, &["cuDevicePrimaryCtxRetain"])?,
                        primary_ctx_release: sym(l, name, &["cuDevicePrimaryCtxRelease_v2"])?,
                        ctx_set_current: sym(l, name, &["cuCtxSetCurrent"])?,
                        graph_instantiate: sym(l, name, &["cuGraphInstantiateWithFlags"])?,
                        launch_kernel_ex: sym(l, name, &["cuLaunchKernelEx"]).ok(),
                        func_set_attribute: sym(l, name, &["cuFuncSetAttribute"]).ok(),
                    }),
                ),
                Vendor::Hip => (
                    Common {
                        init: sym(l, name, &["hipInit"])?,
                        driver_version: sym(l, name, &["hipDriverGetVersion"])?,
                        device_count: sym(l, name, &["hipGetDeviceCount"])?,
                        device_get: sym(l, name, &["hipDeviceGet"])?,
                        device_name: sym(l, name, &["hipDeviceGetName"])?,
                        device_attribute: sym(l, name, &["hipDeviceGetAttribute"])?,
                        device_total_mem: sym(l, name, &["hipDeviceTotalMem"])?,
                        mem_get_info: sym(l, name, &["hipMemGetInfo"])?,
                        mem_alloc: sym(l, name, &["hipMalloc"])?,
                        mem_free: sym(l, name, &["hipFree"])?,
                        memcpy_htod_async: sym(l, name, &["hipMemcpyHtoDAsync"])?,
                        memcpy_dtoh_async: sym(l, name, &["hipMemcpyDtoHAsync"])?,
                        memcpy_dtod_async: sym(l, name, &["hipMemcpyDtoDAsync"])?,
                        memset_d8_async: sym(l, name, &["hipMemsetD8Async"])?,
                        stream_create: sym(l, name, &["hipStreamCreateWithFlags"])?,
                        stream_destroy: sym(l, name, &["hipStreamDestroy"])?,
                        stream_synchronize: sym(l, name, &["hipStreamSynchronize"])?,
                        event_create: sym(l, name, &["hipEventCreateWithFlags"])?,
                        event_record: sym(l, name, &["hipEventRecord"])?,
                        event_synchronize: sym(l, name, &["hipEventSynchronize"])?,
                        event_elapsed: sym(l, name, &["hipEventElapsedTime"])?,
                        event_destroy: sym(l, name, &["hipEventDestroy"])?,
                        module_load_data: sym(l, name, &["hipModuleLoadData"])?,
                        module_unload: sym(l, name, &["hipModuleUnload"])?,
                        module_get_function: sym(l, name, &["hipModuleGetFunction"])?,
                        launch_kernel: sym(l, name, &["hipModuleLaunchKernel"])?,
                        stream_begin_capture: sym(l, name, &["hipStreamBeginCapture"])?,
                        stream_end_capture: sym(l, name, &["hipStreamEndCapture"])?,
                        graph_launch: sym(l, name, &["hipGraphLaunch"])?,
                        graph_exec_destroy: sym(l, name, &["hipGraphExecDestroy"])?,
                        graph_destroy: sym(l, name, &["hipGraphDestroy"])?,
                    },
                    Specific::Hip(HipOnly {
                        get_error_name: sym(l, name, &["hipGetErrorName"])?,
                        get_error_string: sym(l, name, &["hipGetErrorString"])?,
                        set_device: sym(l, name, &["hipSetDevice"])?,
                        get_device_properties: sym(
                            l,
                            name,
                            &["hipGetDevicePropertiesR0600", "hipGetDeviceProperties"],
                        )?,
                        graph_instantiate: sym(l, name, &["hipGraphInstantiate"])?,
                    }),
                ),
            }
        };
        Ok(Api {
            vendor,
            library_name: name.to_string(),
            common,
            specific,
            _lib: lib,
        })
    }

    /// Turn a status code into `Ok` or an error naming `call`.
    pub fn check(&self, call: &'static str, status: Status) -> Result<()> {
        if status == 0 {
            return Ok(());
        }
        let (name, description) = self.describe(status);
        Err(RuntimeError::Api {
            call,
            code: status,
            name,
            description,
        })
    }

    /// The vendor's name and description for a status code.
    pub fn describe(&self, status: Status) -> (String, String) {
        let read = |p: *const c_char| {
            if p.is_null() {
                "unknown error".to_string()
            } else {
                // SAFETY: the runtimes return pointers to static NUL-terminated strings.
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            }
        };
        match &self.specific {
            Specific::Cuda(c) => {
                let mut name: *const c_char = std::ptr::null();
                let mut desc: *const c_char = std::ptr::null();
                // SAFETY: both calls only write a pointer into the out-parameter.
                unsafe {
                    (c.get_error_name)(status, &mut name);
                    (c.get_error_string)(status, &mut desc);
                }
                (read(name), read(desc))
            }
            // SAFETY: both functions take a code and return a static string.
            Specific::Hip(h) => unsafe {
                (
                    read((h.get_error_name)(status)),
                    read((h.get_error_string)(status)),
                )
            },
        }
    }
}
