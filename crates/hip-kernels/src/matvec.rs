//! Launchers of the 8-bit-activation decode mat-vec (`kernels/matvec.hip`).

use super::{blocks, invalid, need, to_i32, GpuFormat, Kernels, Result, BLOCK_1D};
use gpu_runtime::{DeviceBuffer, KernelArgs, LaunchConfig, Stream};

/// Waves per block of the `matvec_*` kernels.
const MATVEC_WAVES: u32 = 4;

/// A mat-vec row is split over several waves only while the launch has
/// fewer waves than this (about 16 per compute unit of an H200); see
/// [`Kernels`]'s `matvec_waves`.
pub(crate) const MATVEC_SPLIT_WAVES: usize = 2048;

/// Dynamic shared memory of `matvec_q6_k_staged2_addnorm`: 16 waves of two
/// staged tiles (`RF_Q6_TILE_WORDS + 1` = 106 16-byte words each).
pub(crate) const Q6K_ADDNORM_SHARED: u32 = 16 * 2 * 106 * 16;

/// Waves per block of the fused gate/up/GLU kernels (`matvec_*_glu`): 16
/// waves of two outputs each make one 8-bit block of 32.
const GLU_WAVES: usize = 16;

/// Most weights one `matvec_*` launch serves ([`Kernels::matvec_q8_multi`]).
pub const MATVEC_MAX_PARTS: usize = 3;

/// One weight of a [`Kernels::matvec_q8_multi`] launch: `n` rows in `w`,
/// results into `y`.
pub struct MatvecPart<'a> {
    /// The weight rows.
    pub w: &'a DeviceBuffer<u8>,
    /// Number of rows.
    pub n: usize,
    /// Output, `n` values.
    pub y: &'a mut DeviceBuffer<f32>,
}

/// Where a kernel that produces an activation row also writes its 8-bit
/// form (the layout of [`Kernels::quantize_q8`]), so the decode mat-vec that
/// reads the row next needs no quantize launch of its own.
pub struct Q8Out<'a> {
    /// The signed bytes, `k / 4` words.
    pub q: &'a mut DeviceBuffer<u32>,
    /// `(d, d · Σq)` per block of 32, `k / 16` floats.
    pub ds: &'a mut DeviceBuffer<f32>,
}

impl Q8Out<'_> {
    /// The device pointers for a row of `k` values, after checking that `k`
    /// is whole blocks of 32 and that the buffers hold them.
    pub(crate) fn check(&self, op: &str, k: usize) -> Result<(u64, u64)> {
        if k == 0 || !k.is_multiple_of(32) {
            return Err(invalid(format!(
                "{op}: 8-bit output of {k} values (not blocks of 32)"
            )));
        }
        need("8-bit output values", self.q.len(), k / 4)?;
        need("8-bit output scales", self.ds.len(), k / 16)?;
        Ok((self.q.device_ptr(), self.ds.device_ptr()))
    }
}

/// The residual add and RMS norm that a one-weight mat-vec may do after its
/// rows are stored (see [`Kernels::matvec_q8_multi`]): `x += y`, then
/// `out = x / rms(x) · weight`, and the 8-bit form of `out` into the
/// launch's own activation buffers (`q`, `ds`), which then hold `out`'s row
/// instead of the input's.
pub struct NormTail<'a> {
    /// The residual row, `n` values (`n` = the mat-vec's rows), updated.
    pub x: &'a mut DeviceBuffer<f32>,
    /// The norm's weights, `n` values.
    pub weight: &'a DeviceBuffer<f32>,
    /// The norm's epsilon.
    pub eps: f32,
    /// The normalized row, `n` values.
    pub out: &'a mut DeviceBuffer<f32>,
    /// A counter of finished blocks: 0 before the launch, and left 0.
    pub counter: &'a DeviceBuffer<u32>,
}

/// The deferred norm factor of an activation row written by
/// [`Kernels::matvec_q8_add_norm`] (its 8-bit form lacks the factor
/// 1 / sqrt(mean(x²) + eps)): every mat-vec that reads the row multiplies
/// its results by the factor, computed from the partial sums.
#[derive(Clone, Copy)]
pub struct ActScale<'a> {
    /// Partial sums of x², one per 32 values of the row.
    pub partials: &'a DeviceBuffer<f32>,
    /// The row's length (a multiple of 32).
    pub n: usize,
    /// The norm's epsilon.
    pub eps: f32,
}

