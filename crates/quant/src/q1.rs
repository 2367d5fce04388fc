//! Q1_0: one bit per weight with an f16 scale per 128 elements.

use crate::kernels::FormatKernels;
use crate::Format;

/// The kernels of the formats this module owns.
pub(crate) fn kernels(_format: Format) -> Option<FormatKernels> {
    None
}
