//! Graphs: a recorded sequence of stream work replayed with one launch.

use std::sync::Arc;

use crate::device::Device;
use crate::error::{Result, RuntimeError};
use crate::ffi::{Handle, Specific};
use crate::stream::Stream;

/// Capture mode "relaxed" (2 in both APIs): other threads may keep using the
/// runtime while a capture is in progress.
const CAPTURE_RELAXED: i32 = 2;

/// An instantiated graph, ready to launch.
pub struct Graph {
    device: Arc<Device>,
    graph: Handle,
    exec: Handle,
}

// SAFETY: graph handles are process-wide driver objects; every use binds the
// device's context first.
unsafe impl Send for Graph {}
// SAFETY: as above.
unsafe impl Sync for Graph {}

impl Graph {
    /// Record the work `record` submits to `stream` (it is captured, not run)
    /// and instantiate it. Only work submitted to `stream` is captured; host
    /// copies that synchronise are not allowed while capturing.
    pub fn capture(stream: &Stream, record: impl FnOnce(&Stream) -> Result<()>) -> Result<Graph> {
        let device = stream.device().clone();
        device.bind()?;
        let api = device.api();
        // SAFETY: starts capturing on a live stream.
        api.check("stream_begin_capture", unsafe {
            (api.common.stream_begin_capture)(stream.raw(), CAPTURE_RELAXED)
        })?;
        let recorded = record(stream);
        let mut graph: Handle = std::ptr::null_mut();
        // SAFETY: ends the capture begun above; writes the graph handle.
        let ended = api.check("stream_end_capture", unsafe {
            (api.common.stream_end_capture)(stream.raw(), &mut graph)
        });
        if let Err(e) = recorded {
            if !graph.is_null() {
                // SAFETY: destroys the graph just made, once.
                unsafe { (api.common.graph_destroy)(graph) };
            }
            return Err(e);
        }
        ended?;
        if graph.is_null() {
            return Err(RuntimeError::Invalid(
                "stream capture produced no graph".into(),
            ));
        }
        let mut exec: Handle = std::ptr::null_mut();
        // SAFETY: instantiates a live graph; writes the executable handle.
        let st = unsafe {
            match &api.specific {
                Specific::Cuda(c) => (c.graph_instantiate)(&mut exec, graph, 0),
                Specific::Hip(h) => (h.graph_instantiate)(
                    &mut exec,
                    graph,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    0,
                ),
            }
        };
        if let Err(e) = api.check("graph_instantiate", st) {
            // SAFETY: destroys the graph made above, once.
            unsafe { (api.common.graph_destroy)(graph) };
            return Err(e);
        }
        Ok(Graph {
            device,
            graph,
            exec,
        })
    }

    /// Launch the recorded work on `stream`.
    pub fn launch(&self, stream: &Stream) -> Result<()> {
        self.device.bind()?;
        let api = self.device.api();
        // SAFETY: both handles are alive.
        api.check("graph_launch", unsafe {
            (api.common.graph_launch)(self.exec, stream.raw())
        })
    }
}

impl Drop for Graph {
    fn drop(&mut self) {
        if self.device.bind().is_ok() {
            let api = self.device.api();
            // SAFETY: created in `capture`, destroyed once each.
            unsafe {
                (api.common.graph_exec_destroy)(self.exec);
                (api.common.graph_destroy)(self.graph);
            }
        }
    }
}
