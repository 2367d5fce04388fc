//! Device memory: typed buffers freed on drop, copies and fills.

use std::marker::PhantomData;
use std::sync::Arc;

use bytemuck::Pod;

use crate::device::Device;
use crate::error::{Result, RuntimeError};
use crate::ffi::DevPtr;
use crate::stream::Stream;

/// `len` elements of `T` in device memory, freed on drop.
pub struct DeviceBuffer<T: Pod> {
    device: Arc<Device>,
    ptr: DevPtr,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Pod> std::fmt::Debug for DeviceBuffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DeviceBuffer<{}>({:#x}, {})",
            std::any::type_name::<T>(),
            self.ptr,
            self.len
        )
    }
}

impl<T: Pod> DeviceBuffer<T> {
    /// Allocate `len` uninitialised elements. A zero-length buffer allocates nothing.
    pub fn alloc(device: &Arc<Device>, len: usize) -> Result<Self> {
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .ok_or_else(|| RuntimeError::Invalid(format!("buffer of {len} elements overflows")))?;
        let mut ptr: DevPtr = 0;
        if bytes > 0 {
            device.bind()?;
            let api = device.api();
            // SAFETY: writes one device pointer; freed in Drop.
            api.check("mem_alloc", unsafe {
                (api.common.mem_alloc)(&mut ptr, bytes)
            })?;
        }
        Ok(DeviceBuffer {
            device: device.clone(),
            ptr,
            len,
            _t: PhantomData,
        })
    }

    /// Allocate `len` zeroed elements (ordered on `stream`).
    pub fn zeroed(stream: &Stream, len: usize) -> Result<Self> {
        let b = Self::alloc(&stream.device, len)?;
        b.fill_zero(stream)?;
        Ok(b)
    }

