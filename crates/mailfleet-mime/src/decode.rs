//! Undoing a content-transfer-encoding (base64, quoted-printable) as the
//! octets stream by, for IMAP BINARY fetches and for SEARCH on decoded
//! text. What a [`Decoder`] keeps between chunks is bounded.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// A quoted-printable line longer than this is decoded in pieces.
const MAX_QP_LINE: usize = 64 * 1024;
/// Lenient base64: the decoder feeds it only alphabet characters, in
/// groups of four, and the last group without padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A content-transfer-encoding this server can undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cte {
    /// 7bit, 8bit, binary: the octets are the content.
    Identity,
    Base64,
    QuotedPrintable,
}

/// `None` for an encoding the server does not know (UNKNOWN-CTE).
pub fn cte(encoding: &str) -> Option<Cte> {
    match encoding.trim().to_ascii_uppercase().as_str() {
        "" | "7BIT" | "8BIT" | "BINARY" => Some(Cte::Identity),
        "BASE64" => Some(Cte::Base64),
        "QUOTED-PRINTABLE" => Some(Cte::QuotedPrintable),
        _ => None,
    }
}

/// Undoes a content-transfer-encoding chunk by chunk. What it keeps
/// between chunks is bounded: three base64 characters, or one
/// quoted-printable line of at most [`MAX_QP_LINE`] octets. The output is
/// exactly the decoded octets: line ends inside base64 data stay as they
/// were encoded, whatever the media type, so BINARY.SIZE and partial
/// offsets count what a client decoding the part itself would get.
pub struct Decoder {
    cte: Cte,
    carry: Vec<u8>,
    /// Base64 padding was seen: the data has ended (RFC 2045 6.8).
    ended: bool,
}

impl Decoder {
    pub fn new(cte: Cte) -> Self {
        Decoder {
            cte,
            carry: Vec::new(),
            ended: false,
        }
    }

    /// Decodes `input`, appending to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        match self.cte {
            Cte::Identity => out.extend_from_slice(input),
            Cte::Base64 => {
                for &b in input {
                    if self.ended {
                        break;
                    }
                    match b {
                        b'=' => self.ended = true,
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' => self.carry.push(b),
                        // Line breaks, and junk a lenient decoder skips.
                        _ => {}
                    }
                }
                let whole = self.carry.len() / 4 * 4;
                if whole > 0 {
                    let _ = BASE64.decode_vec(self.carry.get(..whole).unwrap_or_default(), out);
                    self.carry.drain(..whole);
                }
            }
            Cte::QuotedPrintable => {
                self.carry.extend_from_slice(input);
                // Whole lines decode alone exactly as within the whole body.
                if let Some(nl) = self.carry.iter().rposition(|&b| b == b'\n') {
                    qp(self.carry.get(..=nl).unwrap_or_default(), out);
                    self.carry.drain(..=nl);
                }
                while self.carry.len() > MAX_QP_LINE {
                    let cut = qp_cut(&self.carry);
                    qp(self.carry.get(..cut).unwrap_or_default(), out);
                    self.carry.drain(..cut);
                }
            }
        }
    }

    /// Decodes what is left at the end of the data.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match self.cte {
            Cte::Identity => {}
            // One lone character carries no whole octet: dropped.
            Cte::Base64 => {
                if self.carry.len() > 1 {
                    let _ = BASE64.decode_vec(&self.carry, out);
                }
            }
            Cte::QuotedPrintable => qp(&self.carry, out),
        }
        self.carry.clear();
    }
}

