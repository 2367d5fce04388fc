//! `hip-kernels`: rocmforge's GPU kernels and their safe launchers.
//!
//! The sources live in the top-level `kernels/` directory, written once in
//! the HIP dialect against `kernels/compat.h` (the only vendor-aware file),
//! and are embedded here. [`Kernels::load`] gets a code object for each
//! kernel family for the device at hand: a prebuilt one embedded by the last
//! `cargo xtask kernels` run when one matches the device's architecture, or
//! else the embedded source compiled at run time (NVRTC / hiprtc) through the
//! on-disk cache of [`gpu_runtime::rtc`].
//!
//! Every launcher checks buffer lengths and shapes before launching, so the
//! safe API cannot make a kernel read or write out of bounds.

#![warn(missing_docs)]

mod format;
mod matvec;
use matvec::{MATVEC_SPLIT_WAVES, Q6K_ADDNORM_SHARED};
mod sample;
pub mod sources;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use format::GpuFormat;
use gpu_runtime::{
    rtc::Compiler, Device, DeviceBuffer, Function, KernelArgs, LaunchConfig, Module, Result,
    RuntimeError, Stream, Vendor,
};
pub use matvec::{matvec_q8_supports, ActScale, MatvecPart, NormTail, Q8Out, MATVEC_MAX_PARTS};
pub use sample::{SampleParams, SAMPLE_MAX_K};

mod prebuilt {
    include!(concat!(env!("OUT_DIR"), "/prebuilt.rs"));
}

/// How a family's code object was obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeOrigin {
    /// Embedded at build time by `cargo xtask kernels`.
    Prebuilt,
    /// Compiled at run time (possibly read back from the disk cache).
    Runtime,
}

/// All kernels, loaded on one device.
pub struct Kernels {
    device: Arc<Device>,
    functions: HashMap<String, Function>,
    origins: Vec<(String, CodeOrigin)>,
    mma: bool,
    gemm: bool,
    /// Pipeline stages of the prompt GEMM: 2 (`gemm_f16_tn`, static shared
    /// memory), 3 or 4 (`gemm_f16_tn_s3/s4`, dynamic); default 3, set with
    /// `ROCMFORGE_GPU_GEMM_STAGES`.
    gemm_stages: u32,
    /// Split k in two where the GEMM grid has fewer blocks than compute
    /// units (`ROCMFORGE_GPU_GEMM_SPLITK=0` turns it off).
    gemm_split_k: bool,
    /// `ROCMFORGE_GPU_GEMM_N256=1`: the 128 × 256 tiles of
    /// `gemm_f16_tn_n256_s3` where the three-stage 128 × 128 ones would run;
    /// `=2`: also where the 64-token tiles would (for measurements). 0 (the
    /// default) when unset, with other than three stages, or where the
    /// kernel's shared memory cannot be allowed.
    gemm_n256: u8,
    /// The k-step-of-64 kernels (`GEMM_K64_KERNELS`) where the three-stage
    /// 128 × 128 and 64 × 128 ones would run and K is a multiple of 64
    /// (otherwise those); on by default (measured on an H200: 8b Q4_0 pp512
    /// 12,891 / 12,621 against 11,518 / 11,431 with k-steps of 32), off
    /// with `ROCMFORGE_GPU_GEMM_K64=0`. A launch that takes the 128 × 256
    /// tiles (`ROCMFORGE_GPU_GEMM_N256`) keeps them: there is no k64
    /// variant of that kernel. False with other than three stages, or
    /// where the kernels' shared memory cannot be allowed.
    gemm_k64: bool,
    /// Where a k-step-of-64 kernel would run, its twin with double-buffered
    /// fragments (`GEMM_K64_PF_KERNELS`: the next k16 sub-step's `ldmatrix`
    /// issued before this one's `mma`, the next k-step's first ones across
    /// its barrier). On by default (measured on an H200: 8b Q4_0 pp512
    /// 14,325 / 14,146 against 12,902 / 13,075, 1b Q4_K_M 59,481 / 60,458
    /// against 57,341 / 59,129); off with `ROCMFORGE_GPU_GEMM_PF=0`, without
    /// the k64 kernels, or where its kernels' shared memory cannot be
    /// allowed.
    gemm_pf: bool,
    /// `ROCMFORGE_GPU_NARROW_MATVEC=1`: the chunk-per-lane Q4_K and Q6_K
    /// mat-vecs instead of the 16-byte-load ones (for comparisons).
    narrow_matvec: bool,
    /// `ROCMFORGE_GPU_MATVEC_V1=1`: the previous 16-byte-load Q4_K mat-vec
    /// (a half sub-block pair per lane) and the in-place Q4_0/Q8_0 ones
    /// instead of the pair-per-lane and staged kernels (for comparisons).
    matvec_v1: bool,
    /// `ROCMFORGE_GPU_MV_ROWS=1|2|4`: rows per wave of the Q4_K and in-place
    /// Q4_0/Q8_0 mat-vecs (2 or 4), of the staged Q4_0/Q8_0 ones (1 or 2) and
    /// of the staged Q6_K one (1, 2 or 4) (0: the defaults, 4 and 2; the
    /// staged Q6_K one 4 for weights of at least `Q6K_ROWS4_MIN` rows).
    matvec_rows: usize,
    /// `ROCMFORGE_GPU_LEGACY_STAGED=1`: Q4_0/Q8_0 decode mat-vecs staged
    /// through shared memory (`matvec_q4_0/q8_0_staged*`) instead of read in
    /// place with 16-byte loads (`matvec_q4_0/q8_0_direct*`, the default;
    /// for comparisons).
    legacy_staged: bool,
    /// Q4_K and Q6_K weights of the prompt GEMM dequantized to f16 with
    /// whole-word loads (`dequant_f16_q4_k_pairs` where they are 16-byte
    /// aligned, `dequant_f16_q6_k_halves`); on by default (8b Q4_K_M pp512
    /// 14,555 / 14,339 against 13,805 / 13,699 t/s with the Q4_K one on an
    /// H200), off with `ROCMFORGE_GPU_DEQ_WORDS=0` (see
    /// [`Kernels::set_dequant_words`]).
    dequant_words: std::sync::atomic::AtomicBool,
    /// `ROCMFORGE_GPU_MV_WPR=1|2|4`: waves per row of every 8-bit mat-vec
    /// (0: chosen per shape; for comparisons).
    matvec_wpr: usize,
    /// `ROCMFORGE_GPU_MV_WAVES=N`: a row is split over several waves only
    /// while a launch has fewer than N waves (default 2048); for comparisons.
    matvec_waves: usize,
    /// `ROCMFORGE_GPU_MV_WAVES_LEGACY=N`: the same cap for the in-place
    /// Q4_0/Q8_0 mat-vecs (default: `matvec_waves`).
    matvec_waves_legacy: usize,
    /// Q4_0 rows of K = 512 * n values as pairs of blocks per lane
    /// (`matvec_q4_0_pair4`: three 16-byte loads a lane and row, half the
    /// passes of `matvec_q4_0_direct4`); on by default, off with
    /// `ROCMFORGE_GPU_Q4_0_PAIRS=0`.
    q4_0_pairs: bool,
    /// The residual-add + norm twin of the two-row staged Q6_K mat-vec
    /// (`matvec_q6_k_staged2_addnorm`, 54 KiB of dynamic shared memory):
    /// on where that much is allowed, off with `ROCMFORGE_GPU_Q6K_ADDNORM=0`.
    q6k_addnorm: bool,
    /// `ROCMFORGE_GPU_ADDNORM_WPR=1|2`: waves per row of the residual-add +
    /// norm mat-vecs (`matvec_*_addnorm`) whose rows have at most
    /// `ROCMFORGE_GPU_ADDNORM_WPR_K` values (default 4096); 0: as planned.
    /// For comparisons.
    addnorm_wpr: (usize, usize),
    /// `ROCMFORGE_GPU_SKIP_MATVECS=NxK,…`: decode mat-vec launches of N rows
    /// (all parts together) of K values that return at once (a timing
    /// experiment like `ROCMFORGE_GPU_SKIP_KERNELS`, by shape: what each
    /// projection costs inside a step; results are wrong).
    skip_matvecs: Vec<(usize, usize)>,
    /// `ROCMFORGE_GPU_OLD_ATTENTION=1`: few-row attention through
    /// `attention_f32` (a key row per thread) instead of
    /// `attention_decode_f32` (a key row per wave).
    old_attention: bool,
    /// `ROCMFORGE_GPU_WAVE_ATTENTION=1`: few-row attention through
    /// `attention_decode_f32` (a key row per wave, keys one after the
    /// other) where `attention_keygroups_f32` (a key per 8 lanes, every
    /// group's keys in flight at once) would run.
    wave_attention: bool,
    /// Prompt attention on the matrix units (`attention_mma_h64/128`):
    /// where the device has them, unless `ROCMFORGE_GPU_NO_MMA_ATTENTION=1`.
    mma_attention: bool,
    /// f16 copies of the weight and of the activations for `gemm_f16_tn`.
    gemm_scratch: Mutex<Option<(DeviceBuffer<u16>, DeviceBuffer<u16>)>>,
    /// Partial outputs and (max, sum) pairs of `attention_split_f32`.
    attn_scratch: Mutex<Option<(DeviceBuffer<f32>, DeviceBuffer<f32>)>>,
    /// Bumped whenever a scratch buffer is replaced by a larger one (see
    /// [`Kernels::scratch_generation`]).
    scratch_generation: AtomicU64,
}

impl std::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernels")
            .field("origins", &self.origins)
            .finish()
    }
}

/// `-D` options from `ROCMFORGE_GPU_KERNEL_DEFINES` (space-separated `NAME`
/// or `NAME=VALUE`, for comparing compile-time variants such as
/// `RF_LDW_MODE=2`; anything else in a word is ignored with a warning).
fn kernel_defines() -> Vec<String> {
    let Ok(v) = std::env::var("ROCMFORGE_GPU_KERNEL_DEFINES") else {
        return Vec::new();
    };
    v.split_whitespace()
        .filter(|d| {
            let ok = d
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '=');
            if !ok {
                tracing::warn!("ROCMFORGE_GPU_KERNEL_DEFINES: ignored {d:?}");
            }
            ok
        })
        .map(|d| format!("-D{d}"))
        .collect()
}

/// Whether the environment variable `name` is set to `1` (read once, when
/// the kernels are loaded).
fn env_flag(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| v == "1")
}

/// The environment variable `name` as a positive count, if it is one.
fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
}

/// Whether the environment variable `name` is `0` (a default-on feature
/// turned off).
fn env_off(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| v == "0")
}

