//! How a command ends when it fails, shared by every command module.

use std::process::ExitCode;

/// Exit status for an invalid configuration (sysexits EX_USAGE).
pub const EXIT_CONFIG: u8 = mailfleet_runtime::service::EXIT_CONFIG;

/// Prints a one-sentence error and returns exit status 1.
pub(crate) fn fail(error: &anyhow::Error) -> ExitCode {
    eprintln!("mailfleet: {error:#}");
    ExitCode::FAILURE
}
