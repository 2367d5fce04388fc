//! K-quants: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K (256-element super-blocks).

use crate::kernels::FormatKernels;
use crate::Format;

/// The kernels of the formats this module owns.
pub(crate) fn kernels(_format: Format) -> Option<FormatKernels> {
    None
}
