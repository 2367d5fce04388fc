//! The first ggml block formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1.

use crate::kernels::FormatKernels;
use crate::Format;

/// The kernels of the formats this module owns.
pub(crate) fn kernels(_format: Format) -> Option<FormatKernels> {
    None
}
