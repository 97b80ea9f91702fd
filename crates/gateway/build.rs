//! Embeds the web client's build (`web/dist`, committed) in the binary: a
//! table of paths and `include_bytes!`, served by `web.rs`. Written here
//! rather than with a crate because cargo must also learn to rebuild when
//! the directory changes, which only a build script can tell it.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/dist");
    // Cargo scans a directory given here for any change below it.
    println!("cargo:rerun-if-changed={}", dist.display());
    let mut files = Vec::new();
    walk(&dist, &mut files);
    files.sort();
    let mut table = String::from("/// The web client's files: path under `/`, contents.\n");
    table.push_str("pub(crate) static FILES: &[(&str, &[u8])] = &[\n");
    for file in &files {
        let rel = file.strip_prefix(&dist)?.to_string_lossy().replace('\\', "/");
        let abs = file.canonicalize()?;
        table.push_str(&format!("    ({:?}, include_bytes!({:?})),\n", format!("/{rel}"), abs));
    }
    table.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("web_files.rs");
    std::fs::write(out, table)?;
    Ok(())
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, files);
        } else {
            files.push(path);
        }
    }
}