/// Whether every kernel of `set` (name, dynamic shared bytes) is loaded and
/// may have that much dynamic shared memory.
fn all_allowed(functions: &HashMap<String, Function>, set: &[(&str, u32)]) -> bool {
    set.iter().all(|(name, bytes)| {
        functions
            .get(*name)
            .is_some_and(|f| f.allow_dynamic_shared(*bytes).is_ok())
    })
}

fn invalid(msg: String) -> RuntimeError {
    RuntimeError::Invalid(msg)
}

fn need(what: &str, have: usize, want: usize) -> Result<()> {
    if have < want {
        return Err(invalid(format!(
            "{what}: buffer of {have} elements, the op needs {want}"
        )));
    }
    Ok(())
}

fn to_i32(what: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| {
        invalid(format!(
            "{what} = {v} does not fit the kernels' 32-bit indices"
        ))
    })
}

fn blocks(n: usize, per: usize) -> Result<u32> {
    u32::try_from(n.div_ceil(per))
        .map_err(|_| invalid(format!("grid of {n} elements is too large")))
}

const BLOCK_1D: usize = 256;
const ATT_THREADS: u32 = 128;
const ATT_MAX_HEAD_DIM: usize = 4 * ATT_THREADS as usize;
const MM_TOKENS: usize = 8;
/// Query rows per block of `attention_tiled_f32` (prompt processing), and
/// the largest head size its static tiles hold.
const ATT_TILE_ROWS: usize = 16;
/// Waves per block of `attention_decode_f32` (RF_DEC_WAVES).
const ATT_DECODE_WAVES: usize = 4;
/// Threads per block of `attention_keygroups_f32` (`RF_KG_THREADS`).
const ATT_KEYGROUPS_THREADS: usize = 256;
/// Largest head of `attention_keygroups_f32` (`RF_KG_MAX_DIM`).
const ATT_KEYGROUPS_MAX_HEAD_DIM: usize = 128;
const ATT_TILE_MAX_HEAD_DIM: usize = 128;
/// Query rows per block of `attention_mma_h*` (`RF_FA_ROWS`).
const ATT_MMA_ROWS: usize = 64;
/// Tokens and weight rows per block of the `matmul_mma_*` kernels.
const MMA_TILE_TOKENS: usize = 64;
const MMA_TILE_ROWS: usize = 256 / 2;
/// Fewest tokens for which the matrix-unit matmul beats the wave-per-row one.
const MMA_MIN_TOKENS: usize = 16;
/// Fewest tokens for which dequantizing the whole weight to f16 once and
/// running the f16 GEMM beats dequantizing tiles inside the matmul.
const GEMM_MIN_TOKENS: usize = 128;

/// One weight of [`Kernels::matmul_many`]: `n` rows in `format`, and the
/// output `y` of its product (`t × n` values).
pub struct MatmulPart<'a> {
    /// The weight's format.
    pub format: GpuFormat,
    /// The weight's rows.
    pub w: &'a DeviceBuffer<u8>,
    /// How many rows.
    pub n: usize,
    /// The product.
    pub y: &'a mut DeviceBuffer<f32>,
}

/// The checks of a matmul of `t` rows of `k` values in `x` by `n` rows of
/// `w` in `format` into `y`: the row's byte length.
fn matmul_checks(
    format: GpuFormat,
    w: &DeviceBuffer<u8>,
    n: usize,
    k: usize,
    x: &DeviceBuffer<f32>,
    t: usize,
    y: &DeviceBuffer<f32>,
) -> Result<usize> {
    let row_bytes = format.row_bytes(k).ok_or_else(|| {
        invalid(format!(
            "matmul: row of {k} is not whole blocks of {format:?}"
        ))
    })?;
    need("matmul weight", w.len(), n * row_bytes)?;
    need("matmul input", x.len(), t * k)?;
    need("matmul output", y.len(), t * n)?;
    if (format == GpuFormat::F32 && !w.device_ptr().is_multiple_of(4))
        || !w.device_ptr().is_multiple_of(2)
    {
        return Err(invalid("matmul: misaligned weight".into()));
    }
    Ok(row_bytes)
}

/// Values of k per pipeline step of the GEMM kernels (`RF_GK`).
const GEMM_K_STEP: usize = 32;