/// Decodes quoted-printable lines (each ends in LF, or is the end of the
/// data or a piece cut by [`qp_cut`]). Hand-written rather than the
/// `quoted_printable` crate, whose lenient mode drops 8-bit octets: mail
/// with raw UTF-8 in a quoted-printable part is common, and its octets are
/// kept here, as is an `=` that starts no escape (RFC 2045 6.7, note 2).
fn qp(data: &[u8], out: &mut Vec<u8>) {
    for line in data.split_inclusive(|&b| b == b'\n') {
        let (content, hard_break) = match line.strip_suffix(b"\n") {
            Some(c) => (c.strip_suffix(b"\r").unwrap_or(c), true),
            None => (line, false),
        };
        // Trailing white space is transport padding (RFC 2045 6.7 rule 3).
        let end = content
            .iter()
            .rposition(|&b| b != b' ' && b != b'\t')
            .map_or(0, |i| i + 1);
        let content = content.get(..end).unwrap_or_default();
        let mut soft = false;
        let mut i = 0;
        while let Some(&b) = content.get(i) {
            if b != b'=' {
                out.push(b);
                i += 1;
                continue;
            }
            let hex = |k: usize| content.get(k).and_then(|&c| (c as char).to_digit(16));
            match (hex(i + 1), hex(i + 2)) {
                (Some(h), Some(l)) => {
                    // Two hex digits: at most 0xff.
                    out.push(u8::try_from(h * 16 + l).unwrap_or(0));
                    i += 3;
                }
                _ if i + 1 == content.len() => {
                    soft = true;
                    i += 1;
                }
                _ => {
                    out.push(b'=');
                    i += 1;
                }
            }
        }
        if hard_break && !soft {
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Where to split an over-long quoted-printable line: not inside an `=XX`
/// escape, and not after white space (trailing white space is dropped).
fn qp_cut(line: &[u8]) -> usize {
    let safe = |i: usize| {
        let at = |k: usize| i.checked_sub(k).and_then(|j| line.get(j)).copied();
        at(1).is_some_and(|b| !matches!(b, b'=' | b' ' | b'\t' | b'\r')) && at(2) != Some(b'=')
    };
    let mut cut = MAX_QP_LINE.min(line.len());
    while cut > 1 && !safe(cut) {
        cut -= 1;
    }
    cut.max(1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn decode_all(cte: Cte, data: &[u8], chunk: usize) -> Vec<u8> {
        let mut d = Decoder::new(cte);
        let mut out = Vec::new();
        for c in data.chunks(chunk.max(1)) {
            d.feed(c, &mut out);
        }
        d.finish(&mut out);
        out
    }

    #[test]
    fn base64_decodes_across_chunk_boundaries() {
        let original: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let encoded = BASE64.encode(&original);
        let wrapped: Vec<u8> = encoded
            .as_bytes()
            .chunks(76)
            .flat_map(|l| [l, b"\r\n"].concat())
            .collect();
        for chunk in [1, 3, 5, 76, 4096] {
            assert_eq!(
                decode_all(Cte::Base64, &wrapped, chunk),
                original,
                "chunk {chunk}"
            );
        }
        // Unpadded tail, and data after the padding is ignored.
        assert_eq!(decode_all(Cte::Base64, b"QUJD\r\nRA", 3), b"ABCD");
        assert_eq!(decode_all(Cte::Base64, b"QQ==QUJD", 2), b"A");
    }

    /// Decoded octets are exact: a bare LF stays one octet (imaptest
    /// fetch-binary-mime-base64 counts 30 octets for this data).
    #[test]
    fn line_ends_stay_as_encoded() {
        let data = b"abcdefg\0hijkl\r\nmno\npqrstuvqxyz";
        let encoded = "YWJjZGVmZwBoaWprbA0K\r\n bW5vCnBx\tcnN0dXZxeHl6\r\n";
        for chunk in [1, 3, 64] {
            assert_eq!(decode_all(Cte::Base64, encoded.as_bytes(), chunk), data);
        }
    }

    #[test]
    fn quoted_printable_decodes_across_chunk_boundaries() {
        let data = b"caf=C3=A9 au lait=\r\n continues\r\nnext line  \r\n=00end";
        let expected = b"caf\xc3\xa9 au lait continues\r\nnext line\r\n\x00end";
        for chunk in [1, 2, 7, 1000] {
            assert_eq!(
                decode_all(Cte::QuotedPrintable, data, chunk),
                expected,
                "chunk {chunk}"
            );
        }
        // A line longer than the bound is decoded in pieces, escapes whole.
        let long: Vec<u8> = b"=41".repeat(MAX_QP_LINE);
        let out = decode_all(Cte::QuotedPrintable, &long, 10_000);
        assert_eq!(out, vec![b'A'; MAX_QP_LINE]);
        // Raw 8-bit octets and stray `=` pass; lower-case hex is read.
        assert_eq!(
            decode_all(
                Cte::QuotedPrintable,
                "\u{fc}ber =c3=a9 a=ZZ b= \nx".as_bytes(),
                3
            ),
            "\u{fc}ber \u{e9} a=ZZ bx".as_bytes()
        );
    }

    #[test]
    fn encodings() {
        assert_eq!(cte("7BIT"), Some(Cte::Identity));
        assert_eq!(cte("binary"), Some(Cte::Identity));
        assert_eq!(cte("BASE64"), Some(Cte::Base64));
        assert_eq!(cte("Quoted-Printable"), Some(Cte::QuotedPrintable));
        assert_eq!(cte("X-UUENCODE"), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Arbitrary data in arbitrary chunks decodes as it does whole.
        #[test]
        fn chunking_does_not_change_the_result(
            data in prop::collection::vec(any::<u8>(), 0..600),
            chunk in 1usize..64,
            which in 0u8..3,
        ) {
            let cte = [Cte::Identity, Cte::Base64, Cte::QuotedPrintable][which as usize];
            prop_assert_eq!(
                decode_all(cte, &data, chunk),
                decode_all(cte, &data, data.len() + 1)
            );
        }
    }
}