impl ActScale<'_> {
    /// The kernel arguments (pointer, count of partials, eps) after checks;
    /// none: a null pointer.
    fn args(scale: Option<&Self>, k: usize, args: KernelArgs) -> Result<KernelArgs> {
        Ok(match scale {
            None => args.ptr(0).i32(0).f32(0.0),
            Some(s) => {
                if s.n != k || !k.is_multiple_of(32) {
                    return Err(invalid(format!(
                        "matvec_q8: a deferred norm factor for {} values on a row of {k}",
                        s.n
                    )));
                }
                need("norm partial sums", s.partials.len(), k / 32)?;
                args.ptr(s.partials.device_ptr())
                    .i32(to_i32("partials", k / 32)?)
                    .f32(s.eps)
            }
        })
    }
}

/// Whether [`Kernels::matvec_q8`] handles weights in `format` with rows of
/// `k` values.
pub fn matvec_q8_supports(format: GpuFormat, k: usize) -> bool {
    match format {
        GpuFormat::Q4_0 | GpuFormat::Q8_0 => k > 0 && k.is_multiple_of(32),
        GpuFormat::Q4K | GpuFormat::Q6K => k > 0 && k.is_multiple_of(256),
        _ => false,
    }
}

/// Rows from which the staged Q6_K mat-vec takes four rows a wave by
/// default (two below).
const Q6K_ROWS4_MIN: usize = 16384;

