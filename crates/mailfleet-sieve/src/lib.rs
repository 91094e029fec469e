//! Sieve mail filtering (RFC 5228) for mailfleet: a compiler that checks a script when it is
//! uploaded and an interpreter that runs it against one delivered message. Pure: no I/O, no
//! async, no storage; the caller (mailstore at delivery, the ManageSieve server at upload)
//! stores scripts, performs the actions and keeps the vacation reply records.
//!
//! Main types: [`compile`] → [`Script`] (cheap to clone, `Send + Sync`), [`execute`] with a
//! [`Context`] → [`Outcome`] (the final [`Action`] list, implicit keep applied). Every resource
//! is bounded by [`Limits`]. Extensions: see [`supported_extensions`]. Our own implementation
//! because the Rust one on crates.io (sieve-rs) is AGPL-3.0-only.
#![forbid(unsafe_code)]

mod ast;
mod compile;
mod html;
mod interp;
mod lexer;
mod matching;
mod message;
mod parser;
mod strings;

use std::fmt;
use std::sync::Arc;

/// Every extension `require` accepts (the ManageSieve SIEVE capability lists these).
pub(crate) const SUPPORTED: &[&str] = &[
    "fileinto",
    "reject",
    "ereject",
    "envelope",
    "encoded-character",
    "imap4flags",
    "vacation",
    "vacation-seconds",
    "body",
    "variables",
    "relational",
    "copy",
    "subaddress",
    "date",
    "index",
    "mailbox",
    "comparator-i;octet",
    "comparator-i;ascii-casemap",
    "comparator-i;ascii-numeric",
];

/// The extensions this interpreter supports, for ManageSieve's `SIEVE` capability.
pub fn supported_extensions() -> &'static [&'static str] {
    SUPPORTED
}

/// Bounds on what a script may cost, at upload and per delivery.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_script_bytes: usize,
    /// Commands run, tests evaluated and value/key comparisons made, per delivery.
    pub max_steps: u64,
    /// Actions in the final list.
    pub max_actions: usize,
    pub max_redirects: usize,
    /// A variable's value is cut to this many bytes (RFC 5229 allows truncation).
    pub max_variable_bytes: usize,
    /// Decoded body bytes one `body` test looks at.
    pub max_body_scan_bytes: usize,
    /// Nesting of blocks and tests.
    pub max_nesting: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_script_bytes: 64 * 1024,
            max_steps: 100_000,
            max_actions: 32,
            max_redirects: 4,
            max_variable_bytes: 4096,
            max_body_scan_bytes: 1024 * 1024,
            max_nesting: 32,
        }
    }
}

/// A script that does not compile; `line` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub line: u32,
    pub message: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for CompileError {}

/// Why a run ended in implicit keep: a limit was hit or actions conflicted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeError {
    pub line: u32,
    pub message: String,
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for RuntimeError {}

pub(crate) struct Program {
    pub(crate) stmts: Vec<ast::Stmt>,
    pub(crate) extensions: Vec<&'static str>,
}

/// A compiled script.
#[derive(Clone)]
pub struct Script {
    inner: Arc<Program>,
}

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Script")
            .field("extensions", &self.inner.extensions)
            .finish_non_exhaustive()
    }
}

impl Script {
    /// The extensions the script `require`s.
    pub fn extensions(&self) -> Vec<&'static str> {
        self.inner.extensions.clone()
    }
}

/// Compiles and checks a script.
pub fn compile(source: &[u8], limits: &Limits) -> Result<Script, CompileError> {
    if source.len() > limits.max_script_bytes {
        return Err(CompileError {
            line: 1,
            message: format!(
                "script is {} bytes, the limit is {}",
                source.len(),
                limits.max_script_bytes
            ),
        });
    }
    let text = std::str::from_utf8(source).map_err(|e| {
        let upto = source.get(..e.valid_up_to()).unwrap_or_default();
        CompileError {
            line: line_of(upto),
            message: "script is not UTF-8".into(),
        }
    })?;
    let toks = lexer::tokenize(text)?;
    let nodes = parser::parse(&toks, limits.max_nesting)?;
    let (required, n) = compile::requires(&nodes)?;
    let c = compile::Compiler { required };
    let stmts = c.block(nodes.get(n..).unwrap_or_default())?;
    Ok(Script {
        inner: Arc::new(Program {
            stmts,
            extensions: c.required,
        }),
    })
}

fn line_of(b: &[u8]) -> u32 {
    let n = b.iter().filter(|&&c| c == b'\n').count();
    u32::try_from(n).unwrap_or(u32::MAX).saturating_add(1)
}

/// The SMTP envelope of the delivery.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// "" is the null sender.
    pub from: &'a str,
    pub to: &'a str,
    pub auth: Option<&'a str>,
}

/// One delivery a script runs against.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub envelope: Envelope<'a>,
    /// The RFC 5322 message as stored (headers and body), or its first part when the caller bounds
    /// what a script may read.
    pub message: &'a [u8],
    /// The whole message's size, for the `size` test (at least `message.len()`).
    pub size: u64,
    /// For `date` / `currentdate`; its offset is the "local" zone.
    pub now: chrono::DateTime<chrono::FixedOffset>,
    /// The recipient account's addresses (vacation never replies to them).
    pub own_addresses: &'a [&'a str],
}

/// What to do with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Keep {
        flags: Vec<String>,
    },
    FileInto {
        mailbox: String,
        flags: Vec<String>,
        create: bool,
    },
    Redirect {
        address: String,
    },
    Reject {
        reason: String,
    },
    Ereject {
        reason: String,
    },
    /// Only when nothing else keeps, files, redirects or rejects the message.
    Discard,
    Vacation(Vacation),
}

/// An auto-reply to send, after the RFC 5230 checks the interpreter can make from the message.
/// The once-per-`period` per (account, sender, handle) rule is the caller's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vacation {
    /// Whom to reply to (the envelope sender).
    pub to: String,
    pub from: Option<String>,
    pub subject: String,
    pub reason: String,
    /// The reason is a MIME entity (headers and body), not plain text.
    pub mime: bool,
    pub handle: String,
    pub period: std::time::Duration,
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The final actions, implicit keep applied (RFC 5228 2.10.2). After a runtime error this
    /// is exactly `[Action::Keep { flags: vec![] }]`.
    pub actions: Vec<Action>,
    /// The `Keep` in `actions` is the implicit one (no action of the script
    /// cancelled it, or a runtime error): the caller may file such a copy
    /// by its own rule (spam into Junk), which an explicit `keep` overrides.
    pub implicit_keep: bool,
    pub error: Option<RuntimeError>,
}

/// Runs a script against one message.
pub fn execute(script: &Script, ctx: &Context, limits: &Limits) -> Outcome {
    match interp::run(&script.inner, ctx, limits) {
        Ok((actions, implicit_keep)) => Outcome {
            actions,
            implicit_keep,
            error: None,
        },
        Err(e) => Outcome {
            actions: vec![Action::Keep { flags: Vec::new() }],
            implicit_keep: true,
            error: Some(e),
        },
    }
}
