//! Embeds the code objects `cargo xtask kernels` wrote, if any. No GPU
//! compiler is needed or called here: this only lists files.
//!
//! Directory: `$ROCMFORGE_KERNEL_OBJECTS`, else `<workspace>/target/kernel-objects`.
//! File names: `<family>.<arch>.<source hash>.<hsaco|cubin>`.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=ROCMFORGE_KERNEL_OBJECTS");
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let dir = std::env::var_os("ROCMFORGE_KERNEL_OBJECTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../../target/kernel-objects"));
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut entries = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let path = e.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let parts: Vec<&str> = name.split('.').collect();
            if parts.len() != 4 || !(parts[3] == "hsaco" || parts[3] == "cubin") {
                continue;
            }
            let Ok(abs) = path.canonicalize() else {
                continue;
            };
            println!("cargo:rerun-if-changed={}", abs.display());
            entries.push((
                parts[0].to_string(),
                parts[1].to_string(),
                parts[2].to_string(),
                parts[3].to_string(),
                abs,
            ));
        }
    }
    entries.sort();
    let mut out = String::from("/// Prebuilt code objects: (family, arch, source hash, kind, bytes).\npub static PREBUILT: &[(&str, &str, &str, &str, &[u8])] = &[\n");
    for (family, arch, hash, kind, path) in entries {
        writeln!(
            out,
            "    ({family:?}, {arch:?}, {hash:?}, {kind:?}, include_bytes!({:?})),",
            path.display().to_string()
        )
        .expect("write to String");
    }
    out.push_str("];\n");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out_dir.join("prebuilt.rs"), out).expect("write prebuilt.rs");
}
