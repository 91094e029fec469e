//! Compiles `proto/` with protox (pure Rust), so no system `protoc` is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time: `env!` would bake in the directory the build script
    // was compiled in, and a reused build script (another checkout sharing
    // the target directory) would then compile that checkout's protos.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "mailstore.proto",
        "admin.proto",
        "queue.proto",
        "outbound.proto",
        "sieve.proto",
    ]
    .map(|f| root.join("mailfleet/v1").join(f));
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let fds = protox::compile(&files, [&root])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
