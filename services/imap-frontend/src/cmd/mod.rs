//! The IMAP commands, one file per family.

pub(crate) mod append;
pub(crate) mod fetch;
pub(crate) mod list;
pub(crate) mod quota;
pub(crate) mod search;
pub(crate) mod sort;
