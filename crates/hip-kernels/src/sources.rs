//! The kernel sources (top-level `kernels/`), embedded in the binary.

/// Shared headers, by the name kernels include them with.
pub const HEADERS: &[(&str, &str)] = &[
    ("compat.h", include_str!("../../../kernels/compat.h")),
    ("common.h", include_str!("../../../kernels/common.h")),
    ("quant.h", include_str!("../../../kernels/quant.h")),
    ("norm.h", include_str!("../../../kernels/norm.h")),
];

/// One source file per kernel family: (family, source).
pub const FAMILIES: &[(&str, &str)] = &[
    ("matmul", include_str!("../../../kernels/matmul.hip")),
    ("get_rows", include_str!("../../../kernels/get_rows.hip")),
    ("norm", include_str!("../../../kernels/norm.hip")),
    ("rope", include_str!("../../../kernels/rope.hip")),
    ("attention", include_str!("../../../kernels/attention.hip")),
    (
        "elementwise",
        include_str!("../../../kernels/elementwise.hip"),
    ),
    ("sample", include_str!("../../../kernels/sample.hip")),
    ("matvec", include_str!("../../../kernels/matvec.hip")),
    ("mma", include_str!("../../../kernels/mma.hip")),
];

/// A family's source with every `#include "<header>"` of our headers
/// replaced by the header's text (each header once), so that runtime
/// compilers need no file system.
pub fn expanded(family: &str) -> Option<String> {
    let src = FAMILIES.iter().find(|(f, _)| *f == family)?.1;
    let mut seen = Vec::new();
    let mut out = String::new();
    expand_into(src, &mut seen, &mut out);
    Some(out)
}

fn expand_into(src: &str, seen: &mut Vec<&'static str>, out: &mut String) {
    for line in src.lines() {
        let t = line.trim();
        if t == "#pragma once" {
            continue;
        }
        if let Some(rest) = t.strip_prefix("#include \"") {
            let name = rest.trim_end_matches('"');
            if let Some((hname, htext)) = HEADERS.iter().find(|(h, _)| *h == name) {
                if !seen.contains(hname) {
                    seen.push(hname);
                    expand_into(htext, seen, out);
                }
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
}

/// The identity of a family's expanded source: the first 16 hex digits of
/// its SHA-256. Prebuilt code objects carry it in their file name and are
/// used only when it matches the embedded source (stale ones are ignored).
pub fn source_hash(family: &str) -> Option<String> {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(expanded(family)?.as_bytes());
    Some(digest.iter().take(8).map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_expands_without_local_includes() {
        for (family, _) in FAMILIES {
            let s = expanded(family).unwrap();
            assert!(
                !s.contains("#include \""),
                "{family} still includes a local header"
            );
            assert_eq!(
                s.matches("RF_DEVICE float rf_h2f").count(),
                2,
                "{family}: compat.h once (two vendor branches)"
            );
        }
    }
}
