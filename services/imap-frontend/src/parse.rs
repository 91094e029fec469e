//! The command parsing path of a session, kept pure (bytes in, typed
//! command out) so it can be fuzzed whole: UTF-8 names rewritten for
//! imap-codec (RFC 6855), then the hand parsers for what imap-codec 1.0
//! lacks (SORT/THREAD, LIST-EXTENDED/STATUS/ESEARCH, ID/NAMESPACE/UID
//! EXPUNGE, RFC 7162 modifiers), then imap-codec for the rest.

use std::borrow::Cow;

use crate::rfc7162::{Mods, Parsed};

pub(crate) enum Prepared<'a> {
    Sort(Result<crate::sort::SortCommand, (String, String)>),
    Ext(crate::ext::Ext),
    Extra(crate::extra::Extra),
    /// Hand-parsed syntax that is wrong: answer BAD.
    Invalid {
        tag: String,
        why: String,
    },
    /// A line for imap-codec, with the RFC 7162 parts taken out of it.
    Codec {
        line: Cow<'a, [u8]>,
        mods: Mods,
    },
}

/// Recognises one complete command line (literals included).
pub(crate) fn prepare(buf: &[u8]) -> Prepared<'_> {
    let line = match crate::ext::names::rewrite_8bit(buf) {
        Some(rewritten) => Cow::Owned(rewritten),
        None => Cow::Borrowed(buf),
    };
    // `$` (RFC 5182) before every parser that reads sequence sets or keys.
    let mut saved_set = false;
    let line = match crate::searchres::cut(&line) {
        Some(cut) => {
            saved_set = cut.saved_set;
            Cow::Owned(cut.plain)
        }
        None => line,
    };
    if let Some(sort) = crate::sort::parse(&line) {
        return Prepared::Sort(sort);
    }
    if let Some(ext) = crate::ext::parse(&line) {
        return Prepared::Ext(ext);
    }
    if let Some(extra) = crate::extra::parse(&line) {
        return Prepared::Extra(extra);
    }
    // BINARY fetch items (RFC 3516) out, then RFC 7162 syntax.
    let mut binary = None;
    let line = match crate::binary::cut(&line) {
        Some(Ok(crate::binary::Cut {
            plain,
            items,
            drop_uid,
        })) => {
            binary = Some((items, drop_uid));
            Cow::Owned(plain)
        }
        Some(Err(why)) => {
            return Prepared::Invalid {
                tag: crate::extra::tag_of(&line).unwrap_or_else(|| "*".into()),
                why: why.into(),
            };
        }
        None => line,
    };
    let (line, mut mods) = match crate::rfc7162::parse(&line) {
        Some(Parsed::Invalid { tag, why }) => return Prepared::Invalid { tag, why },
        Some(Parsed::Command { plain, mods, .. }) => (Cow::Owned(plain), mods),
        None => (line, Mods::default()),
    };
    if let Some((items, drop_uid)) = binary {
        mods.binary = items;
        mods.drop_uid |= drop_uid;
    }
    mods.saved_set = saved_set;
    Prepared::Codec { line, mods }
}

