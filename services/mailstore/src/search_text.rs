//! SEARCH BODY and TEXT on decoded text (RFC 3501 6.4.4, RFC 9051 6.4.4):
//! each text part of a message is streamed from object storage, its
//! content-transfer-encoding undone ([`mailfleet_mime::decode`]), turned
//! into UTF-8 from its charset line by line (so a multibyte character is
//! never cut), lower-cased and matched; nothing is held whole. Header
//! blocks (TEXT, and those of embedded messages) are matched as written,
//! and TEXT also matches the decoded Subject, From and To.

use std::ops::Range;

use futures::StreamExt;
use mail_parser::decoders::charsets::DecoderFnc;
use mail_parser::decoders::charsets::map::charset_decoder;
use mailfleet_blob::BlobStore;
use mailfleet_mime::decode::{Cte, Decoder, cte};
use mailfleet_mime::{BodyPart, MessageMeta};

use crate::error::Result;

/// Longest line converted at once; a longer one is converted in pieces.
const MAX_LINE: usize = 64 * 1024;

/// A stretch of the message to search.
struct Segment<'a> {
    range: Range<u64>,
    /// How to decode it; `None` reads it as written (a header block, or an
    /// encoding this server does not know).
    cte: Option<Cte>,
    charset: Option<&'a str>,
}

/// The stretches SEARCH BODY (or TEXT, with `headers`) looks at: every leaf
/// part's decoded content except binary ones (base64 of a non-text type),
/// and the header blocks of embedded messages.
fn segments<'a>(meta: &'a MessageMeta, headers: bool) -> Vec<Segment<'a>> {
    fn walk<'a>(part: &'a BodyPart, out: &mut Vec<Segment<'a>>) {
        if part.is_multipart() {
            part.parts.iter().for_each(|p| walk(p, out));
        } else if let Some(m) = &part.message {
            out.push(Segment {
                range: m.body.header_range(),
                cte: None,
                charset: None,
            });
            walk(&m.body, out);
        } else {
            let cte = cte(&part.encoding);
            if cte == Some(Cte::Base64) && part.media_type != "text" {
                return;
            }
            let charset = part
                .params
                .iter()
                .find(|(k, _)| k == "charset")
                .map(|(_, v)| v.as_str());
            out.push(Segment {
                range: part.body_range(),
                cte,
                charset,
            });
        }
    }
    let mut out = Vec::new();
    if headers {
        out.push(Segment {
            range: meta.body.header_range(),
            cte: None,
            charset: None,
        });
    }
    walk(&meta.body, &mut out);
    out
}

/// One BODY or TEXT key: its needle, and whether the header counts (TEXT).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct TextKey {
    pub needle: String,
    pub headers: bool,
}

/// Which of `keys` the decoded text of blob `blob_id` (whose metadata is
/// `meta`) contains, case-insensitively: its body, and for TEXT keys its
/// header too. The body is read once for all of them (a SEARCH `OR` of N
/// BODY keys must not read it N times), and only until every key matched.
pub(crate) async fn contains_each(
    blobs: &BlobStore,
    blob_id: &str,
    meta: &MessageMeta,
    keys: &[TextKey],
) -> Result<Vec<bool>> {
    let mut matchers: Vec<Matcher> = keys.iter().map(|k| Matcher::new(&k.needle)).collect();
    let mut found: Vec<bool> = matchers.iter().map(|m| m.needle.is_empty()).collect();
    for (i, k) in keys.iter().enumerate() {
        if k.headers
            && [&meta.subject, &meta.from, &meta.to]
                .into_iter()
                .flatten()
                .any(|v| matchers[i].alone(v))
        {
            found[i] = true;
        }
    }
    let any_headers = keys.iter().any(|k| k.headers);
    for (n, segment) in segments(meta, any_headers).into_iter().enumerate() {
        if found.iter().all(|&f| f) {
            break;
        }
        if segment.range.start >= segment.range.end {
            continue;
        }
        // The first segment of a TEXT search is the top header block,
        // which BODY keys do not look at.
        let header_only = any_headers && n == 0;
        let mut open: Vec<usize> = (0..keys.len())
            .filter(|&i| !found[i] && (!header_only || keys[i].headers))
            .collect();
        if open.is_empty() {
            continue;
        }
        for &i in &open {
            matchers[i].seam.clear();
        }
        let mut body = blobs.stream(blob_id, Some(segment.range.clone())).await?;
        let mut decoder = segment.cte.map(Decoder::new);
        let mut lines = Lines::new(segment.charset);
        let mut decoded = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            let data = match decoder.as_mut() {
                Some(d) => {
                    decoded.clear();
                    d.feed(&chunk, &mut decoded);
                    &decoded[..]
                }
                None => &chunk[..],
            };
            lines.feed(data, &mut matchers, &mut open, &mut found);
            if open.is_empty() {
                break;
            }
        }
        if open.is_empty() {
            continue;
        }
        decoded.clear();
        if let Some(d) = decoder.as_mut() {
            d.finish(&mut decoded);
        }
        lines.feed(&decoded, &mut matchers, &mut open, &mut found);
        lines.flush(&mut matchers, &mut open, &mut found);
    }
    Ok(found)
}