/// The deep-pipeline GEMM kernels for `stages` (3 or 4; otherwise 4) and
/// their dynamic shared memory: `[128-token tiles, 64-token tiles]`. A
/// stage holds the A tile (32 · MT rows) and the B tile (128 rows) of 40
/// halves per row (`kernels/mma.hip`, `rf_gemm_f16_tn_deep`).
fn gemm_deep_kernels(stages: u32) -> [(&'static str, u32); 2] {
    let stage = |mt: u32| (32 * mt + 128) * 40 * 2;
    match stages {
        3 => [
            ("gemm_f16_tn_s3", 3 * stage(4)),
            ("gemm_f16_tn_m64_s3", 3 * stage(2)),
        ],
        _ => [
            ("gemm_f16_tn_s4", 4 * stage(4)),
            ("gemm_f16_tn_m64_s4", 4 * stage(2)),
        ],
    }
}

/// The three-stage GEMM with 128-token × 256-row tiles and its dynamic
/// shared memory: a stage holds 128 + 256 rows of 40 halves
/// (`kernels/mma.hip`, `rf_gemm_f16_tn_deep` with NT = 8).
const GEMM_N256_KERNEL: (&str, u32) = ("gemm_f16_tn_n256_s3", 3 * (128 + 256) * 40 * 2);

/// Values of k per pipeline step of `GEMM_K64_KERNELS`.
const GEMM_K64_STEP: usize = 64;

/// The three-stage GEMMs with k-steps of 64 and their dynamic shared
/// memory, `[128-token tiles, 64-token tiles]` as in `gemm_deep_kernels`: a
/// stage holds 32 · MT + 128 rows of 72 halves (`rf_gemm_f16_tn_deep` with
/// BK = 64).
const GEMM_K64_KERNELS: [(&str, u32); 2] = [
    ("gemm_f16_tn_k64_s3", 3 * (128 + 128) * 72 * 2),
    ("gemm_f16_tn_m64_k64_s3", 3 * (64 + 128) * 72 * 2),
];

/// `GEMM_K64_KERNELS` with fragments double-buffered in registers
/// (`rf_gemm_f16_tn_deep` with PF), the same shared memory.
const GEMM_K64_PF_KERNELS: [(&str, u32); 2] = [
    ("gemm_f16_tn_k64_s3_pf", GEMM_K64_KERNELS[0].1),
    ("gemm_f16_tn_m64_k64_s3_pf", GEMM_K64_KERNELS[1].1),
];

/// `"NxK,NxK"` as (N, K) pairs; entries that do not parse are left out.
fn parse_shapes(v: &str) -> Vec<(usize, usize)> {
    v.split(',')
        .filter_map(|e| {
            let (n, k) = e.trim().split_once('x')?;
            Some((n.parse().ok()?, k.parse().ok()?))
        })
        .collect()
}
/// Heads per thread of `rope_f32` (`RF_ROPE_HEADS` in kernels/rope.hip).
const ROPE_HEADS: usize = 8;

/// Block tile (tokens and rows) of `gemm_f16_tn`.
const GEMM_TILE: usize = 128;

impl Kernels {
    /// Load every kernel family on `device` (prebuilt when available for its
    /// architecture, else compiled at run time and cached).
    pub fn load(device: &Arc<Device>) -> Result<Kernels> {
        let props = device.props();
        let arch = props.arch.clone();
        let vendor = device.runtime().vendor();
        let want_kind = match vendor {
            Vendor::Cuda => "cubin",
            Vendor::Hip => "hsaco",
        };
        let mut compiler: Option<Compiler> = None;
        let defines = kernel_defines();
        let mut functions = HashMap::new();
        let mut origins = Vec::new();
        for (family, _) in sources::FAMILIES {
            let hash = sources::source_hash(family).expect("family from FAMILIES");
            let mut candidates = prebuilt::PREBUILT
                .iter()
                .filter(|(f, a, _, k, _)| f == family && *a == arch && *k == want_kind);
            let pre = candidates.clone().find(|p| p.2 == hash);
            if pre.is_none() && candidates.next().is_some() {
                tracing::warn!(
                    "prebuilt {family} for {arch} is stale (built from other sources); compiling at run time"
                );
            }
            // Extra defines compile every family at run time.
            let pre = pre.filter(|_| defines.is_empty());
            let (module, origin) = match pre.map(|p| Module::load(device, p.4)) {
                Some(Ok(m)) => (m, CodeOrigin::Prebuilt),
                other => {
                    if let Some(Err(e)) = other {
                        tracing::warn!("prebuilt {family} for {arch} did not load ({e}); compiling at run time");
                    }
                    if compiler.is_none() {
                        compiler = Some(Compiler::load(vendor)?);
                    }
                    let c = compiler.as_ref().expect("set above");
                    let src = sources::expanded(family).expect("family from FAMILIES");
                    // NVRTC optimises by default and rejects -O flags; the
                    // kernels need C++17 (`if constexpr`), NVRTC's default.
                    let mut options: Vec<&str> = if vendor == Vendor::Hip {
                        vec!["-O3", "-std=c++17"]
                    } else {
                        vec![]
                    };
                    options.extend(defines.iter().map(String::as_str));
                    let code = c.compile_cached(
                        family,
                        &src,
                        &arch,
                        device.runtime().driver_version(),
                        &options,
                    )?;
                    (Module::load(device, &code)?, CodeOrigin::Runtime)
                }
            };
            for name in kernel_names(family) {
                functions.insert(name.clone(), module.function(&name)?);
            }
            origins.push((family.to_string(), origin));
        }
        let sm = arch
            .strip_prefix("sm_")
            .map(|v| v.trim_end_matches(|c: char| c.is_ascii_alphabetic()))
            .and_then(|v| v.parse::<u32>().ok());
        let mma = vendor == Vendor::Cuda
            && sm.is_some_and(|v| v >= 80)
            && !env_flag("ROCMFORGE_GPU_NO_MMA");
        let gemm = mma && !env_flag("ROCMFORGE_GPU_NO_GEMM");
        let mut gemm_stages = match std::env::var("ROCMFORGE_GPU_GEMM_STAGES").as_deref() {
            Ok("2") => 2,
            Ok("4") => 4,
            // Three stages: 8b Q4_K_M pp512 on an H200 10,262 / 10,433 t/s
            // against 9,375 / 9,327 with four (1b: the same within noise).
            _ => 3,
        };
        if gemm && gemm_stages > 2 {
            // The deep-pipeline GEMMs take more dynamic shared memory than
            // a kernel gets by default; where that cannot be allowed (or the
            // kernels are missing), the two-stage GEMM runs instead.
            let allowed = gemm_deep_kernels(gemm_stages).iter().all(|(name, bytes)| {
                functions
                    .get(*name)
                    .is_some_and(|f| f.allow_dynamic_shared(*bytes).is_ok())
            });
            if !allowed {
                gemm_stages = 2;
            }
        }
        let mut gemm_n256 = match std::env::var("ROCMFORGE_GPU_GEMM_N256").as_deref() {
            Ok("1") => 1,
            Ok("2") => 2,
            _ => 0,
        };
        if gemm_n256 > 0 {
            // An opt-in variant of the three-stage GEMM: off with other
            // stage counts, and (as for those) where its shared memory
            // cannot be allowed or the kernel is missing.
            let (name, bytes) = GEMM_N256_KERNEL;
            let allowed = gemm
                && gemm_stages == 3
                && functions
                    .get(name)
                    .is_some_and(|f| f.allow_dynamic_shared(bytes).is_ok());
            if !allowed {
                tracing::warn!("ROCMFORGE_GPU_GEMM_N256: {name} is not usable here; ignored");
                gemm_n256 = 0;
            }
        }
        // On by default (ROCMFORGE_GPU_GEMM_K64=0 turns it off): three
        // stages only, and both kernels' shared memory allowed (the launcher
        // picks either); otherwise the k-step-of-32 kernels, with a warning
        // only when the variable asked for them.
        let k64_asked = env_flag("ROCMFORGE_GPU_GEMM_K64");
        let gemm_k64 = !env_off("ROCMFORGE_GPU_GEMM_K64")
            && gemm
            && gemm_stages == 3
            && all_allowed(&functions, &GEMM_K64_KERNELS);
        if k64_asked && !gemm_k64 {
            tracing::warn!("ROCMFORGE_GPU_GEMM_K64: the k64 GEMMs are not usable here; ignored");
        }
        // The k64 kernels' twins with double-buffered fragments, on by
        // default (ROCMFORGE_GPU_GEMM_PF=0 turns them off): only where the
        // k64 kernels run, and both twins' shared memory allowed.
        let pf_asked = env_flag("ROCMFORGE_GPU_GEMM_PF");
        let gemm_pf = !env_off("ROCMFORGE_GPU_GEMM_PF")
            && gemm_k64
            && all_allowed(&functions, &GEMM_K64_PF_KERNELS);
        if pf_asked && !gemm_pf {
            tracing::warn!("ROCMFORGE_GPU_GEMM_PF: the k64 _pf GEMMs are not usable here; ignored");
        }
        let q6k_addnorm = !env_off("ROCMFORGE_GPU_Q6K_ADDNORM")
            && all_allowed(
                &functions,
                &[("matvec_q6_k_staged2_addnorm", Q6K_ADDNORM_SHARED)],
            );
        Ok(Kernels {
            device: device.clone(),
            functions,
            origins,
            mma,
            gemm,
            gemm_stages,
            gemm_split_k: std::env::var("ROCMFORGE_GPU_GEMM_SPLITK").as_deref() != Ok("0"),
            gemm_n256,
            gemm_k64,
            gemm_pf,
            narrow_matvec: env_flag("ROCMFORGE_GPU_NARROW_MATVEC"),
            matvec_v1: env_flag("ROCMFORGE_GPU_MATVEC_V1"),
            matvec_rows: match std::env::var("ROCMFORGE_GPU_MV_ROWS").as_deref() {
                Ok("1") => 1,
                Ok("2") => 2,
                Ok("4") => 4,
                _ => 0,
            },
            legacy_staged: env_flag("ROCMFORGE_GPU_LEGACY_STAGED"),
            dequant_words: std::sync::atomic::AtomicBool::new(!env_off("ROCMFORGE_GPU_DEQ_WORDS")),
            matvec_wpr: match std::env::var("ROCMFORGE_GPU_MV_WPR").as_deref() {
                Ok("1") => 1,
                Ok("2") => 2,
                Ok("4") => 4,
                _ => 0,
            },
            matvec_waves: env_usize("ROCMFORGE_GPU_MV_WAVES").unwrap_or(MATVEC_SPLIT_WAVES),
            matvec_waves_legacy: env_usize("ROCMFORGE_GPU_MV_WAVES_LEGACY")
                .or_else(|| env_usize("ROCMFORGE_GPU_MV_WAVES"))
                .unwrap_or(MATVEC_SPLIT_WAVES),
            q4_0_pairs: !env_off("ROCMFORGE_GPU_Q4_0_PAIRS"),
            q6k_addnorm,
            addnorm_wpr: (
                env_usize("ROCMFORGE_GPU_ADDNORM_WPR").unwrap_or(0).min(2),
                env_usize("ROCMFORGE_GPU_ADDNORM_WPR_K").unwrap_or(4096),
            ),
            skip_matvecs: std::env::var("ROCMFORGE_GPU_SKIP_MATVECS")
                .map(|v| parse_shapes(&v))
                .unwrap_or_default(),
            old_attention: env_flag("ROCMFORGE_GPU_OLD_ATTENTION"),
            wave_attention: env_flag("ROCMFORGE_GPU_WAVE_ATTENTION"),
            mma_attention: mma && !env_flag("ROCMFORGE_GPU_NO_MMA_ATTENTION"),
            gemm_scratch: Mutex::new(None),
            attn_scratch: Mutex::new(None),
            scratch_generation: AtomicU64::new(0),
        })
    }

    /// A counter that changes whenever one of the wrappers' own scratch
    /// buffers is freed for a larger one. Recorded launches (a captured
    /// graph) that may point into the old buffer are stale from then on.
    pub fn scratch_generation(&self) -> u64 {
        self.scratch_generation.load(Ordering::Acquire)
    }

    /// Where each family's code came from.
    pub fn origins(&self) -> &[(String, CodeOrigin)] {
        &self.origins
    }

    /// The device the kernels are loaded on.
    pub fn device(&self) -> &Arc<Device> {
        &self.device
    }

    fn f(&self, name: &str) -> Result<&Function> {
        self.functions
            .get(name)
            .ok_or_else(|| invalid(format!("kernel {name} is not loaded")))
    }

    /// Whether this device runs the matrix-unit matmul (`kernels/mma.hip`):
    /// NVIDIA compute capability 8.0 or newer (`mma.sync` with f16 inputs),
    /// unless `ROCMFORGE_GPU_NO_MMA=1` turned it off (for comparisons).
    pub fn has_mma(&self) -> bool {
        self.mma
    }

    /// Dequantize the prompt GEMM's Q4_K and Q6_K weights with whole-word
    /// loads (`dequant_f16_q4_k_pairs`, `dequant_f16_q6_k_halves`: the
    /// default) or a thread per 32-value chunk (`dequant_f16_<fmt>`); the
    /// same f16 values either way.
    pub fn set_dequant_words(&self, on: bool) {
        self.dequant_words.store(on, Ordering::Relaxed);
    }

    fn wave(&self) -> u32 {
        self.device.props().wave_size.max(1)
    }

    /// `y[t][r] = Σ_k w[r][k] · x[t][k]` for `n` rows of `k` elements in
    /// `format` and `t` activation rows.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(
        &self,
        stream: &Stream,
        format: GpuFormat,
        w: &DeviceBuffer<u8>,
        n: usize,
        k: usize,
        x: &DeviceBuffer<f32>,
        t: usize,
        y: &mut DeviceBuffer<f32>,
    ) -> Result<()> {
        let row_bytes = matmul_checks(format, w, n, k, x, t, y)?;
        if self.takes_gemm(k, x, t) {
            let mut parts = [MatmulPart { format, w, n, y }];
            return self.matmul_gemm(stream, &mut parts, k, x, t);
        }
        // `matmul_mma_<fmt>` (kernels/mma.hip) and `matmul_<fmt>`
        // (kernels/matmul.hip) take the same arguments.
        let (name, cfg) = if t >= MMA_MIN_TOKENS
            && self.has_mma()
            && k.is_multiple_of(32)
            && x.device_ptr().is_multiple_of(16)
        {
            let cfg = LaunchConfig {
                grid: (blocks(n, MMA_TILE_ROWS)?, blocks(t, MMA_TILE_TOKENS)?, 1),
                block: (256, 1, 1),
                shared_bytes: 0,
            };
            (format!("matmul_mma_{}", format.kernel_suffix()), cfg)
        } else {
            let waves = 4u32;
            let cfg = LaunchConfig {
                grid: (blocks(n, waves as usize)?, blocks(t, MM_TOKENS)?, 1),
                block: (waves * self.wave(), 1, 1),
                shared_bytes: 0,
            };
            (format!("matmul_{}", format.kernel_suffix()), cfg)
        };
        let args = KernelArgs::new()
            .ptr(w.device_ptr())
            .i32(to_i32("row bytes", row_bytes)?)
            .i32(to_i32("k", k)?)
            .i32(to_i32("n", n)?)
            .ptr(x.device_ptr())
            .i32(to_i32("t", t)?)
            .ptr(y.device_ptr());
        let f = self.f(&name)?;
        // SAFETY: the argument list matches `matmul_<fmt>` and `matmul_mma_<fmt>`;
        // the lengths were checked above against what the kernels touch (the
        // matrix-unit one also needs k a multiple of 32 and x 16-byte aligned,
        // checked where it is picked).
        unsafe { f.launch(stream, cfg, &args) }
    }

    /// [`Kernels::matmul`] of one input by several weights (`parts`, each
    /// `n` rows of `k` values and its output): for many tokens the input is
    /// converted to f16 once for all of them.
    pub fn matmul_many(
        &self,
        stream: &Stream,
        parts: &mut [MatmulPart<'_>],
        k: usize,
        x: &DeviceBuffer<f32>,
        t: usize,
    ) -> Result<()> {
        if !self.takes_gemm(k, x, t) {
            for p in parts.iter_mut() {
                self.matmul(stream, p.format, p.w, p.n, k, x, t, p.y)?;
            }
            return Ok(());
        }
        for p in parts.iter() {
            matmul_checks(p.format, p.w, p.n, k, x, t, p.y)?;
        }
        self.matmul_gemm(stream, parts, k, x, t)
    }

    /// Whether a matmul of `t` rows of `k` values in `x` takes the f16 GEMM.
    fn takes_gemm(&self, k: usize, x: &DeviceBuffer<f32>, t: usize) -> bool {
        t >= GEMM_MIN_TOKENS
            && self.gemm
            && k.is_multiple_of(32)
            && x.device_ptr().is_multiple_of(16)
    }

    /// [`Kernels::matmul`] for many tokens: the activations converted to f16
    /// once, then for each part its weight dequantized to f16 (scratch kept
    /// between calls) and one f16 GEMM on the matrix units. Lengths checked
    /// by the caller (`matmul_checks`).
    fn matmul_gemm(
        &self,
        stream: &Stream,
        parts: &mut [MatmulPart<'_>],
        k: usize,
        x: &DeviceBuffer<f32>,
        t: usize,
    ) -> Result<()> {
        let mut scratch = self.gemm_scratch.lock().unwrap_or_else(|p| p.into_inner());
        let w_need = parts.iter().map(|p| p.n * k).max().unwrap_or(0);
        let x_need = t * k;
        if scratch
            .as_ref()
            .is_none_or(|(wh, xh)| wh.len() < w_need || xh.len() < x_need)
        {
            let old = scratch.take();
            let (w_len, x_len) = old.as_ref().map_or((0, 0), |(a, b)| (a.len(), b.len()));
            if old.is_some() {
                self.scratch_generation.fetch_add(1, Ordering::AcqRel);
            }
            drop(old);
            *scratch = Some((
                DeviceBuffer::alloc(&self.device, w_len.max(w_need))?,
                DeviceBuffer::alloc(&self.device, x_len.max(x_need))?,
            ));
        }
        let Some((wh, xh)) = scratch.as_mut() else {
            return Err(invalid("matmul: no f16 scratch".into()));
        };
        let cfg = LaunchConfig {
            grid: (blocks(t * k / 4, BLOCK_1D)?, 1, 1),
            block: (BLOCK_1D as u32, 1, 1),
            shared_bytes: 0,
        };
        let args = KernelArgs::new()
            .ptr(x.device_ptr())
            .i32(to_i32("t·k", t * k)?)
            .ptr(xh.device_ptr());
        // SAFETY: matches `f32_to_f16`: t·k floats read (checked by the caller,
        // 16-byte aligned), t·k halves written (scratch length checked above).
        unsafe { self.f("f32_to_f16")?.launch(stream, cfg, &args)? };
        for part in parts.iter_mut() {
            self.gemm_part(stream, part, k, t, wh, xh)?;
        }
        Ok(())
    }

    /// One weight of [`Kernels::matmul_gemm`]: dequantized to f16 into `wh`
    /// (which holds at least its values), then one f16 GEMM against the
    /// converted activations `xh` (`t` rows of `k`) into the part's output.
    fn gemm_part(
        &self,
        stream: &Stream,
        part: &mut MatmulPart<'_>,
        k: usize,
        t: usize,
        wh: &DeviceBuffer<u16>,
        xh: &DeviceBuffer<u16>,
    ) -> Result<()> {
        let (format, w, n) = (part.format, part.w, part.n);
        let y = &mut *part.y;
        let row_bytes = format
            .row_bytes(k)
            .ok_or_else(|| invalid(format!("matmul: row of {k} in {format:?}")))?;
        // Q4_K with whole-word loads, a thread per 64 values, where the
        // weight is 16-byte aligned (its rows are: 144-byte super-blocks);
        // otherwise a thread per 32-value chunk.
        // Q6_K with 32-bit loads, a thread per 128 values (its blocks
        // are 2-byte aligned).
        let words = self.dequant_words.load(Ordering::Relaxed);
        let (name, per_thread, threads) = match format {
            GpuFormat::Q4K
                if words && w.device_ptr().is_multiple_of(16) && row_bytes.is_multiple_of(16) =>
            {
                ("dequant_f16_q4_k_pairs".to_string(), 64, BLOCK_1D)
            }
            GpuFormat::Q6K if words && row_bytes.is_multiple_of(2) => {
                ("dequant_f16_q6_k_halves".to_string(), 128, 128)
            }
            _ => (
                format!("dequant_f16_{}", format.kernel_suffix()),
                32,
                BLOCK_1D,
            ),
        };
        let cfg = LaunchConfig {
            grid: (blocks(n * (k / per_thread), threads)?, 1, 1),
            block: (threads as u32, 1, 1),
            shared_bytes: 0,
        };
        let args = KernelArgs::new()
            .ptr(w.device_ptr())
            .i32(to_i32("row bytes", row_bytes)?)
            .i32(to_i32("k", k)?)
            .i32(to_i32("n", n)?)
            .ptr(wh.device_ptr());
        // SAFETY: matches `dequant_f16_<fmt>`, `dequant_f16_q4_k_pairs` and
        // `dequant_f16_q6_k_halves`: reads n rows of row_bytes (checked by
        // the caller; the 16-byte loads of the second need the alignment
        // checked above, the third's 32-bit loads stay within its blocks'
        // aligned words), writes n·k halves (the scratch holds at least
        // that).
        unsafe { self.f(&name)?.launch(stream, cfg, &args)? };
        // 64-token tiles when 128-token ones would leave a quarter of the
        // compute units idle (measured on an H200: 8x4 blocks 110 -> 84 µs
        // with 64-token tiles, 32x4 blocks 200 -> 219 µs).
        let cus = self.device.props().compute_units.max(1) as usize;
        let small = 4 * n.div_ceil(GEMM_TILE) * t.div_ceil(GEMM_TILE) < 3 * cus;
        // Opt-in 128 × 256 tiles (set only with three stages).
        let n256 = match self.gemm_n256 {
            1 => !small,
            2 => true,
            _ => false,
        };
        let (tile_t, tile_n) = if n256 {
            (GEMM_TILE, 2 * GEMM_TILE)
        } else if small {
            (GEMM_TILE / 2, GEMM_TILE)
        } else {
            (GEMM_TILE, GEMM_TILE)
        };
        // Opt-in k-steps of 64 (set only with three stages) where K allows
        // them, their _pf twins with ROCMFORGE_GPU_GEMM_PF=1; the 128 × 256
        // tiles take precedence.
        let k64 = self.gemm_k64 && !n256 && k.is_multiple_of(GEMM_K64_STEP);
        let k_step = if k64 { GEMM_K64_STEP } else { GEMM_K_STEP };
        let deep = if k64 && self.gemm_pf {
            GEMM_K64_PF_KERNELS
        } else if k64 {
            GEMM_K64_KERNELS
        } else {
            gemm_deep_kernels(self.gemm_stages)
        };
        let (name, shared_bytes) = match (self.gemm_stages, small) {
            _ if n256 => GEMM_N256_KERNEL,
            (2, true) => ("gemm_f16_tn_m64", 0),
            (2, false) => ("gemm_f16_tn", 0),
            (_, true) => deep[1],
            (_, false) => deep[0],
        };
        // Grids of fewer blocks than compute units split k in two (the deep
        // kernels only): each half adds its sums to the zeroed output, and
        // takes a whole number of the kernel's k-steps.
        let grid_xy = blocks(n, tile_n)? as usize * blocks(t, tile_t)? as usize;
        let split = self.gemm_stages > 2
            && self.gemm_split_k
            && grid_xy < cus
            && (k / k_step).is_multiple_of(2);
        if split {
            y.fill_zero_first(stream, t * n)?;
        }
        let cfg = LaunchConfig {
            grid: (
                blocks(n, tile_n)?,
                blocks(t, tile_t)?,
                if split { 2 } else { 1 },
            ),
            block: (256, 1, 1),
            shared_bytes,
        };
        let args = KernelArgs::new()
            .ptr(xh.device_ptr())
            .ptr(wh.device_ptr())
            .i32(to_i32("t", t)?)
            .i32(to_i32("n", n)?)
            .i32(to_i32("k", k)?)
            .ptr(y.device_ptr());
        // SAFETY: matches `gemm_f16_tn` (and its m64, deep-pipeline,
        // 128 × 256, k64 and k64 _pf variants, same parameters): A = t×k and
        // B = n×k halves (written above), C = t×n floats (checked by the
        // caller; every variant skips rows and columns past t and n of its
        // tiles); k a multiple of 32, and of 64 for the k64 and _pf ones
        // (checked above); the deep ones get the dynamic shared memory they
        // index (their limit raised when the kernels were loaded, the
        // 128 × 256, k64 and _pf ones chosen only where that succeeded).
        unsafe { self.f(name)?.launch(stream, cfg, &args)? };
        Ok(())
    }

    /// `out[i] = row ids[ids_range.start + i] of a table of `n_rows` rows of
    /// `k` elements`, dequantized. Ids out of range give zero rows (check
    /// them first).
    #[allow(clippy::too_many_arguments)]
    pub fn get_rows(
        &self,
        stream: &Stream,
        format: GpuFormat,
        table: &DeviceBuffer<u8>,
        n_rows: usize,
        k: usize,
        ids: &DeviceBuffer<u32>,
        ids_range: std::ops::Range<usize>,
        out: &mut DeviceBuffer<f32>,
    ) -> Result<()> {
        let row_bytes = format.row_bytes(k).ok_or_else(|| {
            invalid(format!(
                "get_rows: row of {k} is not whole blocks of {format:?}"
            ))
        })?;
        need("get_rows table", table.len(), n_rows * row_bytes)?;
        need("get_rows ids", ids.len(), ids_range.end)?;
        let n_ids = ids_range.end.saturating_sub(ids_range.start);
        need("get_rows output", out.len(), n_ids * k)?;
        if n_ids == 0 {
            return Ok(());
        }
        let cfg = LaunchConfig {
            grid: (to_i32("ids", n_ids)? as u32, 1, 1),
            block: (128, 1, 1),
            shared_bytes: 0,
        };
        let args = KernelArgs::new()
            .ptr(table.device_ptr())
            .i32(to_i32("row bytes", row_bytes)?)
            .i32(to_i32("k", k)?)
            .ptr(ids.device_ptr() + 4 * ids_range.start as u64)
            .i32(to_i32("rows", n_rows)?)
            .ptr(out.device_ptr());
        let f = self.f(&format!("get_rows_{}", format.kernel_suffix()))?;
        // SAFETY: matches `get_rows_<fmt>`; the kernel bounds-checks ids and
        // the buffer lengths were checked above.
        unsafe { f.launch(stream, cfg, &args) }
    }

    /// RMS-normalise `x` as groups of `group` values (`x.len()` a multiple of
    /// `group`), times `w` (length `group`) when given.
    #[allow(clippy::too_many_arguments)]
    pub fn rms_norm(
        &self,
        stream: &Stream,
        x: &DeviceBuffer<f32>,
        w: Option<&DeviceBuffer<f32>>,
        group: usize,
        eps: f32,
        out: &mut DeviceBuffer<f32>,
        q8: Option<Q8Out<'_>>,
    ) -> Result<()> {
        self.norm_groups(stream, x, None, w, group, eps, out, q8)
    }

    /// `x += y`, then `out` = [`Kernels::rms_norm`] of the new `x`: a
    /// residual add and the next norm in one launch.
    #[allow(clippy::too_many_arguments)]
    pub fn add_rms_norm(
        &self,
        stream: &Stream,
        x: &mut DeviceBuffer<f32>,
        y: &DeviceBuffer<f32>,
        w: Option<&DeviceBuffer<f32>>,
        group: usize,
        eps: f32,
        out: &mut DeviceBuffer<f32>,
        q8: Option<Q8Out<'_>>,
    ) -> Result<()> {
        self.norm_groups(stream, x, Some(y), w, group, eps, out, q8)
    }

    /// `rms_norm_f32` (no `y`) or `add_rms_norm_f32` (x += y first); with
    /// `q8`, one group only, also its 8-bit form for the decode mat-vecs.
    #[allow(clippy::too_many_arguments)]
    fn norm_groups(
        &self,
        stream: &Stream,
        x: &DeviceBuffer<f32>,
        y: Option<&DeviceBuffer<f32>>,
        w: Option<&DeviceBuffer<f32>>,
        group: usize,
        eps: f32,
        out: &mut DeviceBuffer<f32>,
        q8: Option<Q8Out<'_>>,
    ) -> Result<()> {
        if group == 0 || !x.len().is_multiple_of(group) {
            return Err(invalid(format!(
                "rms_norm: {} values are not groups of {group}",
                x.len()
            )));
        }
        need("rms_norm output", out.len(), x.len())?;
        if let Some(y) = y {
            need("add_rms_norm addend", y.len(), x.len())?;
        }
        if let Some(w) = w {
            need("rms_norm weight", w.len(), group)?;
        }
        let groups = x.len() / group;
        let (q_ptr, ds_ptr) = match &q8 {
            Some(o) => {
                if groups != 1 {
                    return Err(invalid(format!(
                        "rms_norm: 8-bit output of {groups} groups (one only)"
                    )));
                }
                o.check("rms_norm", group)?
            }
            None => (0, 0),
        };
        // Few long groups (one token's hidden state): a wide block, so that
        // the row is read with one float4 per thread.
        let threads = if groups < 64 && group >= 2048 {
            1024
        } else {
            BLOCK_1D as u32
        };
        let cfg = LaunchConfig {
            grid: (to_i32("groups", groups)? as u32, 1, 1),
            block: (threads, 1, 1),
            shared_bytes: 0,
        };
        let mut args = KernelArgs::new().ptr(x.device_ptr());
        if let Some(y) = y {
            args = args.ptr(y.device_ptr());
        }
        let args = args
            .ptr(w.map_or(0, |w| w.device_ptr()))
            .i32(to_i32("group", group)?)
            .f32(eps)
            .ptr(out.device_ptr())
            .ptr(q_ptr)
            .ptr(ds_ptr);
        let name = if y.is_some() {
            "add_rms_norm_f32"
        } else {
            "rms_norm_f32"
        };
        // SAFETY: matches `rms_norm_f32` / `add_rms_norm_f32` (which writes x:
        // the caller holds it mutably); lengths checked above, the 8-bit
        // buffers by `Q8Out::check` (the caller holds them mutably).
        unsafe { self.f(name)?.launch(stream, cfg, &args) }
    }

    /// Layer-normalise rows of `cols`, then `* w + b` where given.
    #[allow(clippy::too_many_arguments)]
    pub fn layer_norm(
        &self,
        stream: &Stream,
        x: &DeviceBuffer<f32>,
        w: Option<&DeviceBuffer<f32>>,
        b: Option<&DeviceBuffer<f32>>,
        cols: usize,
        eps: f32,
        out: &mut DeviceBuffer<f32>,
    ) -> Result<()> {
        if cols == 0 || !x.len().is_multiple_of(cols) {
            return Err(invalid(format!(
                "layer_norm: {} values are not rows of {cols}",
                x.len()
            )));
        }
        need("layer_norm output", out.len(), x.len())?;
        for v in [w, b].into_iter().flatten() {
            need("layer_norm weight", v.len(), cols)?;
        }
        let cfg = LaunchConfig {
            grid: (to_i32("rows", x.len() / cols)? as u32, 1, 1),
            block: (BLOCK_1D as u32, 1, 1),
            shared_bytes: 0,
        };
        let args = KernelArgs::new()
            .ptr(x.device_ptr())
            .ptr(w.map_or(0, |w| w.device_ptr()))
            .ptr(b.map_or(0, |b| b.device_ptr()))
            .i32(to_i32("cols", cols)?)
            .f32(eps)
            .ptr(out.device_ptr());
        // SAFETY: matches `layer_norm_f32`; lengths checked above.
        unsafe { self.f("layer_norm_f32")?.launch(stream, cfg, &args) }
    }

    /// RoPE in place on `rows` rows of `n_heads × head_dim`.
    pub fn rope(
        &self,
        stream: &Stream,
        x: &mut DeviceBuffer<f32>,
        pos: &DeviceBuffer<u32>,
        p: &RopeParams,
    ) -> Result<()> {
        self.rope_pair(stream, x, None, pos, p, None)
    }

    /// RoPE in place on `x` and, when given, on `(x2, n_heads2)`: rows of
    /// `n_heads2 × head_dim` at the same positions, in the same launch (a
    /// layer's queries and keys). With `store` (and `x2`, every head dim
    /// rotated) the rotated `x2` rows and the value rows also go into the
    /// KV cache in that launch.
    pub fn rope_pair(
        &self,
        stream: &Stream,
        x: &mut DeviceBuffer<f32>,
        x2: Option<(&mut DeviceBuffer<f32>, usize)>,
        pos: &DeviceBuffer<u32>,
        p: &RopeParams,
        store: Option<RopeStore<'_>>,
    ) -> Result<()> {
        if p.n_dims > p.head_dim || !p.n_dims.is_multiple_of(2) {
            return Err(invalid(format!(
                "rope: {} rotated dims for heads of {}",
                p.n_dims, p.head_dim
            )));
        }
        need("rope input", x.len(), p.rows * p.n_heads * p.head_dim)?;
        need("rope positions", pos.len(), p.rows)?;
        let (x2_ptr, n_heads2) = match x2 {
            Some((b, n)) => {
                need("rope second input", b.len(), p.rows * n * p.head_dim)?;
                (b.device_ptr(), n)
            }
            None => (0, 0),
        };
        // Threads of the rotation: one per row, group of ROPE_HEADS heads
        // and rotated pair (kernels/rope.hip, RF_ROPE_HEADS).
        let pairs = p.rows * (p.n_heads + n_heads2).div_ceil(ROPE_HEADS) * (p.n_dims / 2);
        let (kc, vs, vc, nv, at_pos) = match &store {
            Some(st) => {
                if n_heads2 == 0 || p.n_dims != p.head_dim {
                    return Err(invalid(format!(
                        "rope: cache write needs keys with every dim rotated ({} of {})",
                        p.n_dims, p.head_dim
                    )));
                }
                let n = p.rows * n_heads2 * p.head_dim;
                need(
                    "rope key cache",
                    st.k_dst.len().saturating_sub(st.dst_off),
                    n,
                )?;
                need(
                    "rope value cache",
                    st.v_dst.len().saturating_sub(st.dst_off),
                    n,
                )?;
                need("rope values", st.v_src.len(), n)?;
                let at = 4 * st.dst_off as u64;
                (
                    st.k_dst.device_ptr() + at,
                    st.v_src.device_ptr(),
                    st.v_dst.device_ptr() + at,
                    n,
                    st.at_pos,
                )
            }
            None => (0, 0, 0, 0, false),
        };
        let cfg = LaunchConfig {
            grid: (blocks(pairs + nv, BLOCK_1D)?, 1, 1),
            block: (BLOCK_1D as u32, 1, 1),
            shared_bytes: 0,
        };
        let args = KernelArgs::new()
            .ptr(x.device_ptr())
            .ptr(pos.device_ptr())
            .i32(to_i32("rows", p.rows)?)
            .i32(to_i32("heads", p.n_heads)?)
            .ptr(x2_ptr)
            .i32(to_i32("heads", n_heads2)?)
            .i32(to_i32("head_dim", p.head_dim)?)
            .i32(to_i32("n_dims", p.n_dims)?)
            .i32(p.neox as i32)
            .f32(p.theta_scale)
            .f32(p.freq_scale)
            .f32(p.ext_factor)
            .f32(p.attn_factor)
            .f32(p.corr_dims[0])
            .f32(p.corr_dims[1])
            .ptr(kc)
            .ptr(vs)
            .ptr(vc)
            .i32(to_i32("values", nv)?)
            .i32(at_pos as i32);
        // SAFETY: matches `rope_f32`; lengths checked above (x2 null only
        // with n_heads2 = 0, when the kernel never touches it; the cache
        // rows from their offsets and the values for `nv`).
        unsafe { self.f("rope_f32")?.launch(stream, cfg, &args) }
    }

    #[allow(clippy::too_many_arguments)]
    /// Causal attention of `p.rows` query rows (row i at position
    /// `p.start_pos + i`) over one layer's K/V (`[n_ctx][n_kv × head_dim]`).
    /// With `q8` (one row, `head_dim` a multiple of 32, `q_offset` 0) the
    /// output row is also written in 8-bit form for the decode mat-vec.
    /// With `dyn_pos` the kernels read the start position from its first
    /// element instead of `p.start_pos` (which still chooses the plan, see
    /// [`Kernels::attention_splits`], and sizes the checks): the caller
    /// guarantees that the keys up to that position are in the cache.
    pub fn attention(
        &self,
        stream: &Stream,
        q: &DeviceBuffer<f32>,
        q_offset: usize,
        k: &DeviceBuffer<f32>,
        v: &DeviceBuffer<f32>,
        kv_offset: usize,
        p: &AttnParams,
        out: &mut DeviceBuffer<f32>,
        q8: Option<Q8Out<'_>>,
        dyn_pos: Option<&DeviceBuffer<u32>>,
    ) -> Result<()> {
        if p.n_kv == 0
            || !p.n_head.is_multiple_of(p.n_kv)
            || p.head_dim == 0
            || p.head_dim > ATT_MAX_HEAD_DIM
        {
            return Err(invalid(format!(
                "attention: {} heads over {} KV heads of {}",
                p.n_head, p.n_kv, p.head_dim
            )));
        }
        let q_len = p.rows * p.n_head * p.head_dim;
        need("attention query", q.len(), q_offset + q_len)?;
        need("attention output", out.len(), q_offset + q_len)?;
        let kv_len = (p.start_pos + p.rows) * p.n_kv * p.head_dim;
        need("attention keys", k.len(), kv_offset + kv_len)?;
        need("attention values", v.len(), kv_offset + kv_len)?;
        let (oq, ods) = match &q8 {
            Some(o) => {
                if p.rows != 1 || q_offset != 0 || !p.head_dim.is_multiple_of(32) {
                    return Err(invalid(format!(
                        "attention: 8-bit output of {} rows at offset {q_offset} with heads of {}",
                        p.rows, p.head_dim
                    )));
                }
                o.check("attention", p.n_head * p.head_dim)?
            }
            None => (0, 0),
        };
        let dyn_ptr = match dyn_pos {
            Some(d) => {
                need("attention position", d.len(), 1)?;
                if p.rows >= ATT_TILE_ROWS {
                    return Err(invalid(format!(
                        "attention: position read on the device for {} rows",
                        p.rows
                    )));
                }
                d.device_ptr()
            }
            None => 0,
        };
        let blocks_1 = p.n_head * p.rows;
        let splits = self.attention_splits(p);
        let shared_bytes = ((p.head_dim + ATT_THREADS as usize) * 4) as u32;
        let grid_hr = (
            to_i32("heads", p.n_head)? as u32,
            to_i32("rows", p.rows)? as u32,
        );
        let q_ptr = q.device_ptr() + (q_offset * 4) as u64;
        let o_ptr = out.device_ptr() + (q_offset * 4) as u64;
        let (k_ptr, v_ptr) = (
            k.device_ptr() + (kv_offset * 4) as u64,
            v.device_ptr() + (kv_offset * 4) as u64,
        );
        let common = |args: KernelArgs| -> Result<KernelArgs> {
            Ok(args
                .i32(to_i32("start_pos", p.start_pos)?)
                .i32(to_i32("heads", p.n_head)?)
                .i32(to_i32("kv heads", p.n_kv)?)
                .i32(to_i32("head_dim", p.head_dim)?)
                .f32(p.scale)
                .i32(to_i32("window", p.window.unwrap_or(0))?)
                .f32(p.softcap.unwrap_or(0.0)))
        };
        if splits == 1 && p.rows >= ATT_TILE_ROWS && p.head_dim <= ATT_TILE_MAX_HEAD_DIM && oq == 0
        {
            // On the matrix units where the device has them, for heads of
            // 64 or 128 dims on 16-byte boundaries (f16 operands).
            let mma = self.mma_attention
                && (p.head_dim == 64 || p.head_dim == 128)
                && [q_ptr, o_ptr, k_ptr, v_ptr]
                    .iter()
                    .all(|a| a.is_multiple_of(16));
            let (name, cfg) = if mma {
                (
                    if p.head_dim == 64 {
                        "attention_mma_h64"
                    } else {
                        "attention_mma_h128"
                    },
                    LaunchConfig {
                        grid: (grid_hr.0, blocks(p.rows, ATT_MMA_ROWS)?, 1),
                        block: (128, 1, 1),
                        shared_bytes: 0,
                    },
                )
            } else {
                (
                    "attention_tiled_f32",
                    LaunchConfig {
                        grid: (grid_hr.0, blocks(p.rows, ATT_TILE_ROWS)?, 1),
                        block: ((ATT_TILE_ROWS * 16) as u32, 1, 1),
                        shared_bytes: 0,
                    },
                )
            };
            let args = KernelArgs::new()
                .ptr(q_ptr)
                .ptr(k_ptr)
                .ptr(v_ptr)
                .ptr(o_ptr)
                .i32(to_i32("start_pos", p.start_pos)?)
                .i32(to_i32("rows", p.rows)?)
                .i32(to_i32("heads", p.n_head)?)
                .i32(to_i32("kv heads", p.n_kv)?)
                .i32(to_i32("head_dim", p.head_dim)?)
                .f32(p.scale)
                .i32(to_i32("window", p.window.unwrap_or(0))?)
                .f32(p.softcap.unwrap_or(0.0));
            // SAFETY: matches `attention_tiled_f32` and `attention_mma_h64/128`
            // (same parameters); lengths (with offsets) checked above,
            // head_dim within the kernels' static tiles (the matrix-unit ones
            // only for exactly their head size, rows 16-byte aligned).
            return unsafe { self.f(name)?.launch(stream, cfg, &args) };
        }
        let wave = self.device.props().wave_size.max(1) as usize;
        let aligned16 = [q_ptr, o_ptr, k_ptr, v_ptr]
            .iter()
            .all(|a| a.is_multiple_of(16));
        if splits == 1 {
            // A key row per wave where the head fits four values per lane
            // and every row is 16-byte aligned, else a key row per thread.
            let per_wave = !self.old_attention
                && p.head_dim.is_multiple_of(4)
                && p.head_dim <= 4 * wave
                && aligned16;
            // A key per group of 8 lanes for heads of 32..=128 dims.
            let key_groups = per_wave
                && !self.wave_attention
                && p.head_dim.is_multiple_of(32)
                && p.head_dim <= ATT_KEYGROUPS_MAX_HEAD_DIM;
            let (name, block, shared_bytes) = if key_groups {
                ("attention_keygroups_f32", ATT_KEYGROUPS_THREADS, 0)
            } else if per_wave {
                ("attention_decode_f32", ATT_DECODE_WAVES * wave, 0)
            } else {
                ("attention_f32", ATT_THREADS as usize, shared_bytes)
            };
            let cfg = LaunchConfig {
                grid: (grid_hr.0, grid_hr.1, 1),
                block: (block as u32, 1, 1),
                shared_bytes,
            };
            let args = common(
                KernelArgs::new()
                    .ptr(q_ptr)
                    .ptr(k_ptr)
                    .ptr(v_ptr)
                    .ptr(o_ptr),
            )?
            .ptr(oq)
            .ptr(ods)
            .ptr(dyn_ptr);
            // SAFETY: matches `attention_keygroups_f32`,
            // `attention_decode_f32` and `attention_f32` (same parameters);
            // lengths (with offsets) checked above; the first two only with
            // every row 16-byte aligned (pointers checked, head_dim a
            // multiple of 4), the first with head_dim a multiple of 32 up to
            // its static bound, the second with at most 4 values per lane,
            // the third with the shared memory size it indexes; the 8-bit
            // buffers by `Q8Out::check`.
            return unsafe { self.f(name)?.launch(stream, cfg, &args) };
        }
        let parts = blocks_1 * splits;
        let mut scratch = self.attn_scratch.lock().unwrap_or_else(|p| p.into_inner());
        let (o_need, ml_need) = (parts * p.head_dim, parts * 2);
        if scratch
            .as_ref()
            .is_none_or(|(o, ml)| o.len() < o_need || ml.len() < ml_need)
        {
            let old = scratch.take();
            if old.is_some() {
                self.scratch_generation.fetch_add(1, Ordering::AcqRel);
            }
            // Room for the most splits of these rows and heads, so that a
            // growing context does not reallocate.
            let most = blocks_1 * 64;
            let (o_len, ml_len) = old.as_ref().map_or((0, 0), |(a, b)| (a.len(), b.len()));
            drop(old);
            *scratch = Some((
                DeviceBuffer::alloc(&self.device, o_len.max(most * p.head_dim))?,
                DeviceBuffer::alloc(&self.device, ml_len.max(most * 2))?,
            ));
        }
        let Some((part_o, part_ml)) = scratch.as_ref() else {
            return Err(invalid("attention: split scratch missing".into()));
        };
        let cfg = LaunchConfig {
            grid: (grid_hr.0, grid_hr.1, splits as u32),
            block: (ATT_THREADS, 1, 1),
            shared_bytes,
        };
        let args = common(
            KernelArgs::new()
                .ptr(q_ptr)
                .ptr(k_ptr)
                .ptr(v_ptr)
                .ptr(part_o.device_ptr())
                .ptr(part_ml.device_ptr()),
        )?
        .ptr(dyn_ptr);
        // SAFETY: matches `attention_split_f32`; the partial buffers hold
        // at least rows x heads x splits entries, the rest as for
        // `attention_f32`.
        unsafe { self.f("attention_split_f32")?.launch(stream, cfg, &args) }?;
        let cfg = LaunchConfig {
            grid: (grid_hr.0, grid_hr.1, 1),
            block: (ATT_THREADS, 1, 1),
            shared_bytes: 0,
        };
        let args = KernelArgs::new()
            .ptr(part_o.device_ptr())
            .ptr(part_ml.device_ptr())
            .ptr(o_ptr)
            .i32(to_i32("heads", p.n_head)?)
            .i32(to_i32("head_dim", p.head_dim)?)
            .i32(splits as i32)
            .ptr(oq)
            .ptr(ods);
        // SAFETY: matches `attention_combine_f32`; reads the partials written
        // above and writes the rows checked above. The partial buffers stay
        // in the scratch (one stream: the next use is ordered after this).
        unsafe { self.f("attention_combine_f32")?.launch(stream, cfg, &args) }
    }

    /// RoPE of one query row `q` (`p.n_head` heads) and of its key row
    /// `k_new` (`p.n_kv` heads), the cache write of that key and of the
    /// value row `v_new` into the layer's cache `kc`/`vc` at position
    /// `pos[0]`, and attention of the row over the cache: what
    /// [`Kernels::rope_pair`] with a cache write followed by
    /// [`Kernels::attention`] compute, in one launch. `p.start_pos` is the
    /// position as the host knows it (it chooses the plan and sizes the
    /// checks; `pos[0]` is what the kernel uses, which the caller
    /// guarantees fits the cache). Only where
    /// [`Kernels::attention_rope_fits`].
    #[allow(clippy::too_many_arguments)]
    pub fn attention_rope(
        &self,
        stream: &Stream,
        q: &DeviceBuffer<f32>,
        k_new: &DeviceBuffer<f32>,
        v_new: &DeviceBuffer<f32>,
        kc: &mut DeviceBuffer<f32>,
        vc: &mut DeviceBuffer<f32>,
        pos: &DeviceBuffer<u32>,
        p: &AttnParams,
        rope: &RopeParams,
        out: &mut DeviceBuffer<f32>,
        q8: Option<Q8Out<'_>>,
    ) -> Result<()> {
        if !self.attention_rope_fits(p, rope, [q, k_new, v_new, &*kc, &*vc, &*out]) {
            return Err(invalid(format!(
                "attention_rope: not for {p:?} with {rope:?} (or rows off 16-byte boundaries)"
            )));
        }
        let wave = self.device.props().wave_size.max(1) as usize;
        let hd = p.head_dim;
        let (q_len, kv_row) = (p.n_head * hd, p.n_kv * hd);
        need("attention query", q.len(), q_len)?;
        need("attention output", out.len(), q_len)?;
        need("attention new key", k_new.len(), kv_row)?;
        need("attention new value", v_new.len(), kv_row)?;
        need("attention keys", kc.len(), (p.start_pos + 1) * kv_row)?;
        need("attention values", vc.len(), (p.start_pos + 1) * kv_row)?;
        need("attention position", pos.len(), 1)?;
        let (oq, ods) = match &q8 {
            Some(o) => {
                if !hd.is_multiple_of(32) {
                    return Err(invalid(format!(
                        "attention_rope: 8-bit output with heads of {hd}"
                    )));
                }
                o.check("attention", q_len)?
            }
            None => (0, 0),
        };
        let key_groups = self.attention_rope_key_groups(p, rope);
        let cfg = LaunchConfig {
            grid: (to_i32("heads", p.n_head)? as u32, 1, 1),
            block: (
                if key_groups {
                    ATT_KEYGROUPS_THREADS
                } else {
                    ATT_DECODE_WAVES * wave
                } as u32,
                1,
                1,
            ),
            shared_bytes: 0,
        };
        let mut args = KernelArgs::new()
            .ptr(q.device_ptr())
            .ptr(k_new.device_ptr())
            .ptr(v_new.device_ptr())
            .ptr(kc.device_ptr())
            .ptr(vc.device_ptr());
        if key_groups {
            // The caches again, as the read-only views of the earlier rows.
            args = args.ptr(kc.device_ptr()).ptr(vc.device_ptr());
        }
        let args = args
            .ptr(out.device_ptr())
            .ptr(pos.device_ptr())
            .i32(to_i32("heads", p.n_head)?)
            .i32(to_i32("kv heads", p.n_kv)?)
            .i32(to_i32("head_dim", hd)?)
            .f32(p.scale)
            .i32(to_i32("window", p.window.unwrap_or(0))?)
            .f32(p.softcap.unwrap_or(0.0))
            .ptr(oq)
            .ptr(ods)
            .i32(rope.neox as i32)
            .f32(rope.theta_scale)
            .f32(rope.freq_scale)
            .f32(rope.ext_factor)
            .f32(rope.attn_factor)
            .f32(rope.corr_dims[0])
            .f32(rope.corr_dims[1]);
        let name = if key_groups {
            "attention_keygroups_rope_f32"
        } else {
            "attention_decode_rope_f32"
        };
        // SAFETY: matches `attention_keygroups_rope_f32` (heads of a
        // multiple of 32 values up to its static bound, NeoX only with a
        // multiple of 64: `attention_rope_key_groups`) or `attention_decode_rope_f32`
        // (heads of a multiple of 4 values, at most 4 per lane, NeoX
        // partners a power-of-two lane distance apart); one row on 16-byte
        // boundaries (checked by `attention_rope_fits`), lengths checked
        // above (the cache up to `p.start_pos`; the caller guarantees that
        // `pos[0]` fits it), the 8-bit buffers by `Q8Out::check`.
        unsafe { self.f(name)?.launch(stream, cfg, &args) }
    }

    /// Whether [`Kernels::attention_rope`] runs the key-group kernel
    /// (`attention_keygroups_rope_f32`, not the wave-per-key one) for `p`
    /// and `rope`: heads of a multiple of 32 values up to 128 (NeoX: a
    /// multiple of 64, so that partners are in the same lane).
    pub fn attention_rope_key_groups(&self, p: &AttnParams, rope: &RopeParams) -> bool {
        let hd = p.head_dim;
        !self.wave_attention
            && hd.is_multiple_of(32)
            && hd <= ATT_KEYGROUPS_MAX_HEAD_DIM
            && (!rope.neox || hd.is_multiple_of(64))
    }

    /// Whether [`Kernels::attention_rope`] takes `p` and `rope` with these
    /// buffers (query, new key, new value, key cache, value cache, output):
    /// one row, every dim rotated, no split of the keys at this length,
    /// heads the key-group kernel takes (`attention_rope_key_groups`) or of a multiple
    /// of 4 values that fit a wave's four per lane (NeoX partners a
    /// power-of-two lane distance apart), rows on 16-byte boundaries.
    pub fn attention_rope_fits(
        &self,
        p: &AttnParams,
        rope: &RopeParams,
        bufs: [&DeviceBuffer<f32>; 6],
    ) -> bool {
        let wave = self.device.props().wave_size.max(1) as usize;
        let hd = p.head_dim;
        let neox_ok = !rope.neox || (hd >= 8 && (hd / 8).is_power_of_two() && hd / 8 < wave);
        p.rows == 1
            && rope.rows == 1
            && rope.n_dims == hd
            && rope.head_dim == hd
            && rope.n_heads == p.n_head
            && !self.old_attention
            && p.n_kv != 0
            && p.n_head.is_multiple_of(p.n_kv)
            && hd != 0
            && (self.attention_rope_key_groups(p, rope)
                || (hd.is_multiple_of(4) && hd <= 4 * wave && neox_ok))
            && bufs.iter().all(|b| b.device_ptr().is_multiple_of(16))
            && self.attention_splits(p) == 1
    }

    /// How many parts [`Kernels::attention`] splits each (head, row)'s keys
    /// into for `p` (1: no split). Few blocks (decode) over a long key range
    /// split the keys too; the count depends on the last row's span.
    pub fn attention_splits(&self, p: &AttnParams) -> usize {
        let last = p.start_pos + p.rows.max(1) - 1;
        let span = p.window.map_or(last + 1, |w| w.min(last + 1));
        let blocks_1 = (p.n_head * p.rows).max(1);
        let cus = self.device.props().compute_units.max(1) as usize;
        if span >= 512 && blocks_1 < 2 * cus {
            span.div_ceil(256)
                .min((2 * cus).div_ceil(blocks_1))
                .clamp(1, 64)
        } else {
            1
        }
    }

    fn launch_1d(&self, stream: &Stream, name: &str, n: usize, args: KernelArgs) -> Result<()> {
        let cfg = LaunchConfig {
            grid: (blocks(n, BLOCK_1D)?, 1, 1),
            block: (BLOCK_1D as u32, 1, 1),
            shared_bytes: 0,
        };
        // SAFETY: only called by the wrappers below, which build `args` in
        // the kernel's parameter order and check the lengths.
        unsafe { self.f(name)?.launch(stream, cfg, &args) }
    }

    /// `out = act(gate) * up` element-wise; `gelu` selects GELU-tanh over SiLU.
    /// With `q8`, also the 8-bit form of `out` for the decode mat-vecs.
    pub fn glu(
        &self,
        stream: &Stream,
        gate: &DeviceBuffer<f32>,
        up: &DeviceBuffer<f32>,
        gelu: bool,
        out: &mut DeviceBuffer<f32>,
        q8: Option<Q8Out<'_>>,
    ) -> Result<()> {
        let n = gate.len();
        need("glu up", up.len(), n)?;
        need("glu output", out.len(), n)?;
        let aligned = [gate.device_ptr(), up.device_ptr(), out.device_ptr()]
            .iter()
            .all(|p| p.is_multiple_of(16));
        if q8.is_none() && n.is_multiple_of(4) && aligned {
            // Four values a thread (prompt rows): 8b pp512's GLU 38 µs a
            // launch with one value a thread, 2.3 TB/s.
            let args = KernelArgs::new()
                .ptr(gate.device_ptr())
                .ptr(up.device_ptr())
                .ptr(out.device_ptr())
                .i32(to_i32("n / 4", n / 4)?)
                .i32(gelu as i32);
            return self.launch_1d(stream, "glu4_f32", n / 4, args);
        }
        let (q_ptr, ds_ptr) = match &q8 {
            Some(o) => o.check("glu", n)?,
            None => (0, 0),
        };
        let args = KernelArgs::new()
            .ptr(gate.device_ptr())
            .ptr(up.device_ptr())
            .ptr(out.device_ptr())
            .i32(to_i32("n", n)?)
            .i32(gelu as i32)
            .ptr(q_ptr)
            .ptr(ds_ptr);
        self.launch_1d(stream, "glu_f32", n, args)
    }

    /// `dst0[..n] = src0[..n]` and `dst1[..n] = src1[..n]` from the given
    /// offsets (values) in one launch: a layer's K and V rows into its cache.
    #[allow(clippy::too_many_arguments)]
    pub fn copy2(
        &self,
        stream: &Stream,
        dst0: &mut DeviceBuffer<f32>,
        dst1: &mut DeviceBuffer<f32>,
        dst_off: usize,
        src0: &DeviceBuffer<f32>,
        src1: &DeviceBuffer<f32>,
        src_off: usize,
        n: usize,
    ) -> Result<()> {
        for (what, len, off) in [
            ("copy2 destination", dst0.len(), dst_off),
            ("copy2 destination", dst1.len(), dst_off),
            ("copy2 source", src0.len(), src_off),
            ("copy2 source", src1.len(), src_off),
        ] {
            need(what, len.saturating_sub(off), n)?;
        }
        if n == 0 {
            return Ok(());
        }
        let args = KernelArgs::new()
            .ptr(dst0.device_ptr() + 4 * dst_off as u64)
            .ptr(src0.device_ptr() + 4 * src_off as u64)
            .ptr(dst1.device_ptr() + 4 * dst_off as u64)
            .ptr(src1.device_ptr() + 4 * src_off as u64)
            .i32(to_i32("n", n)?);
        self.launch_1d(stream, "copy2_f32", n, args)
    }

    fn binary(
        &self,
        stream: &Stream,
        name: &str,
        a: &mut DeviceBuffer<f32>,
        b: &DeviceBuffer<f32>,
        nb: usize,
    ) -> Result<()> {
        if nb == 0 || !a.len().is_multiple_of(nb) {
            return Err(invalid(format!(
                "{name}: {} values do not repeat {nb}",
                a.len()
            )));
        }
        need(name, b.len(), nb)?;
        let n = a.len();
        let args = KernelArgs::new()
            .ptr(a.device_ptr())
            .ptr(b.device_ptr())
            .i32(to_i32("n", n)?)
            .i32(to_i32("nb", nb)?);
        self.launch_1d(stream, name, n, args)
    }

    /// `a[i] += b[i % nb]` (nb = a.len() for a plain add, = cols to broadcast a row).
    pub fn add(
        &self,
        stream: &Stream,
        a: &mut DeviceBuffer<f32>,
        b: &DeviceBuffer<f32>,
        nb: usize,
    ) -> Result<()> {
        self.binary(stream, "add_f32", a, b, nb)
    }

    /// `a[i] *= b[i % nb]`.
    pub fn mul(
        &self,
        stream: &Stream,
        a: &mut DeviceBuffer<f32>,
        b: &DeviceBuffer<f32>,
        nb: usize,
    ) -> Result<()> {
        self.binary(stream, "mul_f32", a, b, nb)
    }

    /// `a *= s`.
    pub fn scale(&self, stream: &Stream, a: &mut DeviceBuffer<f32>, s: f32) -> Result<()> {
        let n = a.len();
        let args = KernelArgs::new()
            .ptr(a.device_ptr())
            .f32(s)
            .i32(to_i32("n", n)?);
        self.launch_1d(stream, "scale_f32", n, args)
    }

    /// Softmax of each row of `cols`, in place.
    pub fn softmax(&self, stream: &Stream, a: &mut DeviceBuffer<f32>, cols: usize) -> Result<()> {
        if cols == 0 || !a.len().is_multiple_of(cols) {
            return Err(invalid(format!(
                "softmax: {} values are not rows of {cols}",
                a.len()
            )));
        }
        let cfg = LaunchConfig {
            grid: (to_i32("rows", a.len() / cols)? as u32, 1, 1),
            block: (BLOCK_1D as u32, 1, 1),
            shared_bytes: 0,
        };
        let args = KernelArgs::new()
            .ptr(a.device_ptr())
            .i32(to_i32("cols", cols)?);
        // SAFETY: matches `softmax_f32`; whole rows checked above.
        unsafe { self.f("softmax_f32")?.launch(stream, cfg, &args) }
    }

    /// Index of the largest value of each row of `cols` into `out`.
    pub fn argmax(
        &self,
        stream: &Stream,
        a: &DeviceBuffer<f32>,
        cols: usize,
        out: &mut DeviceBuffer<u32>,
    ) -> Result<()> {
        if cols == 0 || !a.len().is_multiple_of(cols) {
            return Err(invalid(format!(
                "argmax: {} values are not rows of {cols}",
                a.len()
            )));
        }
        let rows = a.len() / cols;
        need("argmax output", out.len(), rows)?;
        // 1024 threads: a row is a whole vocabulary (the kernel's per-wave
        // scratch holds 32 waves).
        let cfg = LaunchConfig {
            grid: (to_i32("rows", rows)? as u32, 1, 1),
            block: (1024, 1, 1),
            shared_bytes: 0,
        };
        let args = KernelArgs::new()
            .ptr(a.device_ptr())
            .i32(to_i32("cols", cols)?)
            .ptr(out.device_ptr());
        // SAFETY: matches `argmax_f32`; lengths checked above.
        unsafe { self.f("argmax_f32")?.launch(stream, cfg, &args) }
    }
}

impl Kernels {
    /// `step = [pos, id[0]]` on the device (`step_next_u32`): the position
    /// and token of a recorded decode step launched before the token it
    /// takes has been read back.
    pub fn step_next(
        &self,
        stream: &Stream,
        id: &DeviceBuffer<u32>,
        step: &mut DeviceBuffer<u32>,
        pos: u32,
    ) -> Result<()> {
        need("picked id", id.len(), 1)?;
        need("step buffer", step.len(), 2)?;
        let cfg = LaunchConfig {
            grid: (1, 1, 1),
            block: (32, 1, 1),
            shared_bytes: 0,
        };
        let args = KernelArgs::new()
            .ptr(id.device_ptr())
            .ptr(step.device_ptr())
            .u32(pos);
        // SAFETY: matches `step_next_u32`: one id, two step words (checked).
        unsafe { self.f("step_next_u32")?.launch(stream, cfg, &args) }
    }
}

/// Parameters of [`Kernels::rope`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeParams {
    /// Rows (tokens).
    pub rows: usize,
    /// Heads per row.
    pub n_heads: usize,
    /// Values per head.
    pub head_dim: usize,
    /// Rotated values per head (even, ≤ head_dim).
    pub n_dims: usize,
    /// NeoX pairing (halves) instead of adjacent pairs.
    pub neox: bool,
    /// `freq_base^(-2 / n_dims)`.
    pub theta_scale: f32,
    /// Linear position scaling.
    pub freq_scale: f32,
    /// YaRN extrapolation mix (0 = off).
    pub ext_factor: f32,
    /// Magnitude scale.
    pub attn_factor: f32,
    /// YaRN ramp boundaries.
    pub corr_dims: [f32; 2],
}

/// The KV-cache write of [`Kernels::rope_pair`]: the rotated keys into
/// `k_dst` and `v_src` into `v_dst`, both from value `dst_off` on.
pub struct RopeStore<'a> {
    /// The layer's key cache.
    pub k_dst: &'a mut DeviceBuffer<f32>,
    /// The layer's value cache.
    pub v_dst: &'a mut DeviceBuffer<f32>,
    /// First value written in both caches (position × values per position).
    pub dst_off: usize,
    /// Write at the first row's position read on the device (`pos[0]` ×
    /// values per position, added to `dst_off`) instead of at `dst_off`
    /// alone: the write of a recorded decode step replayed later. The
    /// caller guarantees that the rows fit the cache at every position
    /// that will be in `pos[0]`.
    pub at_pos: bool,
    /// The value rows (as many as the key rows).
    pub v_src: &'a DeviceBuffer<f32>,
}

