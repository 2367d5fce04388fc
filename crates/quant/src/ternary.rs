//! Ternary formats: TQ1_0 and TQ2_0.

use crate::kernels::FormatKernels;
use crate::Format;

/// The kernels of the formats this module owns.
pub(crate) fn kernels(_format: Format) -> Option<FormatKernels> {
    None
}
