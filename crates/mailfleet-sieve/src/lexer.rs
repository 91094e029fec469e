//! Tokens of the Sieve grammar (RFC 5228 section 8.1): a pure function from bytes to tokens with
//! their line numbers.

use crate::CompileError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    /// Lower-cased: Sieve identifiers are case-insensitive.
    Ident(String),
    /// A `:tag`, lower-cased, without the colon.
    Tag(String),
    Number(u64),
    /// A quoted or multi-line string, escapes and dot-stuffing already removed.
    Str(String),
    LBracket,
    RBracket,
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    Semicolon,
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub tok: Tok,
    pub line: u32,
}

fn err(line: u32, message: impl Into<String>) -> CompileError {
    CompileError {
        line,
        message: message.into(),
    }
}

pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, CompileError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0usize;
    let mut line: u32 = 1;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => {
                line = line.saturating_add(1);
                i += 1;
            }
            b' ' | b'\t' | b'\r' => i += 1,
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let start = line;
                i += 2;
                loop {
                    match b.get(i) {
                        None => return Err(err(start, "unterminated /* comment")),
                        Some(b'*') if b.get(i + 1) == Some(&b'/') => {
                            i += 2;
                            break;
                        }
                        Some(b'\n') => {
                            line = line.saturating_add(1);
                            i += 1;
                        }
                        Some(_) => i += 1,
                    }
                }
            }
            b'[' | b']' | b'(' | b')' | b'{' | b'}' | b',' | b';' => {
                let tok = match c {
                    b'[' => Tok::LBracket,
                    b']' => Tok::RBracket,
                    b'(' => Tok::LParen,
                    b')' => Tok::RParen,
                    b'{' => Tok::LBrace,
                    b'}' => Tok::RBrace,
                    b',' => Tok::Comma,
                    _ => Tok::Semicolon,
                };
                out.push(Token { tok, line });
                i += 1;
            }
            b'"' => {
                let start = line;
                i += 1;
                let mut s = Vec::new();
                loop {
                    match b.get(i) {
                        None => return Err(err(start, "unterminated quoted string")),
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') => {
                            // RFC 5228 2.4.2: "\\" and "\"" are escapes; a backslash before any
                            // other character is dropped.
                            match b.get(i + 1) {
                                None => return Err(err(start, "unterminated quoted string")),
                                Some(&n) => {
                                    if n == b'\n' {
                                        line = line.saturating_add(1);
                                    }
                                    s.push(n);
                                    i += 2;
                                }
                            }
                        }
                        Some(&n) => {
                            if n == b'\n' {
                                line = line.saturating_add(1);
                            }
                            s.push(n);
                            i += 1;
                        }
                    }
                }
                out.push(Token {
                    tok: Tok::Str(bytes_to_string(s)),
                    line: start,
                });
            }
            b':' => {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                if j == start || b[start].is_ascii_digit() {
                    return Err(err(line, "expected a tag name after ':'"));
                }
                out.push(Token {
                    tok: Tok::Tag(src[start..j].to_ascii_lowercase()),
                    line,
                });
                i = j;
            }
            b'0'..=b'9' => {
                let mut n: u64 = 0;
                while i < b.len() && b[i].is_ascii_digit() {
                    n = n
                        .checked_mul(10)
                        .and_then(|n| n.checked_add(u64::from(b[i] - b'0')))
                        .ok_or_else(|| err(line, "number too large"))?;
                    i += 1;
                }
                let mult: u64 = match b.get(i) {
                    Some(b'K' | b'k') => 1 << 10,
                    Some(b'M' | b'm') => 1 << 20,
                    Some(b'G' | b'g') => 1 << 30,
                    _ => 1,
                };
                if mult != 1 {
                    i += 1;
                }
                let n = n
                    .checked_mul(mult)
                    .ok_or_else(|| err(line, "number too large"))?;
                out.push(Token {
                    tok: Tok::Number(n),
                    line,
                });
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let word = src[start..i].to_ascii_lowercase();
                if word == "text" && b.get(i) == Some(&b':') {
                    let start_line = line;
                    i += 1;
                    // text: [spaces] [comment] CRLF, then lines up to a lone "."
                    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
                        i += 1;
                    }
                    if b.get(i) == Some(&b'#') {
                        while i < b.len() && b[i] != b'\n' {
                            i += 1;
                        }
                    }
                    if b.get(i) == Some(&b'\r') {
                        i += 1;
                    }
                    if b.get(i) != Some(&b'\n') {
                        return Err(err(line, "expected a line break after text:"));
                    }
                    i += 1;
                    line = line.saturating_add(1);
                    let mut s = Vec::new();
                    loop {
                        if i >= b.len() {
                            return Err(err(start_line, "multi-line string without its final '.'"));
                        }
                        let end = b[i..]
                            .iter()
                            .position(|&c| c == b'\n')
                            .map_or(b.len(), |p| i + p);
                        let mut l = &b[i..end];
                        if l.last() == Some(&b'\r') {
                            l = &l[..l.len() - 1];
                        }
                        i = (end + 1).min(b.len());
                        line = line.saturating_add(1);
                        if l == b"." {
                            break;
                        }
                        let l = if l.starts_with(b"..") { &l[1..] } else { l };
                        s.extend_from_slice(l);
                        s.extend_from_slice(b"\r\n");
                    }
                    out.push(Token {
                        tok: Tok::Str(bytes_to_string(s)),
                        line: start_line,
                    });
                } else {
                    out.push(Token {
                        tok: Tok::Ident(word),
                        line,
                    });
                }
            }
            _ => {
                return Err(err(
                    line,
                    format!("unexpected character {:?}", char::from(c)),
                ));
            }
        }
    }
    Ok(out)
}

fn bytes_to_string(v: Vec<u8>) -> String {
    // The source was checked to be UTF-8 and escapes only remove ASCII backslashes, so this is
    // lossless; lossy conversion keeps it panic-free regardless.
    match String::from_utf8(v) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}
