//! IMAP extensions beyond what imap-codec 1.0 parses: LIST-EXTENDED and
//! LIST-STATUS (`list`), STATUS=SIZE (`status`), ESEARCH (`esearch`),
//! QUOTA (`quota`), and mailbox names in modified UTF-7 or, after ENABLE
//! UTF8=ACCEPT, UTF-8 (`names`, `mutf7`).
//!
//! [`parse`] recognises the hand-parsed commands from the raw command
//! bytes before imap-codec sees them (pure); [`run`] executes them on a
//! session. Parsing stays separate from I/O and is unit-tested here.

pub(crate) mod args;
pub(crate) mod esearch;
pub(crate) mod list;
pub(crate) mod mutf7;
pub(crate) mod names;
pub(crate) mod quota;
pub(crate) mod status;

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::core::Charset;
use imap_codec::imap_types::extensions::enable::{CapabilityEnable, Utf8Kind};

use crate::session::{Reply, Session};

/// The capabilities this module implements (for CAPABILITY).
pub(crate) const CAPABILITIES: &str = " LIST-EXTENDED LIST-STATUS ESEARCH STATUS=SIZE QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE UTF8=ACCEPT";

/// Per-session state of the extensions.
#[derive(Debug, Default)]
pub(crate) struct ExtState {
    /// ENABLE UTF8=ACCEPT was given (RFC 6855).
    pub utf8: bool,
}

/// A hand-parsed command.
#[derive(Debug)]
pub(crate) struct Ext {
    pub tag: String,
    pub command: ExtCommand,
}

#[derive(Debug)]
pub(crate) enum ExtCommand {
    List(list::ListCommand),
    Status {
        mailbox: Vec<u8>,
        items: Vec<status::Item>,
    },
    Search(esearch::SearchReturn),
    /// Recognised but malformed: the reason for BAD.
    Invalid(String),
}

impl Ext {
    pub(crate) fn name(&self) -> String {
        match &self.command {
            ExtCommand::List(l) if l.lsub => "lsub",
            ExtCommand::List(_) => "list",
            ExtCommand::Status { .. } => "status",
            ExtCommand::Search(s) if s.uid => "uid search",
            ExtCommand::Search(_) => "search",
            ExtCommand::Invalid(_) => "invalid",
        }
        .into()
    }
}

fn command_word(buf: &[u8]) -> Option<String> {
    let mut words = buf.split(|&b| b == b' ' || b == b'\r' || b == b'\n');
    words.next()?;
    words
        .next()
        .map(|w| String::from_utf8_lossy(w).to_ascii_uppercase())
}

/// Recognises LIST, LSUB, STATUS and SEARCH ... RETURN; `None` for
/// everything else (imap-codec's job).
pub(crate) fn parse(buf: &[u8]) -> Option<Ext> {
    let word = command_word(buf)?;
    if let Some(search) = esearch::parse(buf) {
        return Some(match search {
            Ok(s) => Ext {
                tag: s.tag.clone(),
                command: ExtCommand::Search(s),
            },
            Err(why) => Ext {
                tag: crate::extra::tag_of(buf)?,
                command: ExtCommand::Invalid(why),
            },
        });
    }
    if !matches!(word.as_str(), "LIST" | "LSUB" | "STATUS") {
        return None;
    }
    let line = match args::parse(buf) {
        Ok(l) => l,
        Err(why) => {
            return Some(Ext {
                tag: crate::extra::tag_of(buf)?,
                command: ExtCommand::Invalid(why.into()),
            });
        }
    };
    let tag = line.tag;
    let rest = line.args.get(1..).unwrap_or_default();
    let command = match word.as_str() {
        "STATUS" => match rest {
            [mailbox, items] if mailbox.bytes().is_some() => match status::items(items) {
                Ok(items) => ExtCommand::Status {
                    mailbox: mailbox.bytes().unwrap_or_default().to_vec(),
                    items,
                },
                Err(why) => ExtCommand::Invalid(why),
            },
            _ => ExtCommand::Invalid("STATUS needs a mailbox and a list of items".into()),
        },
        verb => match list::parse(verb == "LSUB", rest) {
            Ok(l) => ExtCommand::List(l),
            Err(why) => ExtCommand::Invalid(why),
        },
    };
    Some(Ext { tag, command })
}

/// Runs a hand-parsed command.
pub(crate) async fn run(s: &mut Session, ext: Ext) -> std::io::Result<Reply> {
    if let ExtCommand::Invalid(why) = ext.command {
        return Ok(Reply::Bad(why));
    }
    if s.user.is_none() {
        return Ok(Reply::Bad("Log in first".into()));
    }
    match ext.command {
        ExtCommand::List(l) => list::run(s, l).await,
        ExtCommand::Status { mailbox, items } => status::run(s, &mailbox, &items).await,
        ExtCommand::Search(r) => search(s, r).await,
        ExtCommand::Invalid(why) => Ok(Reply::Bad(why)),
    }
}

/// SEARCH RETURN (...): the keys are imap-codec's, the answer ESEARCH.
async fn search(s: &mut Session, r: esearch::SearchReturn) -> std::io::Result<Reply> {
    let save = r.opts.save;
    let reply = search_inner(s, r).await?;
    if save && !matches!(reply, Reply::Ok(_)) {
        crate::searchres::reset(s);
    }
    Ok(reply)
}

