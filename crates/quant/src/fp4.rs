//! FP4 formats: MXFP4 (E2M1 with E8M0 scale) and NVFP4 (E2M1 with UE4M3 scales).

use crate::kernels::FormatKernels;
use crate::Format;

/// The kernels of the formats this module owns.
pub(crate) fn kernels(_format: Format) -> Option<FormatKernels> {
    None
}
