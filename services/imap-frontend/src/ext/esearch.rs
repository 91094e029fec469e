//! ESEARCH (RFC 4731): `SEARCH RETURN (MIN MAX ALL COUNT) ...` and the
//! `* ESEARCH` response. The RETURN clause is cut out of the command here
//! so imap-codec parses the search keys; [`Esearch`] builds the response
//! and is meant to be reused by other RETURN-capable commands (MODSEQ).

use crate::session::uid_text;

/// What the client asked RETURN for. `RETURN ()` means ALL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ReturnOpts {
    pub min: bool,
    pub max: bool,
    pub all: bool,
    pub count: bool,
    /// SEARCHRES (RFC 5182): keep the result for `$` (`crate::searchres`).
    pub save: bool,
}

impl ReturnOpts {
    /// Whether an ESEARCH response is due: not for SAVE alone (RFC 5182 2.1).
    pub(crate) fn answers(&self) -> bool {
        self.min || self.max || self.all || self.count
    }
}

/// The MODSEQ an ESEARCH response reports (RFC 7162 3.1.5): the highest
/// modseq of the messages it returns, so with only MIN and/or MAX that of
/// the lowest and/or highest match; with ALL or COUNT, of all matches.
/// `modseqs` is that of each match, in the order of the matches.
pub(crate) fn returned_modseq(opts: ReturnOpts, modseqs: &[u64]) -> u64 {
    if opts.all || opts.count {
        return modseqs.iter().copied().max().unwrap_or(0);
    }
    let first = modseqs.first().copied().filter(|_| opts.min);
    let last = modseqs.last().copied().filter(|_| opts.max);
    first.max(last).unwrap_or(0)
}

/// A `SEARCH`/`UID SEARCH` with a RETURN clause.
#[derive(Debug)]
pub(crate) struct SearchReturn {
    pub tag: String,
    pub uid: bool,
    pub opts: ReturnOpts,
    /// The same command without the RETURN clause, for imap-codec.
    pub plain: Vec<u8>,
}

/// Recognises `tag [UID] SEARCH RETURN (...) keys`. `None`: not such a
/// command; `Some(Err(text))`: it is one, but malformed (BAD).
pub(crate) fn parse(buf: &[u8]) -> Option<Result<SearchReturn, String>> {
    let tag_end = buf.iter().position(|&b| b == b' ')?;
    let tag = String::from_utf8_lossy(buf.get(..tag_end)?).into_owned();
    let mut pos = tag_end + 1;
    let word = |pos: &mut usize| -> Option<&[u8]> {
        let rest = buf.get(*pos..)?;
        let len = rest.iter().position(|&b| b == b' ')?;
        *pos += len + 1;
        rest.get(..len)
    };
    let mut w = word(&mut pos)?;
    let uid = w.eq_ignore_ascii_case(b"UID");
    if uid {
        w = word(&mut pos)?;
    }
    let command_end = pos;
    if !w.eq_ignore_ascii_case(b"SEARCH") || !word(&mut pos)?.eq_ignore_ascii_case(b"RETURN") {
        return None;
    }
    Some(parse_return(buf, tag, uid, command_end, pos))
}

fn parse_return(
    buf: &[u8],
    tag: String,
    uid: bool,
    command_end: usize,
    pos: usize,
) -> Result<SearchReturn, String> {
    let rest = buf.get(pos..).unwrap_or_default();
    let inner = rest.strip_prefix(b"(").ok_or("RETURN needs a list")?;
    let close = inner
        .iter()
        .position(|&b| b == b')')
        .ok_or("Missing ) after RETURN options")?;
    let mut opts = ReturnOpts::default();
    for o in inner.get(..close).unwrap_or_default().split(|&b| b == b' ') {
        match o.to_ascii_uppercase().as_slice() {
            b"" => {}
            b"MIN" => opts.min = true,
            b"MAX" => opts.max = true,
            b"ALL" => opts.all = true,
            b"COUNT" => opts.count = true,
            b"SAVE" => opts.save = true,
            other => {
                return Err(format!(
                    "Unknown RETURN option {}",
                    String::from_utf8_lossy(other)
                        .chars()
                        .take(40)
                        .collect::<String>()
                ));
            }
        }
    }
    if opts == ReturnOpts::default() {
        opts.all = true;
    }
    let keys = inner.get(close + 1..).unwrap_or_default();
    let keys = keys.strip_prefix(b" ").ok_or("Missing search keys")?;
    let mut plain = buf.get(..command_end).unwrap_or_default().to_vec();
    plain.extend_from_slice(keys);
    Ok(SearchReturn {
        tag,
        uid,
        opts,
        plain,
    })
}

