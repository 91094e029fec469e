//! ESEARCH (RFC 4731): the `* ESEARCH` response to `SEARCH RETURN (MIN
//! MAX ALL COUNT) ...` (parsed in `proto`); [`Esearch`] builds it and is
//! meant to be reused by other RETURN-capable commands (MODSEQ).

use crate::session::uid_text;

pub(crate) use crate::proto::ReturnOpts;

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