async fn search_inner(s: &mut Session, r: esearch::SearchReturn) -> std::io::Result<Reply> {
    if s.selected.is_none() {
        return Ok(Reply::Bad("Select a mailbox first".into()));
    }
    // SEARCH MODSEQ (RFC 7162) inside the keys: taken out as for SEARCH.
    let (plain, mods) = match crate::rfc7162::parse(&r.plain) {
        Some(crate::rfc7162::Parsed::Invalid { why, .. }) => return Ok(Reply::Bad(why)),
        Some(crate::rfc7162::Parsed::Command { plain, mods, .. }) => (plain, mods),
        None => (r.plain.clone(), crate::rfc7162::Mods::default()),
    };
    let command = match CommandCodec::default().decode(&plain) {
        Ok((_, c)) => c,
        Err(_) => return Ok(Reply::Bad("Syntax error".into())),
    };
    let CommandBody::Search {
        charset, criteria, ..
    } = command.body
    else {
        return Ok(Reply::Bad("Syntax error".into()));
    };
    let name = match &charset {
        Some(Charset::Atom(a)) => a.inner().to_ascii_uppercase(),
        Some(Charset::Quoted(q)) => q.inner().to_ascii_uppercase(),
        None => "US-ASCII".into(),
    };
    if name != "UTF-8" && name != "US-ASCII" {
        return Ok(Reply::No(
            "[BADCHARSET (US-ASCII UTF-8)] Unsupported charset".into(),
        ));
    }
    let (hits, modseqs) = match crate::search::matching(s, &criteria, r.uid, &mods).await? {
        Ok(found) => found,
        Err(reply) => return Ok(reply),
    };
    if r.opts.save {
        crate::searchres::save(s, &hits, r.uid, r.opts);
    }
    if r.opts.answers() {
        let mut response = esearch::Esearch::new(&r.tag, r.uid, r.opts, &hits);
        // RFC 7162 3.1.5 with RFC 4731: MODSEQ return data when something
        // matched, the highest of the messages the response returns.
        response.modseq = modseqs
            .map(|m| esearch::returned_modseq(r.opts, &m))
            .filter(|&h| h > 0 && !hits.is_empty());
        let line = response.line();
        s.untagged(&line);
    }
    s.sync(r.uid).await?;
    Ok(Reply::Ok(if r.opts.save {
        "SEARCH completed, result saved".into()
    } else {
        "SEARCH completed".into()
    }))
}

/// ENABLE: turns on what this module offers; returns " NAME" for each
/// capability newly enabled.
pub(crate) fn enable(s: &mut Session, caps: &[CapabilityEnable<'_>]) -> Vec<&'static str> {
    let mut enabled = Vec::new();
    for c in caps {
        if matches!(c, CapabilityEnable::Utf8(Utf8Kind::Accept)) && !s.ext.utf8 {
            s.ext.utf8 = true;
            enabled.push(" UTF8=ACCEPT");
        }
    }
    enabled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_its_commands() {
        let e = parse(b"a LIST \"\" *\r\n").unwrap();
        assert!(matches!(e.command, ExtCommand::List(_)));
        let e = parse(b"a status INBOX (MESSAGES SIZE)\r\n").unwrap();
        assert!(matches!(e.command, ExtCommand::Status { .. }));
        let e = parse(b"a STATUS INBOX ()\r\n").unwrap();
        assert!(matches!(e.command, ExtCommand::Invalid(_)));
        let e = parse(b"a UID SEARCH RETURN (COUNT) ALL\r\n").unwrap();
        assert!(matches!(e.command, ExtCommand::Search(_)));
        assert!(parse(b"a SEARCH ALL\r\n").is_none());
        assert!(parse(b"a SELECT INBOX\r\n").is_none());
        let e = parse(b"a LIST (\r\n").unwrap();
        assert!(matches!(e.command, ExtCommand::Invalid(_)));
    }

    /// Mutated command lines (bit flips, truncations, junk bytes) never
    /// panic the hand parsers on the server's path.
    #[test]
    fn mutated_input_never_panics() {
        let seeds: &[&[u8]] = &[
            b"a1 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (\"INBOX\" Sent*) RETURN (CHILDREN STATUS (MESSAGES SIZE))\r\n",
            b"a2 STATUS {5+}\r\nINBOX (MESSAGES UNSEEN SIZE DELETED)\r\n",
            b"a3 UID SEARCH RETURN (MIN MAX COUNT ALL) OR FROM x SUBJECT {2}\r\nab\r\n",
            "a4 LSUB \"\" \"Entw\u{fc}rfe/%\"\r\n".as_bytes(),
            b"a5 APPEND INBOX UTF8 (~{4}\r\nabcd)\r\n",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..30_000 {
            let seed = seeds[(next() % seeds.len() as u64) as usize];
            let mut line = seed.to_vec();
            for _ in 0..(1 + next() % 4) {
                if line.is_empty() {
                    break;
                }
                let i = (next() % line.len() as u64) as usize;
                match next() % 3 {
                    0 => line[i] ^= 1 << (next() % 8),
                    1 => line.truncate(i),
                    _ => line.insert(i, (next() % 256) as u8),
                }
            }
            let rewritten = names::rewrite_8bit(&line);
            let _ = parse(rewritten.as_deref().unwrap_or(&line)).map(|e| e.name());
            let _ = parse(&line);
            let _ = names::trailing_literal(&line);
        }
    }
}
