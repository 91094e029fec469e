//! The IMAP commands, one file per family. Each runs a parsed command on
//! the session (`crate::session`) and returns its tagged reply; the state
//! gate has already let it through. Command files never import each other:
//! what two families share lives below them (`session`, `errors`,
//! `encode`, `names`). LIST and STATUS share a file family (`list`, with
//! `list::status`) because LIST-STATUS (RFC 5819) answers STATUS items
//! for every mailbox it lists; FETCH's BINARY items (`fetch::binary`) and
//! SEARCH's ESEARCH answer (`search::esearch`) are parts of their family.

pub(crate) mod append;
pub(crate) mod auth;
pub(crate) mod copy;
pub(crate) mod enable;
pub(crate) mod expunge;
pub(crate) mod fetch;
pub(crate) mod idle;
pub(crate) mod list;
pub(crate) mod mailbox;
pub(crate) mod quota;
pub(crate) mod search;
pub(crate) mod select;
pub(crate) mod sort;
pub(crate) mod store;
