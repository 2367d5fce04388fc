//! `gpu-runtime`: the GPU driver APIs rocmforge uses, loaded at run time.
//!
//! One binary, built without any GPU SDK, drives AMD GPUs through HIP's
//! module API (`libamdhip64.so`) and NVIDIA GPUs through the CUDA driver API
//! (`libcuda.so.1`); nothing is linked at build time. The two APIs have the
//! same shape, so one function table ([`Vendor`] says which) backs RAII types:
//! [`Device`] (and its primary context), [`Stream`], [`Event`],
//! [`DeviceBuffer`], [`Module`], [`Function`], [`Graph`]. Errors carry the
//! vendor's own error name and description ([`RuntimeError::Api`]).
//!
//! Thread rule: see [`device`]'s docs. In short, one primary context per
//! device, made current on whichever thread calls; all types are
//! `Send + Sync`.
//!
//! [`rtc`] compiles kernel sources at run time (NVRTC / hiprtc, also loaded
//! at run time) and caches the code objects on disk.

#![warn(missing_docs)]

pub mod device;
mod error;
mod ffi;
mod graph;
mod memory;
mod module;
pub mod rtc;
mod stream;

pub use device::{Device, DeviceProps, Runtime};
pub use error::{Result, RuntimeError};
pub use ffi::{DevPtr, Vendor};
pub use graph::Graph;
pub use memory::DeviceBuffer;
pub use module::{Function, KernelArgs, LaunchConfig, Module};
pub use stream::{Event, Stream};

/// Why no GPU can be used, or the device that can: loads a runtime (HIP
/// first, then CUDA; `ROCMFORGE_GPU_RUNTIME=hip|cuda` forces one) and opens
/// device `ordinal`.
pub fn probe(ordinal: usize) -> Result<std::sync::Arc<Device>> {
    let rt = Runtime::load_any()?;
    Device::open(&rt, ordinal)
}