    /// Allocate and fill with `data`; returns once the copy has completed.
    pub fn from_host(stream: &Stream, data: &[T]) -> Result<Self> {
        let mut b = Self::alloc(&stream.device, data.len())?;
        b.copy_from_host(stream, data)?;
        Ok(b)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Size in bytes.
    pub fn bytes(&self) -> usize {
        self.len * std::mem::size_of::<T>()
    }

    /// The device address (for kernel arguments).
    pub fn device_ptr(&self) -> DevPtr {
        self.ptr
    }

    /// The device owning the memory.
    pub fn device(&self) -> &Arc<Device> {
        &self.device
    }

    fn check_stream(&self, stream: &Stream) -> Result<()> {
        if !Arc::ptr_eq(&self.device, &stream.device) {
            return Err(RuntimeError::Invalid(
                "buffer and stream belong to different devices".into(),
            ));
        }
        stream.device.bind()
    }

    /// Fill with zero bytes (asynchronous on `stream`).
    pub fn fill_zero(&self, stream: &Stream) -> Result<()> {
        self.fill_zero_first(stream, self.len)
    }

    /// Fill the first `len` elements (at most all of them) with zero bytes
    /// (asynchronous on `stream`).
    pub fn fill_zero_first(&self, stream: &Stream, len: usize) -> Result<()> {
        self.check_stream(stream)?;
        let len = len.min(self.len);
        if len == 0 {
            return Ok(());
        }
        let api = self.device.api();
        // SAFETY: the range (len ≤ self.len elements) is inside this allocation.
        api.check("memset_d8_async", unsafe {
            (api.common.memset_d8_async)(self.ptr, 0, len * std::mem::size_of::<T>(), stream.raw)
        })
    }

    /// Copy `data` (exactly `len` elements) in; returns once the copy is done.
    pub fn copy_from_host(&mut self, stream: &Stream, data: &[T]) -> Result<()> {
        self.copy_from_host_at(stream, 0, data)
    }

    /// Copy `data` to elements `offset..offset + data.len()`; returns once done.
    pub fn copy_from_host_at(&mut self, stream: &Stream, offset: usize, data: &[T]) -> Result<()> {
        // SAFETY: `data` is borrowed until the stream has been synchronised
        // below, which runs the copy.
        unsafe { self.copy_from_host_async(stream, offset, data) }?;
        if data.is_empty() {
            return Ok(());
        }
        stream.synchronize()
    }

    /// Copy `data` to elements `offset..offset + data.len()` without waiting:
    /// the copy runs in stream order.
    ///
    /// # Safety
    /// `data` must stay alive and unchanged until the stream has reached the
    /// copy (for example until the next synchronisation of `stream`).
    pub unsafe fn copy_from_host_async(
        &mut self,
        stream: &Stream,
        offset: usize,
        data: &[T],
    ) -> Result<()> {
        self.check_stream(stream)?;
        if offset
            .checked_add(data.len())
            .is_none_or(|end| end > self.len)
        {
            return Err(RuntimeError::Invalid(format!(
                "host copy of {} elements at {offset} into a buffer of {}",
                data.len(),
                self.len
            )));
        }
        if data.is_empty() {
            return Ok(());
        }
        let api = self.device.api();
        let sz = std::mem::size_of::<T>();
        // SAFETY: the destination range is inside the allocation (checked
        // above); the caller keeps the source alive until the copy has run.
        api.check("memcpy_htod_async", unsafe {
            (api.common.memcpy_htod_async)(
                self.ptr + (offset * sz) as u64,
                data.as_ptr() as *const _,
                std::mem::size_of_val(data),
                stream.raw,
            )
        })
    }

    /// Copy everything out into `out` (exactly `len` elements); returns once done.
    pub fn copy_to_host(&self, stream: &Stream, out: &mut [T]) -> Result<()> {
        if out.len() != self.len {
            return Err(RuntimeError::Invalid(format!(
                "host buffer of {} elements for a device buffer of {}",
                out.len(),
                self.len
            )));
        }
        self.copy_prefix_to_host(stream, out)
    }

    /// Copy the first `out.len()` elements (at most `len`) into `out`;
    /// returns once done.
    pub fn copy_prefix_to_host(&self, stream: &Stream, out: &mut [T]) -> Result<()> {
        self.check_stream(stream)?;
        if out.len() > self.len {
            return Err(RuntimeError::Invalid(format!(
                "host buffer of {} elements for a device buffer of {}",
                out.len(),
                self.len
            )));
        }
        if out.is_empty() {
            return Ok(());
        }
        let api = self.device.api();
        // SAFETY: `out` holds `size_of_val(out)` bytes, no more than the
        // allocation (checked above); it is borrowed mutably until the
        // stream has been synchronised below.
        api.check("memcpy_dtoh_async", unsafe {
            (api.common.memcpy_dtoh_async)(
                out.as_mut_ptr() as *mut _,
                self.ptr,
                std::mem::size_of_val(out),
                stream.raw,
            )
        })?;
        stream.synchronize()
    }

    /// Copy everything out into a new vector.
    pub fn to_host(&self, stream: &Stream) -> Result<Vec<T>> {
        let mut v = vec![T::zeroed(); self.len];
        self.copy_to_host(stream, &mut v)?;
        Ok(v)
    }

    /// Copy `len` elements from `src[src_off..]` to `self[dst_off..]` on the device
    /// (asynchronous on `stream`).
    pub fn copy_from_device(
        &mut self,
        stream: &Stream,
        dst_off: usize,
        src: &DeviceBuffer<T>,
        src_off: usize,
        len: usize,
    ) -> Result<()> {
        self.check_stream(stream)?;
        if dst_off.checked_add(len).is_none_or(|e| e > self.len)
            || src_off.checked_add(len).is_none_or(|e| e > src.len)
        {
            return Err(RuntimeError::Invalid(format!(
                "device copy of {len} elements ({src_off} of {} -> {dst_off} of {}) out of range",
                src.len, self.len
            )));
        }
        if len == 0 {
            return Ok(());
        }
        let api = self.device.api();
        let sz = std::mem::size_of::<T>() as u64;
        // SAFETY: both ranges are inside their allocations (checked above).
        api.check("memcpy_dtod_async", unsafe {
            (api.common.memcpy_dtod_async)(
                self.ptr + dst_off as u64 * sz,
                src.ptr + src_off as u64 * sz,
                len * sz as usize,
                stream.raw,
            )
        })
    }
}

impl<T: Pod> Drop for DeviceBuffer<T> {
    fn drop(&mut self) {
        if self.ptr != 0 && self.device.bind().is_ok() {
            let api = self.device.api();
            // SAFETY: allocated in `alloc`, freed once. The CUDA and HIP frees
            // synchronise with outstanding work on the pointer's device.
            unsafe { (api.common.mem_free)(self.ptr) };
        }
    }
}
