//! `cargo xtask kernels`: compile every kernel family in `kernels/` into code
//! objects with the vendor's offline compiler, into the directory the next
//! build of `hip-kernels` embeds.
//!
//! ```text
//! cargo xtask kernels --platform amd    --arch gfx90a,gfx942,gfx1030,gfx1100,gfx1200 [--out DIR]
//! cargo xtask kernels --platform nvidia --arch sm_80,sm_90 [--out DIR]
//! ```
//!
//! AMD uses `hipcc --genco --offload-arch=<arch>` (`$HIPCC` overrides the
//! command), NVIDIA `nvcc -cubin -arch=<arch> -x cu` (`$NVCC`). DIR defaults
//! to `target/kernel-objects` (what `hip-kernels` embeds; override with
//! `$ROCMFORGE_KERNEL_OBJECTS`); files are named
//! `<family>.<arch>.<source hash>.<hsaco|cubin>`. What is compiled is each
//! family's source as `hip-kernels` embeds it (headers inlined), so the hash
//! in the name is exactly what `hip-kernels` checks before using an object.
//! Any kernel that fails to compile fails the command (CI uses this as the
//! compile check of every kernel for AMD).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

fn workspace_root() -> PathBuf {
    // The workspace root (for the default output directory).
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Run the command with its arguments (see the module docs).
pub fn run(args: &[String]) -> Result<()> {
    let mut platform = None;
    let mut archs: Vec<String> = Vec::new();
    let mut out = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--platform" => platform = it.next().cloned(),
            "--arch" => {
                archs = it
                    .next()
                    .context("--arch needs a value")?
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            }
            "--out" => out = it.next().map(PathBuf::from),
            other => bail!("unknown argument `{other}` (see `cargo xtask help`)"),
        }
    }
    let root = workspace_root();
    let out = out
        .or_else(|| std::env::var_os("ROCMFORGE_KERNEL_OBJECTS").map(PathBuf::from))
        .unwrap_or_else(|| root.join("target/kernel-objects"));
    let platform = platform.context("--platform amd|nvidia is required")?;
    if archs.is_empty() {
        bail!("--arch needs at least one architecture (gfx90a,gfx1030,… or sm_80,sm_90)");
    }
    let (tool, ext) = match platform.as_str() {
        "amd" => (
            std::env::var("HIPCC").unwrap_or_else(|_| "hipcc".into()),
            "hsaco",
        ),
        "nvidia" => (
            std::env::var("NVCC").unwrap_or_else(|_| "nvcc".into()),
            "cubin",
        ),
        other => bail!("unknown platform `{other}` (amd or nvidia)"),
    };
    for a in &archs {
        let ok = match ext {
            "hsaco" => a.starts_with("gfx"),
            _ => a.starts_with("sm_"),
        };
        if !ok || !a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("`{a}` is not a {platform} architecture name");
        }
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let src_dir = out.join("src");
    std::fs::create_dir_all(&src_dir)?;
    let mut failed = Vec::new();
    for (family, _) in hip_kernels::sources::FAMILIES {
        let text = hip_kernels::sources::expanded(family).context("family source")?;
        let hash = hip_kernels::sources::source_hash(family).context("family source")?;
        let src = src_dir.join(format!("{family}.hip"));
        std::fs::write(&src, text)?;
        for arch in &archs {
            // Objects of older sources of this family and arch are replaced.
            if let Ok(rd) = std::fs::read_dir(&out) {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name.starts_with(&format!("{family}.{arch}.")) && name.ends_with(ext) {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
            let dst = out.join(format!("{family}.{arch}.{hash}.{ext}"));
            let mut cmd = Command::new(&tool);
            if ext == "hsaco" {
                // C++17 for `if constexpr` (older hipcc default to C++14).
                cmd.arg("--genco")
                    .arg(format!("--offload-arch={arch}"))
                    .arg("-O3")
                    .arg("-std=c++17");
            } else {
                cmd.arg("-cubin")
                    .arg(format!("-arch={arch}"))
                    .arg("-O3")
                    .arg("-x")
                    .arg("cu");
            }
            cmd.arg(&src).arg("-o").arg(&dst);
            let t0 = Instant::now();
            let status = cmd.status().with_context(|| {
                format!("running `{tool}` (is the {platform} compiler installed?)")
            })?;
            if status.success() {
                println!(
                    "{family} for {arch}: {} ({:.1} s)",
                    dst.display(),
                    t0.elapsed().as_secs_f64()
                );
            } else {
                eprintln!("{family} for {arch}: FAILED ({status})");
                failed.push(format!("{family}/{arch}"));
            }
        }
    }
    if !failed.is_empty() {
        bail!("kernels that failed to compile: {}", failed.join(", "));
    }
    println!(
        "code objects in {} (embedded by the next build of hip-kernels)",
        out.display()
    );
    Ok(())
}