/// Parameters of [`Kernels::attention`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttnParams {
    /// Query rows.
    pub rows: usize,
    /// Position of the first query row.
    pub start_pos: usize,
    /// Query heads.
    pub n_head: usize,
    /// KV heads.
    pub n_kv: usize,
    /// Values per head.
    pub head_dim: usize,
    /// Score multiplier.
    pub scale: f32,
    /// Sliding window (positions visible including the current one).
    pub window: Option<usize>,
    /// Soft-capping of scores.
    pub softcap: Option<f32>,
}

/// The `extern "C"` kernel names a family's source defines.
pub fn kernel_names(family: &str) -> Vec<String> {
    match family {
        "matmul" | "get_rows" => GpuFormat::ALL
            .iter()
            .map(|f| format!("{family}_{}", f.kernel_suffix()))
            .collect(),
        "mma" => GpuFormat::ALL
            .iter()
            .flat_map(|f| {
                [
                    format!("matmul_mma_{}", f.kernel_suffix()),
                    format!("dequant_f16_{}", f.kernel_suffix()),
                ]
            })
            .chain(
                [
                    "f32_to_f16",
                    "dequant_f16_q4_k_pairs",
                    "dequant_f16_q6_k_halves",
                    "gemm_f16_tn",
                    "gemm_f16_tn_m64",
                    "gemm_f16_tn_s3",
                    "gemm_f16_tn_s4",
                    "gemm_f16_tn_m64_s3",
                    "gemm_f16_tn_m64_s4",
                    "gemm_f16_tn_n256_s3",
                    "gemm_f16_tn_k64_s3",
                    "gemm_f16_tn_m64_k64_s3",
                    "gemm_f16_tn_k64_s3_pf",
                    "gemm_f16_tn_m64_k64_s3_pf",
                    "attention_mma_h64",
                    "attention_mma_h128",
                ]
                .iter()
                .map(|s| s.to_string()),
            )
            .collect(),
        "norm" => vec![
            "rms_norm_f32".into(),
            "add_rms_norm_f32".into(),
            "layer_norm_f32".into(),
        ],
        "rope" => vec!["rope_f32".into()],
        "attention" => vec![
            "attention_f32".into(),
            "attention_split_f32".into(),
            "attention_decode_f32".into(),
            "attention_keygroups_f32".into(),
            "attention_keygroups_rope_f32".into(),
            "attention_decode_rope_f32".into(),
            "attention_combine_f32".into(),
            "attention_tiled_f32".into(),
        ],
        "elementwise" => [
            "glu_f32",
            "glu4_f32",
            "copy2_f32",
            "add_f32",
            "mul_f32",
            "scale_f32",
            "softmax_f32",
            "argmax_f32",
            "step_next_u32",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        "matvec" => std::iter::once("quantize_q8_f32".to_string())
            .chain(
                [
                    "matvec_q4_0",
                    "matvec_q8_0",
                    "matvec_q4_k",
                    "matvec_q4_k_wide",
                    "matvec_q4_k_pair2",
                    "matvec_q4_k_pair4",
                    "matvec_q4_k_rows2",
                    "matvec_q4_k_rows4",
                    "matvec_q4_0_staged",
                    "matvec_q8_0_staged",
                    "matvec_q4_0_staged2",
                    "matvec_q8_0_staged2",
                    "matvec_q4_0_direct2",
                    "matvec_q4_0_direct4",
                    "matvec_q4_0_pair4",
                    "matvec_q8_0_direct2",
                    "matvec_q8_0_direct4",
                    "matvec_q6_k",
                    "matvec_q6_k_staged",
                    "matvec_q6_k_staged2",
                    "matvec_q6_k_staged4",
                ]
                .iter()
                // Each with its norm-tail twin (`matvec_q8_multi`).
                .flat_map(|s| [s.to_string(), format!("{s}_tail")]),
            )
            // The gate/up/GLU twins (`matvec_q8_glu`) and the residual-add +
            // norm ones (`matvec_q8_add_norm`).
            .chain(
                [
                    "matvec_q4_k_rows4_glu",
                    "matvec_q4_0_direct4_glu",
                    "matvec_q4_0_pair4_glu",
                    "matvec_q8_0_direct4_glu",
                    "matvec_q4_k_rows4_gluc",
                    "matvec_q4_0_direct4_gluc",
                    "matvec_q4_0_pair4_gluc",
                    "matvec_q8_0_direct4_gluc",
                    "matvec_q4_k_rows4_addnorm",
                    "matvec_q4_0_direct4_addnorm",
                    "matvec_q4_0_pair4_addnorm",
                    "matvec_q8_0_direct4_addnorm",
                    "matvec_q6_k_staged2_addnorm",
                    "matvec_q4_k_rows4_q6_k_staged2",
                ]
                .iter()
                .map(|s| s.to_string()),
            )
            .collect(),
        "sample" => ["softcap_f32", "penalize_f32", "sample_topk_f32"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod shape_list_tests {
    use super::parse_shapes;

    #[test]
    fn shapes_parse_and_bad_entries_drop_out() {
        assert_eq!(
            parse_shapes("6144x4096, 4096x14336,x,12,3x"),
            vec![(6144, 4096), (4096, 14336)]
        );
        assert!(parse_shapes("").is_empty());
    }
}
