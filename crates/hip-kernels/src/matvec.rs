//! Launchers of the 8-bit-activation decode mat-vec (`kernels/matvec.hip`).

use super::{blocks, invalid, need, to_i32, GpuFormat, Kernels, Result, BLOCK_1D};
use gpu_runtime::{DeviceBuffer, KernelArgs, LaunchConfig, Stream};

/// Waves per block of the `matvec_*` kernels (one weight row per wave).
const MATVEC_WAVES: u32 = 4;

/// Whether [`Kernels::matvec_q8`] handles weights in `format` with rows of
/// `k` values.
pub fn matvec_q8_supports(format: GpuFormat, k: usize) -> bool {
    match format {
        GpuFormat::Q4_0 | GpuFormat::Q8_0 => k > 0 && k % 32 == 0,
        GpuFormat::Q4K | GpuFormat::Q6K => k > 0 && k % 256 == 0,
        _ => false,
    }
}

/// `ROCMFORGE_GPU_NARROW_MATVEC=1`: the chunk-per-lane Q4_K and Q6_K
/// mat-vecs instead of the 16-byte-load ones (for comparisons).
fn narrow_matvec() -> bool {
    static NARROW: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *NARROW
        .get_or_init(|| std::env::var_os("ROCMFORGE_GPU_NARROW_MATVEC").is_some_and(|v| v == "1"))
}

impl Kernels {
    /// Quantize one activation row of `k` values (a multiple of 32) to 8-bit
    /// blocks: `q` receives `k` signed bytes (`k / 4` words), `ds` the pairs
    /// `(d, d · Σq)` of the `k / 32` blocks (`k / 16` floats).
    pub fn quantize_q8(
        &self,
        stream: &Stream,
        x: &DeviceBuffer<f32>,
        k: usize,
        q: &mut DeviceBuffer<u32>,
        ds: &mut DeviceBuffer<f32>,
    ) -> Result<()> {
        if k == 0 || k % 32 != 0 {
            return Err(invalid(format!(
                "quantize_q8: {k} values are not blocks of 32"
            )));
        }
        need("quantize_q8 input", x.len(), k)?;
        need("quantize_q8 values", q.len(), k / 4)?;
        need("quantize_q8 scales", ds.len(), k / 16)?;
        let cfg = LaunchConfig {
            grid: (blocks(k, BLOCK_1D)?, 1, 1),
            block: (BLOCK_1D as u32, 1, 1),
            shared_bytes: 0,
        };
        let args = KernelArgs::new()
            .ptr(x.device_ptr())
            .i32(to_i32("k", k)?)
            .ptr(q.device_ptr())
            .ptr(ds.device_ptr());
        // SAFETY: matches `quantize_q8_f32`; every length checked above (the
        // kernel writes k bytes of `q` and k / 32 pairs of `ds`).
        unsafe { self.f("quantize_q8_f32")?.launch(stream, cfg, &args) }
    }

    /// `y[r] = Σ_k W[r][k] · x[k]` for `n` rows of `k` values in `format`
    /// against an activation row quantized by [`Kernels::quantize_q8`].
    #[allow(clippy::too_many_arguments)]
    pub fn matvec_q8(
        &self,
        stream: &Stream,
        format: GpuFormat,
        w: &DeviceBuffer<u8>,
        n: usize,
        k: usize,
        q: &DeviceBuffer<u32>,
        ds: &DeviceBuffer<f32>,
        y: &mut DeviceBuffer<f32>,
    ) -> Result<()> {
        if !matvec_q8_supports(format, k) {
            return Err(invalid(format!(
                "matvec_q8: {format:?} rows of {k} are not supported"
            )));
        }
        let row_bytes = format
            .row_bytes(k)
            .ok_or_else(|| invalid(format!("matvec_q8: row of {k} in {format:?}")))?;
        let wide = w.device_ptr() % 16 == 0 && !narrow_matvec();
        let name = match format {
            GpuFormat::Q4_0 => "matvec_q4_0",
            GpuFormat::Q4K if wide => "matvec_q4_k_wide",
            GpuFormat::Q4K => "matvec_q4_k",
            GpuFormat::Q6K if wide && k % 2048 == 0 && row_bytes % 16 == 0 => "matvec_q6_k_staged",
            GpuFormat::Q6K => "matvec_q6_k",
            _ => "matvec_q8_0",
        };
        need("matvec weight", w.len(), n * row_bytes)?;
        need("matvec values", q.len(), k / 4)?;
        need("matvec scales", ds.len(), k / 16)?;
        need("matvec output", y.len(), n)?;
        if w.device_ptr() % 2 != 0 || q.device_ptr() % 16 != 0 || ds.device_ptr() % 8 != 0 {
            return Err(invalid("matvec_q8: misaligned buffers".into()));
        }
        let wave = self.device().props().wave_size.max(1);
        // Waves per row: enough that each lane has about two chunks (wide
        // Q4_K: super-blocks) or fewer; 1, 2 or 4 (a block is 4 waves).
        let per_lane = if name == "matvec_q4_k_wide" {
            256 / 8
        } else {
            32
        };
        let lane_items = k.div_ceil(per_lane * wave as usize);
        // …but no more waves in all than about 16384: with many rows one wave
        // per row already keeps enough loads in flight.
        let by_rows = (16384 / n.max(1)).max(1);
        let wpr: usize = match lane_items {
            0..=2 => 1,
            3..=4 => 2,
            _ => 4,
        }
        .min(if by_rows >= 4 {
            4
        } else if by_rows >= 2 {
            2
        } else {
            1
        });
        let rows_per_block = MATVEC_WAVES as usize / wpr;
        let cfg = LaunchConfig {
            grid: (blocks(n, rows_per_block)?, 1, 1),
            block: (MATVEC_WAVES * wave, 1, 1),
            shared_bytes: 0,
        };
        let args = KernelArgs::new()
            .ptr(w.device_ptr())
            .i32(to_i32("row bytes", row_bytes)?)
            .i32(to_i32("k", k)?)
            .i32(to_i32("n", n)?)
            .ptr(q.device_ptr())
            .ptr(ds.device_ptr())
            .ptr(y.device_ptr())
            .i32(wpr as i32);
        // SAFETY: matches the `matvec_*` kernel of `format`; weight, activation
        // and output lengths and alignments checked above.
        unsafe { self.f(name)?.launch(stream, cfg, &args) }
    }
}