/// The 8-bit activation row of a mat-vec launch (`op`): `q`/`ds` hold `k`
/// values and are aligned as the kernels load them.
fn check_activations(
    op: &str,
    q: &DeviceBuffer<u32>,
    ds: &DeviceBuffer<f32>,
    k: usize,
) -> Result<()> {
    need("matvec values", q.len(), k / 4)?;
    need("matvec scales", ds.len(), k / 16)?;
    if !q.device_ptr().is_multiple_of(16) || !ds.device_ptr().is_multiple_of(8) {
        return Err(invalid(format!("{op}: misaligned activations")));
    }
    Ok(())
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
        if k == 0 || !k.is_multiple_of(32) {
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
        self.matvec_q8_multi(
            stream,
            format,
            &mut [MatvecPart { w, n, y }],
            k,
            q,
            ds,
            None,
            None,
        )
    }

    /// [`Kernels::matvec_q8`] for up to [`MATVEC_MAX_PARTS`] weights of the
    /// same format and row length against the same quantized input, in one
    /// launch (a layer's q/k/v or gate/up). With `tail` (one weight only, its
    /// rows a multiple of 32), the launch's last block also does the
    /// residual add and RMS norm of [`NormTail`] (a decode step's output
    /// projection followed by the next norm, in one launch).
    #[allow(clippy::too_many_arguments)]
    pub fn matvec_q8_multi(
        &self,
        stream: &Stream,
        format: GpuFormat,
        parts: &mut [MatvecPart<'_>],
        k: usize,
        q: &DeviceBuffer<u32>,
        ds: &DeviceBuffer<f32>,
        tail: Option<NormTail<'_>>,
        scale: Option<ActScale<'_>>,
    ) -> Result<()> {
        if parts.is_empty() || parts.len() > MATVEC_MAX_PARTS {
            return Err(invalid(format!(
                "matvec_q8: {} weights in one launch (1 to {MATVEC_MAX_PARTS})",
                parts.len()
            )));
        }
        if !matvec_q8_supports(format, k) {
            return Err(invalid(format!(
                "matvec_q8: {format:?} rows of {k} are not supported"
            )));
        }
        let row_bytes = format
            .row_bytes(k)
            .ok_or_else(|| invalid(format!("matvec_q8: row of {k} in {format:?}")))?;
        check_activations("matvec_q8", q, ds, k)?;
        let mut wide = !self.narrow_matvec;
        for p in parts.iter() {
            need("matvec weight", p.w.len(), p.n * row_bytes)?;
            need("matvec output", p.y.len(), p.n)?;
            if p.w.device_ptr() % 2 != 0 {
                return Err(invalid("matvec_q8: misaligned weight".into()));
            }
            wide &= p.w.device_ptr() % 16 == 0;
        }
        let n: usize = parts.iter().map(|p| p.n).sum();
        if self.skip_matvecs.contains(&(n, k)) {
            return Ok(());
        }
        let tail_args = match &tail {
            None => [0u64; 5],
            Some(t) => {
                if parts.len() != 1 || n == 0 || !n.is_multiple_of(32) {
                    return Err(invalid(format!(
                        "matvec_q8: a norm tail after {} weights of {n} rows in total \
                         (one weight, rows a multiple of 32)",
                        parts.len()
                    )));
                }
                need("norm tail residual", t.x.len(), n)?;
                need("norm tail weights", t.weight.len(), n)?;
                need("norm tail output", t.out.len(), n)?;
                need("norm tail counter", t.counter.len(), 1)?;
                need("norm tail 8-bit values", q.len(), n / 4)?;
                need("norm tail 8-bit scales", ds.len(), n / 16)?;
                [
                    t.x.device_ptr(),
                    t.weight.device_ptr(),
                    t.out.device_ptr(),
                    q.device_ptr(),
                    ds.device_ptr(),
                ]
            }
        };
        let wave = self.device().props().wave_size.max(1) as usize;
        let mut plan = self.matvec_plan(format, k, n, row_bytes, wave, wide, ds.device_ptr());
        if self.matvec_wpr != 0 {
            plan.wpr = self.matvec_wpr;
        }
        let cfg = LaunchConfig {
            grid: (
                blocks(n, MATVEC_WAVES as usize / plan.wpr * plan.rows)?,
                1,
                1,
            ),
            block: (MATVEC_WAVES * wave as u32, 1, 1),
            shared_bytes: 0,
        };
        let slot = |i: usize| parts.get(i).unwrap_or(&parts[0]);
        let count = |i: usize| parts.get(i).map_or(0, |p| p.n);
        let mut args = KernelArgs::new();
        for i in 0..MATVEC_MAX_PARTS {
            args = args.ptr(slot(i).w.device_ptr());
        }
        for i in 0..MATVEC_MAX_PARTS {
            args = args.i32(to_i32("rows", count(i))?);
        }
        for i in 0..MATVEC_MAX_PARTS {
            args = args.ptr(slot(i).y.device_ptr());
        }
        let args = args
            .i32(to_i32("row bytes", row_bytes)?)
            .i32(to_i32("k", k)?)
            .ptr(q.device_ptr())
            .ptr(ds.device_ptr())
            .i32(plan.wpr as i32);
        let mut args = ActScale::args(scale.as_ref(), k, args)?;
        let kernel = match &tail {
            None => self.f(plan.kernel)?,
            Some(t) => {
                args = args
                    .ptr(tail_args[0])
                    .ptr(tail_args[1])
                    .f32(t.eps)
                    .ptr(tail_args[2])
                    .ptr(tail_args[3])
                    .ptr(tail_args[4])
                    .ptr(t.counter.device_ptr());
                self.f(&format!("{}_tail", plan.kernel))?
            }
        };
        // SAFETY: matches RF_MV_ARGS of the `matvec_*` kernels (and
        // RF_MV_TAIL_ARGS of their `_tail` twins); every part's weight and
        // output lengths and the activation lengths and alignments checked
        // above (unused slots repeat part 0 with 0 rows); the tail's buffers
        // hold its n values (checked above). The tail writes `q`/`ds` only
        // after every block has read them (kernels/matvec.hip).
        unsafe { kernel.launch(stream, cfg, &args) }
    }

    /// One token through Q4_K weights `a` (one or two: a decode step's q and
    /// k) and a Q6_K weight `b` (its v) in one launch
    /// (`matvec_q4_k_rows4_q6_k_staged2`: the first blocks run the four-row
    /// Q4_K kernel's body, the others the two-row staged Q6_K one's, each
    /// planned as its own launch would be), against the same 8-bit
    /// activations `q`/`ds` (with `scale`, their deferred norm factor, if
    /// any). Returns `Ok(false)`, launching nothing, where either weight
    /// would take another kernel (then launch them apart).
    #[allow(clippy::too_many_arguments)]
    pub fn matvec_q8_q4k_q6k(
        &self,
        stream: &Stream,
        a: &mut [MatvecPart<'_>],
        b: &mut MatvecPart<'_>,
        k: usize,
        q: &DeviceBuffer<u32>,
        ds: &DeviceBuffer<f32>,
        scale: Option<ActScale<'_>>,
    ) -> Result<bool> {
        if a.is_empty() || a.len() > 2 || self.matvec_wpr != 0 || self.matvec_rows != 0 {
            return Ok(false);
        }
        if !matvec_q8_supports(GpuFormat::Q4K, k) || !matvec_q8_supports(GpuFormat::Q6K, k) {
            return Ok(false);
        }
        let (Some(rb_a), Some(rb_b)) = (GpuFormat::Q4K.row_bytes(k), GpuFormat::Q6K.row_bytes(k))
        else {
            return Ok(false);
        };
        check_activations("matvec_q8_q4k_q6k", q, ds, k)?;
        let mut wide = !self.narrow_matvec;
        for (p, rb) in a.iter().map(|p| (p, rb_a)).chain([(&*b, rb_b)]) {
            need("matvec weight", p.w.len(), p.n * rb)?;
            need("matvec output", p.y.len(), p.n)?;
            wide &= p.w.device_ptr().is_multiple_of(16);
        }
        let n_a: usize = a.iter().map(|p| p.n).sum();
        let wave = self.device().props().wave_size.max(1) as usize;
        let plan_a = self.matvec_plan(GpuFormat::Q4K, k, n_a, rb_a, wave, wide, ds.device_ptr());
        let plan_b = self.matvec_plan(GpuFormat::Q6K, k, b.n, rb_b, wave, wide, ds.device_ptr());
        if plan_a.kernel != "matvec_q4_k_rows4" || plan_b.kernel != "matvec_q6_k_staged2" {
            return Ok(false);
        }
        let blocks_a = blocks(n_a, MATVEC_WAVES as usize / plan_a.wpr * plan_a.rows)?;
        let blocks_b = blocks(b.n, MATVEC_WAVES as usize / plan_b.wpr * plan_b.rows)?;
        let cfg = LaunchConfig {
            grid: (blocks_a + blocks_b, 1, 1),
            block: (MATVEC_WAVES * wave as u32, 1, 1),
            shared_bytes: 0,
        };
        let (w1, n1, y1) = match a.get(1) {
            Some(p) => (p.w.device_ptr(), p.n, p.y.device_ptr()),
            None => (a[0].w.device_ptr(), 0, a[0].y.device_ptr()),
        };
        let args = KernelArgs::new()
            .ptr(a[0].w.device_ptr())
            .ptr(w1)
            .ptr(b.w.device_ptr())
            .i32(to_i32("rows", a[0].n)?)
            .i32(to_i32("rows", n1)?)
            .i32(to_i32("rows", b.n)?)
            .ptr(a[0].y.device_ptr())
            .ptr(y1)
            .ptr(b.y.device_ptr())
            .i32(to_i32("row bytes", rb_a)?)
            .i32(to_i32("k", k)?)
            .ptr(q.device_ptr())
            .ptr(ds.device_ptr())
            .i32(plan_a.wpr as i32);
        let args = ActScale::args(scale.as_ref(), k, args)?
            .i32(to_i32("row bytes", rb_b)?)
            .i32(plan_b.wpr as i32)
            .i32(to_i32("blocks", blocks_a as usize)?);
        // SAFETY: matches RF_MV_ARGS + (row_bytes2, wpr2, B0) of
        // `matvec_q4_k_rows4_q6_k_staged2`: every weight holds its rows
        // (checked above: rb_a bytes a row for W0/W1, rb_b for W2), every
        // output its values, the activations k values; the grid is the two
        // bodies' own grids one after the other, B0 = the first one's blocks.
        unsafe {
            self.f("matvec_q4_k_rows4_q6_k_staged2")?
                .launch(stream, cfg, &args)?
        };
        Ok(true)
    }

    /// A feed-forward's gate and up projections and its GLU for one token, in
    /// one launch: `out[i] = act(gate[i] · x) · (up[i] · x)` (SiLU, or GELU
    /// with the tanh approximation when `gelu`), exactly as
    /// [`Kernels::glu`] computes it from the two mat-vecs' outputs, and the
    /// 8-bit form of `out` into `q8` for the down projection. `gate` and `up`
    /// hold `n` rows of `k` values in `format`; `q`/`ds` is `x`'s 8-bit row.
    /// Returns `Ok(false)`, launching nothing, where no fused kernel serves
    /// the format and shape (the caller then runs the two mat-vecs and
    /// [`Kernels::glu`]): the four-row kernels (Q4_K, Q4_0, Q8_0) with one
    /// wave per row group, `n` a multiple of 32, 16 waves a block at most
    /// 1024 threads. With `counters` (at least `n / 32` of them, all 0, and
    /// left at 0) the blocks are the usual independent four-wave ones and
    /// the last block of each group of 32 outputs writes its 8-bit block
    /// (`matvec_*_gluc`); without, blocks of 16 waves write theirs
    /// (`matvec_*_glu`).
    #[allow(clippy::too_many_arguments)]
    pub fn matvec_q8_glu(
        &self,
        stream: &Stream,
        format: GpuFormat,
        gate: &DeviceBuffer<u8>,
        up: &DeviceBuffer<u8>,
        n: usize,
        k: usize,
        q: &DeviceBuffer<u32>,
        ds: &DeviceBuffer<f32>,
        gelu: bool,
        out: &mut DeviceBuffer<f32>,
        q8: Q8Out<'_>,
        scale: Option<ActScale<'_>>,
        counters: Option<&DeviceBuffer<u32>>,
    ) -> Result<bool> {
        let wave = self.device().props().wave_size.max(1) as usize;
        if self.matvec_wpr > 1
            || n == 0
            || !n.is_multiple_of(32)
            || GLU_WAVES * wave > 1024
            || !matvec_q8_supports(format, k)
        {
            return Ok(false);
        }
        let row_bytes = format
            .row_bytes(k)
            .ok_or_else(|| invalid(format!("matvec_q8_glu: row of {k} in {format:?}")))?;
        let wide = !self.narrow_matvec
            && gate.device_ptr().is_multiple_of(16)
            && up.device_ptr().is_multiple_of(16);
        let plan = self.matvec_plan(format, k, 2 * n, row_bytes, wave, wide, ds.device_ptr());
        let glu_kernel = match plan.kernel {
            "matvec_q4_k_rows4"
            | "matvec_q4_0_direct4"
            | "matvec_q4_0_pair4"
            | "matvec_q8_0_direct4" => {
                format!(
                    "{}_{}",
                    plan.kernel,
                    if counters.is_some() { "gluc" } else { "glu" }
                )
            }
            _ => return Ok(false),
        };
        if plan.wpr != 1 {
            return Ok(false);
        }
        check_activations("matvec_q8_glu", q, ds, k)?;
        need("gate weight", gate.len(), n * row_bytes)?;
        need("up weight", up.len(), n * row_bytes)?;
        need("glu output", out.len(), n)?;
        let (oq, ods) = q8.check("matvec_q8_glu", n)?;
        if self.skip_matvecs.contains(&(2 * n, k)) {
            return Ok(true);
        }
        // Waves of 4 rows (2 gate + 2 up) each: 16 a block, 32 outputs (one
        // 8-bit block, rf_mv_store_glu); or with counters 4 a block, 8
        // outputs, four blocks to a group of 32 (rf_mv_store_gluc).
        let waves = if let Some(c) = counters {
            need("glu group counters", c.len(), n / 32)?;
            MATVEC_WAVES as usize
        } else {
            GLU_WAVES
        };
        let cfg = LaunchConfig {
            grid: (blocks(n, 2 * waves)?, 1, 1),
            block: ((waves * wave) as u32, 1, 1),
            shared_bytes: 0,
        };
        let rows = to_i32("rows", n)?;
        let args = KernelArgs::new()
            .ptr(gate.device_ptr())
            .ptr(up.device_ptr())
            .ptr(gate.device_ptr())
            .i32(rows)
            .i32(rows)
            .i32(0)
            .ptr(out.device_ptr())
            .ptr(out.device_ptr())
            .ptr(out.device_ptr())
            .i32(to_i32("row bytes", row_bytes)?)
            .i32(to_i32("k", k)?)
            .ptr(q.device_ptr())
            .ptr(ds.device_ptr())
            .i32(1);
        let mut args = ActScale::args(scale.as_ref(), k, args)?
            .i32(i32::from(gelu))
            .ptr(oq)
            .ptr(ods);
        if let Some(c) = counters {
            args = args.ptr(c.device_ptr());
        }
        // SAFETY: matches RF_MV_ARGS + RF_MV_GLU_ARGS of the `_glu` kernels
        // (+ RF_MV_GLUC_ARGS' counters for `_gluc`): both weights hold n rows
        // of row_bytes, the activations k values, `out` n values, the 8-bit
        // output n values and the counters n / 32 (all checked above); one
        // wave per row group (wpr = 1) and 32 or 8 outputs per block, as the
        // kernel's store assumes (n a multiple of 32).
        unsafe { self.f(&glu_kernel)?.launch(stream, cfg, &args)? };
        Ok(true)
    }

    /// A decode step's output (or down) projection with the residual add
    /// and the next RMS norm in its store, one launch: `y = W · a` (`n` rows
    /// of `k` values in `format`; `q`/`ds` is `a`'s 8-bit row, `scale` its
    /// deferred norm factor if it has one), `x += y`, and into `q8` the
    /// 8-bit form of `x · norm_w` *without* the norm's factor, with one
    /// partial sum of x² per 32 rows into `partials` (the mat-vecs that
    /// read the row take [`ActScale`] over them). The normalized f32 row is
    /// not written. Blocks of 32 rows (`matvec_*_addnorm`, the four-row
    /// kernels: Q4_K, Q4_0, Q8_0; the two-row staged Q6_K one); returns
    /// `Ok(false)`, launching nothing,
    /// for other formats and shapes (`n` not a multiple of 32, blocks over
    /// 1024 threads).
    #[allow(clippy::too_many_arguments)]
    pub fn matvec_q8_add_norm(
        &self,
        stream: &Stream,
        format: GpuFormat,
        w: &DeviceBuffer<u8>,
        n: usize,
        k: usize,
        q: &DeviceBuffer<u32>,
        ds: &DeviceBuffer<f32>,
        scale: Option<ActScale<'_>>,
        y: &mut DeviceBuffer<f32>,
        x: &mut DeviceBuffer<f32>,
        norm_w: &DeviceBuffer<f32>,
        q8: Q8Out<'_>,
        partials: &mut DeviceBuffer<f32>,
    ) -> Result<bool> {
        let wave = self.device().props().wave_size.max(1) as usize;
        if n == 0 || !n.is_multiple_of(32) || !matvec_q8_supports(format, k) {
            return Ok(false);
        }
        let row_bytes = format
            .row_bytes(k)
            .ok_or_else(|| invalid(format!("matvec_q8_add_norm: row of {k} in {format:?}")))?;
        let wide = !self.narrow_matvec && w.device_ptr().is_multiple_of(16);
        let plan = self.matvec_plan(format, k, n, row_bytes, wave, wide, ds.device_ptr());
        // (kernel, dynamic shared bytes)
        let (kernel, shared_bytes) = match plan.kernel {
            "matvec_q4_k_rows4" => ("matvec_q4_k_rows4_addnorm", 0),
            "matvec_q4_0_direct4" => ("matvec_q4_0_direct4_addnorm", 0),
            "matvec_q4_0_pair4" => ("matvec_q4_0_pair4_addnorm", 0),
            "matvec_q8_0_direct4" => ("matvec_q8_0_direct4_addnorm", 0),
            "matvec_q6_k_staged2" if self.q6k_addnorm => {
                ("matvec_q6_k_staged2_addnorm", Q6K_ADDNORM_SHARED)
            }
            _ => return Ok(false),
        };
        // 32 rows a block: 32 / rows row groups, each of wpr waves (at most
        // two for four rows: 512 threads of up to 128 registers; one for the
        // two-row Q6_K kernel, whose shared tiles are sized for 16 waves).
        let wpr = match self.addnorm_wpr {
            _ if plan.rows == 2 => 1,
            (w, max_k) if w > 0 && k <= max_k => w,
            _ => plan.wpr.clamp(1, 2),
        };
        let threads = 32 / plan.rows * wpr * wave;
        if threads > 1024 {
            return Ok(false);
        }
        check_activations("matvec_q8_add_norm", q, ds, k)?;
        need("matvec weight", w.len(), n * row_bytes)?;
        need("matvec output", y.len(), n)?;
        need("residual", x.len(), n)?;
        need("norm weights", norm_w.len(), n)?;
        need("norm partial sums", partials.len(), n / 32)?;
        let (oq, ods) = q8.check("matvec_q8_add_norm", n)?;
        let cfg = LaunchConfig {
            grid: (blocks(n, 32)?, 1, 1),
            block: (threads as u32, 1, 1),
            shared_bytes,
        };
        let rows = to_i32("rows", n)?;
        let args = KernelArgs::new()
            .ptr(w.device_ptr())
            .ptr(w.device_ptr())
            .ptr(w.device_ptr())
            .i32(rows)
            .i32(0)
            .i32(0)
            .ptr(y.device_ptr())
            .ptr(y.device_ptr())
            .ptr(y.device_ptr())
            .i32(to_i32("row bytes", row_bytes)?)
            .i32(to_i32("k", k)?)
            .ptr(q.device_ptr())
            .ptr(ds.device_ptr())
            .i32(wpr as i32);
        let args = ActScale::args(scale.as_ref(), k, args)?
            .ptr(x.device_ptr())
            .ptr(norm_w.device_ptr())
            .ptr(oq)
            .ptr(ods)
            .ptr(partials.device_ptr());
        // SAFETY: matches RF_MV_ARGS + RF_MV_ADDNORM_ARGS of the `_addnorm`
        // kernels: the weight holds n rows of row_bytes, the activations k
        // values, y, x and the norm weights n values, the 8-bit output n
        // values and `partials` n / 32 (all checked above); blocks of 32
        // rows (n a multiple of 32), as the kernel's store assumes.
        unsafe { self.f(kernel)?.launch(stream, cfg, &args)? };
        Ok(true)
    }

    /// Which `matvec_*` kernel serves `n` rows of `k` values in `format`
    /// (`row_bytes` each; `wide`: every weight 16-byte aligned), and how many
    /// waves share a row.
    #[allow(clippy::too_many_arguments)]
    fn matvec_plan(
        &self,
        format: GpuFormat,
        k: usize,
        n: usize,
        row_bytes: usize,
        wave: usize,
        wide: bool,
        ds_ptr: u64,
    ) -> MatvecPlan {
        // Waves per row at most, for `rows` rows per wave: more than one
        // only while there are fewer than 2048 waves (about 16 per compute
        // unit). Measured on an H200 (`matvec_shapes` example; the cap was
        // 16384 waves): 8b q+k+v 6.5 -> 5.2 µs, o 5.3 -> 4.6, Q6_K down
        // 19.7 -> 16.1, 1b down 5.5 -> 4.9.
        let by_rows = |rows: usize| (self.matvec_waves / n.div_ceil(rows).max(1)).max(1);
        let by_rows_legacy =
            |rows: usize| (self.matvec_waves_legacy / n.div_ceil(rows).max(1)).max(1);
        let v2 = wide && !self.matvec_v1;
        let staged = v2 && k.is_multiple_of(256) && row_bytes.is_multiple_of(16);
        // Rows per wave of the staged kernels (one or two; Q6_K four with
        // `ROCMFORGE_GPU_MV_ROWS=4`).
        let staged_rows = if self.matvec_rows == 1 { 1 } else { 2 };
        match format {
            // Four rows per wave by default: with the weights requested
            // before the grid-dependency wait and one wave per row (above),
            // measured on an H200 (`matvec_shapes`) against two: 8b gate+up
            // 18.9 -> 17.2 µs, down 12.3 -> 10.1, 1b gate+up 7.4 -> 6.8, the
            // short ones equal. Passes of a wave over the row: a super-block
            // per 4 lanes.
            GpuFormat::Q4K if v2 && ds_ptr.is_multiple_of(16) => {
                // Rows per wave: several share each activation load, as
                // long as there are waves enough to fill the device.
                let rows = match self.matvec_rows {
                    0 => 4,
                    r => r,
                };
                let passes = (k / 256).div_ceil(wave / 4);
                let wpr = waves_per_row(passes, by_rows(rows));
                let kernel = match rows {
                    2 => "matvec_q4_k_rows2",
                    4 => "matvec_q4_k_rows4",
                    _ if passes.div_ceil(wpr) <= 2 => "matvec_q4_k_pair2",
                    _ => "matvec_q4_k_pair4",
                };
                MatvecPlan { kernel, wpr, rows }
            }
            // In place: eight lanes per group of eight blocks, a pass of a
            // wave over wave / 8 groups (256 values each). Measured on an
            // H200 against the staged kernels below (`matvec_shapes`, 8b
            // shapes): Q4_0 gate+up 21.6 -> 19.1 µs, q+k+v 8.3 -> 6.5, down
            // 13.5 -> 11.3; Q8_0 q+k+v 9.7 -> 8.1, o 6.3 -> 5.6; 8b tg128
            // Q4_0 512 -> 578 t/s, Q8_0 396 -> 416.
            GpuFormat::Q4_0 | GpuFormat::Q8_0 if staged && !self.legacy_staged => {
                let rows = if self.matvec_rows == 2 { 2 } else { 4 };
                // Q4_0 pairs: sixteen blocks (512 values) per eight lanes.
                let pairs = format == GpuFormat::Q4_0
                    && rows == 4
                    && self.q4_0_pairs
                    && k.is_multiple_of(512);
                let kernel = match (format, rows) {
                    (GpuFormat::Q4_0, 2) => "matvec_q4_0_direct2",
                    (GpuFormat::Q4_0, _) if pairs => "matvec_q4_0_pair4",
                    (GpuFormat::Q4_0, _) => "matvec_q4_0_direct4",
                    (_, 2) => "matvec_q8_0_direct2",
                    _ => "matvec_q8_0_direct4",
                };
                let group_values = if pairs { 512 } else { 256 };
                let passes = (k / group_values).div_ceil(wave / 8);
                MatvecPlan {
                    kernel,
                    wpr: waves_per_row(passes, by_rows_legacy(rows)),
                    rows,
                }
            }
            // One wave per staged tile (144 or 136 16-byte words).
            GpuFormat::Q4_0 | GpuFormat::Q8_0 if staged => {
                let rows = staged_rows;
                let (kernel, tile) = match (format, rows) {
                    (GpuFormat::Q4_0, 1) => ("matvec_q4_0_staged", 144),
                    (GpuFormat::Q4_0, _) => ("matvec_q4_0_staged2", 144),
                    (_, 1) => ("matvec_q8_0_staged", 136),
                    _ => ("matvec_q8_0_staged2", 136),
                };
                let tiles = (row_bytes / 16).div_ceil(tile);
                MatvecPlan {
                    kernel,
                    wpr: waves_per_row(tiles, by_rows(rows)),
                    rows,
                }
            }
            GpuFormat::Q6K if v2 && k.is_multiple_of(2048) && row_bytes.is_multiple_of(16) => {
                // Four rows a wave for long weights (output heads); fewer
                // blocks hurt the shorter ones. Measured on an H200
                // (`matvec_shapes`, four rows against two): 49152 x 4096
                // 54.0 -> 47.7 µs, but 8b down 16.1 -> 19.1, v 3.3 -> 4.6.
                let rows = match self.matvec_rows {
                    0 if n >= Q6K_ROWS4_MIN => 4,
                    4 => 4,
                    _ => staged_rows,
                };
                MatvecPlan {
                    kernel: match rows {
                        4 => "matvec_q6_k_staged4",
                        2 => "matvec_q6_k_staged2",
                        _ => "matvec_q6_k_staged",
                    },
                    // One wave per 2048-value tile.
                    wpr: waves_per_row(k / 2048, by_rows(rows)),
                    rows,
                }
            }
            _ => {
                let kernel = match format {
                    GpuFormat::Q4_0 => "matvec_q4_0",
                    GpuFormat::Q4K if wide => "matvec_q4_k_wide",
                    GpuFormat::Q4K => "matvec_q4_k",
                    GpuFormat::Q6K
                        if wide && k.is_multiple_of(2048) && row_bytes.is_multiple_of(16) =>
                    {
                        "matvec_q6_k_staged"
                    }
                    GpuFormat::Q6K => "matvec_q6_k",
                    _ => "matvec_q8_0",
                };
                // Enough waves that each lane has about two 32-value chunks
                // or fewer.
                let lane_items = k.div_ceil(32 * wave);
                let want = match lane_items {
                    0..=2 => 1,
                    3..=4 => 2,
                    _ => 4,
                };
                MatvecPlan {
                    kernel,
                    wpr: waves_per_row(want, by_rows(1)),
                    rows: 1,
                }
            }
        }
    }
}

/// The kernel, the waves per row and the rows per wave (group) of one
/// mat-vec launch.
struct MatvecPlan {
    kernel: &'static str,
    wpr: usize,
    rows: usize,
}

/// Waves per row (1, 2 or 4: a block is 4 waves) for `want` units of work
/// per row, at most `by_rows`.
fn waves_per_row(want: usize, by_rows: usize) -> usize {
    match want.min(by_rows) {
        0..=1 => 1,
        2..=3 => 2,
        _ => 4,
    }
}
