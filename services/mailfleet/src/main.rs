//! The `mailfleet` binary; everything lives in the library so tests and other
//! binaries can reuse it.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    mailfleet::main().await
}
