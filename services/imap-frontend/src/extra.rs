//! Commands imap-codec 1.0 does not parse (ID, NAMESPACE, UID EXPUNGE),
//! recognised by hand before it, plus small pure helpers: the tag of an
//! unparsable line and LIST wildcard matching.

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::sequence::SequenceSet;

pub(crate) struct Extra {
    pub tag: String,
    pub command: ExtraCommand,
}

pub(crate) enum ExtraCommand {
    Id,
    Namespace,
    /// `None`: the set was `$`, the saved SEARCH result (RFC 5182).
    UidExpunge(Option<SequenceSet>),
    Invalid(String),
}

impl Extra {
    pub(crate) fn name(&self) -> String {
        match self.command {
            ExtraCommand::Id => "id",
            ExtraCommand::Namespace => "namespace",
            ExtraCommand::UidExpunge(_) => "uid expunge",
            ExtraCommand::Invalid(_) => "invalid",
        }
        .into()
    }
}

fn words(line: &[u8]) -> Vec<&[u8]> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.split(|&b| b == b' ')
        .filter(|w| !w.is_empty())
        .collect()
}

/// RFC 3501 tag: ASTRING-CHARs except `+`.
fn valid_tag(tag: &[u8]) -> bool {
    !tag.is_empty()
        && tag.iter().all(|&b| {
            b.is_ascii_graphic()
                && !matches!(b, b'+' | b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\')
        })
}

/// The tag of a command line, if it has a valid one.
pub(crate) fn tag_of(line: &[u8]) -> Option<String> {
    let w = words(line);
    let tag = w.first()?;
    valid_tag(tag).then(|| String::from_utf8_lossy(tag).into_owned())
}

/// A command line as `tag [UID] name ...`: the line without its CRLF,
/// whether UID came first, and the command name. `None` when the tag is
/// not valid or the line has no name.
pub(crate) fn command_head(buf: &[u8]) -> Option<(&[u8], bool, &[u8])> {
    let body = buf.strip_suffix(b"\n").unwrap_or(buf);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    let mut words = body.splitn(4, |&c| c == b' ');
    tag_of(words.next()?)?;
    let mut name = words.next()?;
    let uid = name.eq_ignore_ascii_case(b"UID");
    if uid {
        name = words.next()?;
    }
    Some((body, uid, name))
}

pub(crate) fn is_extra(line: &[u8]) -> bool {
    let w = words(line);
    match w.get(1) {
        Some(c) if c.eq_ignore_ascii_case(b"ID") || c.eq_ignore_ascii_case(b"NAMESPACE") => true,
        Some(c) if c.eq_ignore_ascii_case(b"UID") => {
            w.get(2).is_some_and(|c| c.eq_ignore_ascii_case(b"EXPUNGE"))
        }
        _ => false,
    }
}

pub(crate) fn parse(line: &[u8]) -> Option<Extra> {
    if !is_extra(line) {
        return None;
    }
    let w = words(line);
    let tag = tag_of(line)?;
    let cmd = w.get(1)?;
    let command = if cmd.eq_ignore_ascii_case(b"ID") {
        // What follows "tag ID ".
        let args = line
            .get(tag.len()..)
            .and_then(|r| r.strip_prefix(b" "))
            .and_then(|r| r.get(3..))
            .unwrap_or_default();
        match id_params(args) {
            Ok(()) => ExtraCommand::Id,
            Err(why) => ExtraCommand::Invalid(why.into()),
        }
    } else if cmd.eq_ignore_ascii_case(b"NAMESPACE") {
        if w.len() == 2 {
            ExtraCommand::Namespace
        } else {
            ExtraCommand::Invalid("NAMESPACE takes no arguments".into())
        }
    } else {
        match (w.get(3), w.len()) {
            (Some(set), 4) if *set == b"$" => ExtraCommand::UidExpunge(None),
            (Some(set), 4) => match sequence_set(set) {
                Some(s) => ExtraCommand::UidExpunge(Some(s)),
                None => ExtraCommand::Invalid("Invalid UID set".into()),
            },
            _ => ExtraCommand::Invalid("UID EXPUNGE needs one UID set".into()),
        }
    };
    Some(Extra { tag, command })
}

/// RFC 2971 `id_params_list` (after "ID "): NIL, or a parenthesised list
/// of fields, each a string followed by a string or NIL. The client's
/// values are not used; only the syntax is checked.
fn id_params(args: &[u8]) -> Result<(), &'static str> {
    const BAD_LIST: &str = "ID takes NIL or a list of field and value strings";
    let args = args
        .strip_suffix(b"\r\n")
        .or_else(|| args.strip_suffix(b"\n"))
        .unwrap_or(args);
    if args.eq_ignore_ascii_case(b"NIL") {
        return Ok(());
    }
    let mut rest = args.strip_prefix(b"(").ok_or(BAD_LIST)?;
    if rest == b")" {
        return Ok(());
    }
    loop {
        rest = skip_string(rest).ok_or("ID field names must be strings")?;
        rest = rest.strip_prefix(b" ").ok_or(BAD_LIST)?;
        rest = match rest.get(..3) {
            Some(nil)
                if nil.eq_ignore_ascii_case(b"NIL") && matches!(rest.get(3), Some(b' ' | b')')) =>
            {
                rest.get(3..).unwrap_or_default()
            }
            _ => skip_string(rest).ok_or("ID values must be strings or NIL")?,
        };
        if let Some(more) = rest.strip_prefix(b" ") {
            rest = more;
            continue;
        }
        return match rest {
            b")" => Ok(()),
            _ => Err(BAD_LIST),
        };
    }
}

