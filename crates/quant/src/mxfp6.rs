//! MXFP6 (OCP MX v1.0), E2M3 and E3M2: an extension without a ggml id.

use crate::kernels::FormatKernels;
use crate::Format;

/// The kernels of the formats this module owns.
pub(crate) fn kernels(_format: Format) -> Option<FormatKernels> {
    None
}