/// The whole path the server runs for one command, result dropped: for the
/// property tests below and the fuzz target (`crate::parse_command`).
pub(crate) fn run_path(line: &[u8]) {
    use imap_codec::CommandCodec;
    use imap_codec::decode::Decoder;
    if let Prepared::Codec { line, .. } = prepare(line)
        && let Ok((_, mut command)) = CommandCodec::default().decode(&line)
    {
        let mut other = command.clone();
        let _ = crate::ext::names::decode_command(&mut command.body, false);
        let _ = crate::ext::names::decode_command(&mut other.body, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_codec::CommandCodec;
    use imap_codec::decode::Decoder;
    use proptest::prelude::*;

    #[test]
    fn each_parser_gets_its_commands() {
        assert!(matches!(
            prepare(b"a UID SORT (SUBJECT) UTF-8 ALL\r\n"),
            Prepared::Sort(Ok(_))
        ));
        assert!(matches!(
            prepare(b"a LIST \"\" * RETURN (STATUS (MESSAGES))\r\n"),
            Prepared::Ext(_)
        ));
        assert!(matches!(prepare(b"a ID NIL\r\n"), Prepared::Extra(_)));
        assert!(matches!(
            prepare(b"a SELECT INBOX (CONDSTORE\r\n"),
            Prepared::Invalid { .. }
        ));
        match prepare(b"a FETCH 1:* (FLAGS) (CHANGEDSINCE 5)\r\n") {
            Prepared::Codec { line, mods } => {
                assert_eq!(mods.changed_since, Some(5));
                assert!(CommandCodec::default().decode(&line).is_ok());
            }
            _ => panic!("FETCH goes to imap-codec"),
        }
        match prepare(b"a FETCH $ (FLAGS BINARY.PEEK[1]<0.5>)\r\n") {
            Prepared::Codec { line, mods } => {
                assert!(mods.saved_set && mods.binary.len() == 1 && !mods.drop_uid);
                assert_eq!(line.as_ref(), b"a FETCH 1 (FLAGS)\r\n");
            }
            _ => panic!("FETCH goes to imap-codec"),
        }
        match prepare(b"a FETCH 2 (BINARY.SIZE[1] MODSEQ) (CHANGEDSINCE 3)\r\n") {
            Prepared::Codec { line, mods } => {
                assert!(mods.drop_uid && mods.fetch_modseq && mods.binary.len() == 1);
                assert!(CommandCodec::default().decode(&line).is_ok());
            }
            _ => panic!("FETCH goes to imap-codec"),
        }
        assert!(matches!(
            prepare(b"a FETCH 1 BINARY[TEXT]\r\n"),
            Prepared::Invalid { .. }
        ));
        assert!(matches!(
            prepare(b"a UID SEARCH RETURN (SAVE) UID $\r\n"),
            Prepared::Ext(_)
        ));
        match prepare(b"a CREATE \"Entw\xc3\xbcrfe\"\r\n") {
            Prepared::Codec { line, .. } => {
                assert!(
                    CommandCodec::default().decode(&line).is_ok(),
                    "UTF-8 name rewritten"
                );
            }
            _ => panic!("CREATE goes to imap-codec"),
        }
    }

    /// Command-shaped input: a tag, a verb the server knows, and a soup of
    /// the tokens its parsers look for.
    fn command_line() -> impl Strategy<Value = Vec<u8>> {
        let verbs = prop::sample::select(vec![
            "SELECT",
            "EXAMINE",
            "FETCH",
            "UID FETCH",
            "STORE",
            "UID STORE",
            "SEARCH",
            "UID SEARCH",
            "SORT",
            "UID SORT",
            "THREAD",
            "UID THREAD",
            "LIST",
            "LSUB",
            "STATUS",
            "APPEND",
            "ID",
            "NAMESPACE",
            "UID EXPUNGE",
            "ENABLE",
            "CREATE",
            "RENAME",
            "COPY",
            "MOVE",
            "GETQUOTAROOT",
            "IDLE",
            "NOOP",
        ]);
        let token = prop::sample::select(vec![
            "(",
            ")",
            "\"\"",
            "\"a b\"",
            "*",
            "%",
            "1:*",
            "1,3:5",
            "$",
            "INBOX",
            "RETURN",
            "STATUS",
            "MESSAGES",
            "SIZE",
            "CHANGEDSINCE",
            "VANISHED",
            "UNCHANGEDSINCE",
            "MODSEQ",
            "CONDSTORE",
            "QRESYNC",
            "REVERSE",
            "SUBJECT",
            "REFERENCES",
            "UTF-8",
            "ALL",
            "MIN",
            "MAX",
            "COUNT",
            "{3}\r\nabc",
            "{2+}\r\nab",
            "~{1}\r\nx",
            "\"\u{e9}t\u{e9}\"",
            "&AOk-",
            "&-",
            "&Jjo",
            "0",
            "4294967296",
            "18446744073709551616",
            "\\Seen",
            "(FLAGS)",
            "BODY[HEADER.FIELDS (From)]",
            "<0.10>",
            "NIL",
            "BINARY[1]",
            "BINARY.PEEK[1.2]<0.5>",
            "BINARY.SIZE[]",
            "BINARY[1]<",
            "(BINARY[2] FLAGS)",
            "RETURN (SAVE)",
            "RETURN (SAVE MIN)",
            "UID $",
            "UTF8 (~{2}\r\nab)",
            "~{2+}\r\na\0",
        ]);
        (
            "[a-zA-Z0-9]{1,4}",
            verbs,
            prop::collection::vec(token, 0..12),
            prop::collection::vec(any::<u8>(), 0..3),
        )
            .prop_map(|(tag, verb, tokens, noise)| {
                let mut line = format!("{tag} {verb}").into_bytes();
                for t in tokens {
                    line.push(b' ');
                    line.extend_from_slice(t.as_bytes());
                }
                line.extend_from_slice(&noise);
                line.extend_from_slice(b"\r\n");
                line
            })
    }

    /// `PROPTEST_CASES=100000 cargo test -p imap-frontend --lib parse`
    /// runs a longer campaign than the bounded one of every `cargo test`.
    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3000)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases()))]

        #[test]
        fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..400)) {
            run_path(&data);
        }

        #[test]
        fn command_shaped_input_never_panics(line in command_line()) {
            run_path(&line);
        }
    }
}