/// What follows a quoted string or a literal at the start of `b`.
fn skip_string(b: &[u8]) -> Option<&[u8]> {
    match b.first()? {
        b'"' => {
            let mut i = 1;
            loop {
                match b.get(i)? {
                    b'"' => return b.get(i + 1..),
                    b'\\' if matches!(b.get(i + 1), Some(b'"' | b'\\')) => i += 2,
                    b'\\' | b'\r' | b'\n' => return None,
                    _ => i += 1,
                }
            }
        }
        b'{' => {
            let (n, header) = crate::ext::args::literal_header(b)?;
            b.get(header.checked_add(n)?..)
        }
        _ => None,
    }
}

/// Parses a sequence set with imap-codec (through a FETCH it understands).
pub(crate) fn sequence_set(text: &[u8]) -> Option<SequenceSet> {
    let mut line = b"x FETCH ".to_vec();
    line.extend_from_slice(text);
    line.extend_from_slice(b" UID\r\n");
    match CommandCodec::default().decode(&line) {
        Ok((_, c)) => match c.body {
            CommandBody::Fetch { sequence_set, .. } => Some(sequence_set),
            _ => None,
        },
        Err(_) => None,
    }
}

/// LIST pattern matching: `*` matches anything, `%` anything but "/".
/// INBOX matches case-insensitively.
pub(crate) fn wildcard_match(pattern: &str, name: &str) -> bool {
    let pattern = match (pattern.get(..5), pattern.get(5..)) {
        (Some(head), Some(rest)) if head.eq_ignore_ascii_case("INBOX") => format!("INBOX{rest}"),
        _ => pattern.to_owned(),
    };
    // Dynamic programming over (pattern prefix, name prefix): linear in
    // their product, so no pattern can make matching explode.
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    if p.len() > 1024 {
        return false;
    }
    // row[j]: the pattern so far matches name[..j]. Every index below
    // stays within 0..=n.len() by construction.
    let mut row = vec![false; n.len() + 1];
    row[0] = true;
    for &c in p {
        let mut next = vec![false; n.len() + 1];
        for j in 0..=n.len() {
            next[j] = match c {
                b'*' => row[j] || (j > 0 && next[j - 1]),
                b'%' => row[j] || (j > 0 && next[j - 1] && n[j - 1] != b'/'),
                _ => j > 0 && row[j - 1] && n[j - 1] == c,
            };
        }
        row = next;
    }
    row[n.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match(&"*a".repeat(500), &"a".repeat(600)));
        assert!(!wildcard_match(&"*a".repeat(500), &"a".repeat(400)));
        assert!(wildcard_match("*", "a/b"));
        assert!(wildcard_match("%", "a"));
        assert!(!wildcard_match("%", "a/b"));
        assert!(wildcard_match("a/%", "a/b"));
        assert!(wildcard_match("inbox", "INBOX"));
        assert!(!wildcard_match("Sent", "Sentx"));
    }

    #[test]
    fn extras() {
        assert!(is_extra(b"a ID NIL\r\n"));
        assert!(is_extra(b"a uid expunge 1:3\r\n"));
        assert!(!is_extra(b"a UID FETCH 1 FLAGS\r\n"));
        let e = parse(b"a UID EXPUNGE 1:3,7\r\n");
        assert!(matches!(
            e.map(|e| e.command),
            Some(ExtraCommand::UidExpunge(_))
        ));
        assert!(matches!(
            parse(b"a UID EXPUNGE $\r\n").map(|e| e.command),
            Some(ExtraCommand::UidExpunge(None))
        ));
        assert!(matches!(
            parse(b"a UID EXPUNGE x\r\n").map(|e| e.command),
            Some(ExtraCommand::Invalid(_))
        ));
        let id = |l: &[u8]| parse(l).map(|e| matches!(e.command, ExtraCommand::Id));
        assert_eq!(id(b"a ID NIL\r\n"), Some(true));
        assert_eq!(id(b"a ID ()\r\n"), Some(true));
        assert_eq!(
            id(b"a ID (\"n\" \"a \\\"q\\\" b\" \"v\" NIL)\r\n"),
            Some(true)
        );
        assert_eq!(id(b"a ID (\"n\" {3}\r\nx y)\r\n"), Some(true));
        assert_eq!(id(b"a ID (\"n\" \"x\"\r\n"), Some(false));
        assert_eq!(id(b"a ID (\"n\")\r\n"), Some(false));
        assert_eq!(id(b"a ID (n \"x\")\r\n"), Some(false));
        assert_eq!(id(b"a ID (\"n\" NILS)\r\n"), Some(false));
        assert_eq!(id(b"a ID\r\n"), Some(false));
        assert_eq!(tag_of(b"t1 FOO\r\n").as_deref(), Some("t1"));
        assert_eq!(tag_of(b"+ FOO\r\n"), None);
    }

    /// Mutated command lines (bit flips, truncations, junk) never panic
    /// the parsing path the server uses: the hand parser, the tag finder,
    /// imap-codec, and LIST matching.
    #[test]
    fn mutated_input_never_panics() {
        let seeds: &[&[u8]] = &[
            b"a1 UID EXPUNGE 1:3,5:*\r\n",
            b"a2 FETCH 1:* (UID FLAGS BODY.PEEK[1.2.HEADER.FIELDS (A B)]<0.10>)\r\n",
            b"a3 SEARCH OR (FROM x SINCE 1-Feb-2020) NOT UID 4:9 HEADER X-Y z\r\n",
            b"a4 APPEND INBOX (\\Seen) \"1-Jan-2020 00:00:00 +0000\" {3+}\r\nabc\r\n",
            b"a5 LIST \"\" \"%/*\"\r\n",
            b"a6 ID (\"name\" \"x\")\r\n",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let seed = seeds[(next() % seeds.len() as u64) as usize];
            let mut line = seed.to_vec();
            for _ in 0..(next() % 4) {
                let i = (next() % line.len() as u64) as usize;
                match next() % 3 {
                    0 => line[i] ^= 1 << (next() % 8),
                    1 => line.truncate(i),
                    _ => line.insert(i, (next() % 256) as u8),
                }
                if line.is_empty() {
                    break;
                }
            }
            let _ = is_extra(&line);
            let _ = parse(&line).map(|e| e.name());
            let _ = tag_of(&line);
            let _ = CommandCodec::default().decode(&line);
            let text = String::from_utf8_lossy(&line);
            let _ = wildcard_match(&text, "INBOX/a/b");
        }
    }
}
