//! Streams (ordered queues of device work) and events (timestamps in them).

use std::sync::Arc;

use crate::device::Device;
use crate::error::Result;
use crate::ffi::Handle;

/// An in-order queue of device work. Dropping it waits for its work first.
pub struct Stream {
    pub(crate) device: Arc<Device>,
    pub(crate) raw: Handle,
}

// SAFETY: stream handles are process-wide driver objects; the driver API is
// thread-safe and every call binds the device's context first.
unsafe impl Send for Stream {}
// SAFETY: as above; submitting to one stream from several threads is allowed
// by both APIs (the order between threads is then the caller's business).
unsafe impl Sync for Stream {}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").field("raw", &self.raw).finish()
    }
}

impl Stream {
    /// A new non-blocking stream on `device`.
    pub fn new(device: &Arc<Device>) -> Result<Stream> {
        device.bind()?;
        let api = device.api();
        let mut raw: Handle = std::ptr::null_mut();
        // SAFETY: writes one stream handle; flag 1 = non-blocking in both APIs.
        api.check("stream_create", unsafe {
            (api.common.stream_create)(&mut raw, 1)
        })?;
        Ok(Stream {
            device: device.clone(),
            raw,
        })
    }

    /// The device this stream belongs to.
    pub fn device(&self) -> &Arc<Device> {
        &self.device
    }

    /// The raw handle (for callers that use the vendor API themselves).
    pub fn raw(&self) -> Handle {
        self.raw
    }

    /// Block until all work submitted so far has finished.
    pub fn synchronize(&self) -> Result<()> {
        self.device.bind()?;
        let api = self.device.api();
        // SAFETY: the stream is alive for `&self`.
        api.check("stream_synchronize", unsafe {
            (api.common.stream_synchronize)(self.raw)
        })
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if self.device.bind().is_ok() {
            let api = self.device.api();
            // SAFETY: the handle was created in `new` and is destroyed once;
            // pending work completes before the driver frees the stream.
            unsafe {
                (api.common.stream_synchronize)(self.raw);
                (api.common.stream_destroy)(self.raw);
            }
        }
    }
}

/// A marker recorded into a stream, used for timing and waiting.
pub struct Event {
    device: Arc<Device>,
    raw: Handle,
}

// SAFETY: as for `Stream`.
unsafe impl Send for Event {}
// SAFETY: as for `Stream`.
unsafe impl Sync for Event {}

impl Event {
    /// A new event (with timing) on `device`.
    pub fn new(device: &Arc<Device>) -> Result<Event> {
        device.bind()?;
        let api = device.api();
        let mut raw: Handle = std::ptr::null_mut();
        // SAFETY: writes one event handle; flags 0 = default (timing enabled).
        api.check("event_create", unsafe {
            (api.common.event_create)(&mut raw, 0)
        })?;
        Ok(Event {
            device: device.clone(),
            raw,
        })
    }

    /// Record the event at the current end of `stream`.
    pub fn record(&self, stream: &Stream) -> Result<()> {
        self.device.bind()?;
        let api = self.device.api();
        // SAFETY: both handles are alive and belong to the same device.
        api.check("event_record", unsafe {
            (api.common.event_record)(self.raw, stream.raw)
        })
    }

    /// Wait until the event has completed.
    pub fn synchronize(&self) -> Result<()> {
        self.device.bind()?;
        let api = self.device.api();
        // SAFETY: the event is alive.
        api.check("event_synchronize", unsafe {
            (api.common.event_synchronize)(self.raw)
        })
    }

    /// Milliseconds between `start` and `self` (both recorded and completed).
    pub fn elapsed_ms_since(&self, start: &Event) -> Result<f32> {
        self.device.bind()?;
        let api = self.device.api();
        let mut ms = 0f32;
        // SAFETY: writes one float; both events are alive.
        api.check("event_elapsed", unsafe {
            (api.common.event_elapsed)(&mut ms, start.raw, self.raw)
        })?;
        Ok(ms)
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        if self.device.bind().is_ok() {
            let api = self.device.api();
            // SAFETY: created in `new`, destroyed once.
            unsafe { (api.common.event_destroy)(self.raw) };
        }
    }
}
