//! The `mailfleet` binary; everything lives in the library so tests and other
//! binaries can reuse it.

/// Every service runs from this binary; mimalloc spends less CPU than
/// glibc's malloc on the many small allocations of gRPC and SQL calls.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    mailfleet::main().await
}
