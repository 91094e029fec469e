//! The IMAP command layer: one typed [`Command`] for every command and
//! extension the server advertises, parsed by [`parse_command`] from the
//! exact bytes the client sent (literals included), and the client-side
//! encoding of a command ([`encode_command`]) that tests and the fuzz
//! target use to check round trips, and the tagged [`Reply`].
//!
//! The grammar is hand-written (`grammar`, over the bounded tokenizer in
//! `lexer`) rather than imap-codec 1.0's: imap-codec 1.0 has no `$`
//! (SEARCHRES), MODSEQ search key, BINARY items, SORT/THREAD, ESEARCH
//! RETURN, LIST-EXTENDED, ID, UID EXPUNGE, literal8 or UTF-8 mailbox
//! names, and reaching them through it meant rewriting the client's text
//! before parsing. Only its sequence-set type is used, where its meaning is
//! exactly the grammar's.
//!
//! Nothing here does I/O or knows of the session.

mod encode;
mod grammar;
mod lexer;
mod response;
mod types;

#[cfg(test)]
mod tests;

pub use encode::encode_command;
pub(crate) use encode::string;
pub use grammar::{command_tag, parse_append_head};
pub use lexer::{LiteralMode, trailing_literal};
pub use response::Reply;
pub use types::*;

/// A command that could not be parsed: the tag when one was found (the
/// BAD response carries it, else `*`) and a short reason for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub tag: Option<String>,
    pub reason: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for ParseError {}

/// Parses one whole command: `input` is what the client sent, from the tag
/// to the final CRLF, literals included (as the connection reads it, whose
/// limits bound its size). Never panics; nesting and token counts are
/// bounded. This is the entry point of the IMAP fuzz target.
pub fn parse_command(input: &[u8]) -> Result<Command, ParseError> {
    grammar::command(input)
}