/// Lower-cased text matched as it comes, across the pieces of one segment.
struct Matcher {
    needle: Vec<u8>,
    /// The last `needle.len() - 1` octets seen.
    seam: Vec<u8>,
}

impl Matcher {
    fn new(needle: &str) -> Matcher {
        Matcher {
            needle: needle.to_lowercase().into_bytes(),
            seam: Vec::new(),
        }
    }

    /// Whether `text` alone contains the needle.
    fn alone(&self, text: &str) -> bool {
        find(text.to_lowercase().as_bytes(), &self.needle)
    }

    /// Takes the next piece of text, already lower-cased; whether the
    /// needle has been seen.
    fn feed_lower(&mut self, text: &str) -> bool {
        let text = text.as_bytes();
        let keep = self.needle.len().saturating_sub(1);
        self.seam.extend_from_slice(&text[..text.len().min(keep)]);
        if find(&self.seam, &self.needle) || find(text, &self.needle) {
            return true;
        }
        if text.len() >= keep {
            self.seam.clear();
            self.seam.extend_from_slice(&text[text.len() - keep..]);
        } else {
            self.seam.drain(..self.seam.len().saturating_sub(keep));
        }
        false
    }
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || memchr::memmem::find(hay, needle).is_some()
}

/// Decoded octets turned into text a line at a time, from their charset.
struct Lines {
    /// `None`: UTF-8 (or US-ASCII, or a charset not known here).
    charset: Option<DecoderFnc>,
    line: Vec<u8>,
}

impl Lines {
    fn new(charset: Option<&str>) -> Lines {
        let charset = charset
            .filter(|c| !c.eq_ignore_ascii_case("utf-8") && !c.eq_ignore_ascii_case("us-ascii"))
            .and_then(|c| charset_decoder(c.as_bytes()));
        Lines {
            charset,
            line: Vec::new(),
        }
    }

    /// Feeds the matchers listed in `open`; one that matches is marked in
    /// `found` and leaves `open`.
    fn feed(
        &mut self,
        data: &[u8],
        matchers: &mut [Matcher],
        open: &mut Vec<usize>,
        found: &mut [bool],
    ) {
        for piece in data.split_inclusive(|&b| b == b'\n') {
            self.line.extend_from_slice(piece);
            if piece.ends_with(b"\n") || self.line.len() >= MAX_LINE {
                self.flush(matchers, open, found);
                if open.is_empty() {
                    return;
                }
            }
        }
    }

    fn flush(&mut self, matchers: &mut [Matcher], open: &mut Vec<usize>, found: &mut [bool]) {
        if self.line.is_empty() {
            return;
        }
        let text = match self.charset {
            Some(decode) => decode(&self.line),
            None => String::from_utf8_lossy(&self.line).into_owned(),
        };
        self.line.clear();
        let lower = text.to_lowercase();
        open.retain(|&i| {
            let hit = matchers.get_mut(i).is_some_and(|m| m.feed_lower(&lower));
            if hit && let Some(f) = found.get_mut(i) {
                *f = true;
            }
            !hit
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Runs the matching of one decoded segment, cut into `size` pieces.
    fn found(data: &[u8], charset: Option<&str>, needle: &str, size: usize) -> bool {
        let mut matchers = [Matcher::new(needle)];
        let (mut open, mut found) = (vec![0], [false]);
        let mut lines = Lines::new(charset);
        for c in data.chunks(size) {
            lines.feed(c, &mut matchers, &mut open, &mut found);
        }
        lines.flush(&mut matchers, &mut open, &mut found);
        found[0]
    }

    /// A match is found wherever the text is cut, and only a real one.
    #[test]
    fn matches_across_pieces() {
        let hay = "one two Three four";
        for (needle, expected) in [
            ("three", true),
            ("o T", true),
            ("four", true),
            ("one", true),
            ("e", true),
            ("threef", false),
            ("one  two", false),
            ("fourx", false),
        ] {
            for size in 1..=hay.len() {
                let mut matcher = Matcher::new(needle);
                let found = hay
                    .as_bytes()
                    .chunks(size)
                    .any(|c| matcher.feed_lower(&std::str::from_utf8(c).unwrap().to_lowercase()));
                assert_eq!(found, expected, "{needle:?} in pieces of {size}");
            }
        }
    }

    #[test]
    fn text_is_matched_decoded_and_case_folded_wherever_it_is_cut() {
        let latin1 = b"Gr\xfc\xdfe aus K\xf6ln\r\nzweite Zeile\r\n";
        for size in 1..=latin1.len() {
            assert!(found(latin1, Some("iso-8859-1"), "GRÜßE", size));
            assert!(found(latin1, Some("ISO-8859-1"), "köln\r\nZWEITE", size));
            assert!(!found(latin1, Some("iso-8859-1"), "kölnx", size));
        }
        let utf8 = "日本語のテキスト\r\n".as_bytes();
        assert!(found(utf8, Some("utf-8"), "のテキ", 1));
        let shift_jis = b"\x93\xfa\x96\x7b\x8c\xea\r\n";
        for size in 1..=shift_jis.len() {
            assert!(found(shift_jis, Some("shift_jis"), "日本語", size));
        }
    }
}