/// One `* ESEARCH` response.
#[derive(Debug, Default)]
pub(crate) struct Esearch {
    pub tag: String,
    pub uid: bool,
    pub min: Option<u32>,
    pub max: Option<u32>,
    pub count: Option<usize>,
    /// Ascending message numbers (UIDs or sequence numbers).
    pub all: Option<Vec<u32>>,
    /// RFC 7162 MODSEQ return data.
    pub modseq: Option<u64>,
}

impl Esearch {
    /// The response to `opts` for the matching numbers `hits` (ascending).
    pub(crate) fn new(tag: &str, uid: bool, opts: ReturnOpts, hits: &[u32]) -> Self {
        Esearch {
            tag: tag.to_owned(),
            uid,
            min: hits.first().copied().filter(|_| opts.min),
            max: hits.last().copied().filter(|_| opts.max),
            count: opts.count.then_some(hits.len()),
            // RFC 4731 3.1: no ALL (nor MIN/MAX) when nothing matched.
            all: (opts.all && !hits.is_empty()).then(|| hits.to_vec()),
            modseq: None,
        }
    }

    /// The response line, without "* " and CRLF.
    pub(crate) fn line(&self) -> String {
        let mut l = String::from("ESEARCH (TAG ");
        let mut tag = Vec::new();
        crate::encode::string(&mut tag, self.tag.as_bytes());
        l.push_str(&String::from_utf8_lossy(&tag));
        l.push(')');
        if self.uid {
            l.push_str(" UID");
        }
        if let Some(v) = self.min {
            l.push_str(&format!(" MIN {v}"));
        }
        if let Some(v) = self.max {
            l.push_str(&format!(" MAX {v}"));
        }
        if let Some(v) = self.count {
            l.push_str(&format!(" COUNT {v}"));
        }
        if let Some(all) = &self.all {
            l.push_str(" ALL ");
            l.push_str(&uid_text(all));
        }
        if let Some(v) = self.modseq {
            l.push_str(&format!(" MODSEQ {v}"));
        }
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modseq_of_the_returned_messages() {
        let only = |min, max| ReturnOpts {
            min,
            max,
            ..ReturnOpts::default()
        };
        let modseqs = [7, 30, 12];
        assert_eq!(returned_modseq(only(true, false), &modseqs), 7);
        assert_eq!(returned_modseq(only(false, true), &modseqs), 12);
        assert_eq!(returned_modseq(only(true, true), &modseqs), 12);
        let count = ReturnOpts {
            count: true,
            min: true,
            ..ReturnOpts::default()
        };
        assert_eq!(returned_modseq(count, &modseqs), 30);
        assert_eq!(returned_modseq(only(true, false), &[]), 0);
    }

    #[test]
    fn return_clause_is_cut_out() {
        let s = parse(b"t1 UID SEARCH RETURN (MIN COUNT) UNSEEN FROM {3}\r\nbob\r\n")
            .unwrap()
            .unwrap();
        assert!(s.uid);
        assert_eq!(
            s.opts,
            ReturnOpts {
                min: true,
                count: true,
                ..Default::default()
            }
        );
        assert_eq!(s.plain, b"t1 UID SEARCH UNSEEN FROM {3}\r\nbob\r\n");
        let s = parse(b"t2 search return () ALL\r\n").unwrap().unwrap();
        assert!(s.opts.all && !s.uid);
        assert_eq!(s.plain, b"t2 search ALL\r\n");
        assert!(parse(b"t3 SEARCH ALL\r\n").is_none());
        assert!(parse(b"t3 FETCH RETURN\r\n").is_none());
        let s = parse(b"t4 SEARCH RETURN (SAVE) ALL\r\n").unwrap().unwrap();
        assert!(s.opts.save && !s.opts.answers());
        let s = parse(b"t4 SEARCH RETURN (save min) ALL\r\n")
            .unwrap()
            .unwrap();
        assert!(s.opts.save && s.opts.min && !s.opts.all);
        assert!(
            parse(b"t4 SEARCH RETURN (SAVE FOO) ALL\r\n")
                .unwrap()
                .is_err()
        );
        assert!(parse(b"t5 SEARCH RETURN (MIN\r\n").unwrap().is_err());
        assert!(parse(b"t6 SEARCH RETURN (MIN)\r\n").unwrap().is_err());
    }

    #[test]
    fn responses() {
        let all = ReturnOpts {
            min: true,
            max: true,
            all: true,
            count: true,
            save: false,
        };
        let e = Esearch::new("a", true, all, &[2, 3, 4, 9]);
        assert_eq!(
            e.line(),
            "ESEARCH (TAG \"a\") UID MIN 2 MAX 9 COUNT 4 ALL 2:4,9"
        );
        let e = Esearch::new("a", false, all, &[]);
        assert_eq!(e.line(), "ESEARCH (TAG \"a\") COUNT 0");
    }
}
