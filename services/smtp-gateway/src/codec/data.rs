//! The DATA body decoder (RFC 5321 4.1.1.4 and 4.5.2).
//!
//! Only the exact sequence CR LF "." CR LF ends the data; the start of the
//! data counts as a line start, so an empty message is just ".\r\n". A line
//! that starts with "." and is not the terminator loses that first dot.
//! A bare LF (not after CR) or a bare CR (not before LF) never starts a line
//! and never ends the data; the decoder passes it through and records it, so
//! the session can refuse the message once the real end has been read. Thus a
//! client cannot smuggle a second message behind `\n.\n` or `\r.\r`.
//!
//! The decoder is a byte-at-a-time state machine that keeps its state across
//! calls: input may be split at any byte, and the output does not depend on
//! where.

/// Where the decoder stands in the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Right after CRLF (or at the start of the data).
    LineStart,
    /// A "." at the start of a line.
    Dot,
    /// ".\r" at the start of a line.
    DotCr,
    /// Inside a line.
    Text,
    /// A CR inside a line, waiting for its LF.
    Cr,
    /// The terminator was seen; nothing more is consumed.
    Done,
}

/// Progress of one [`DataDecoder::decode`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// All input was consumed; more is needed.
    NeedMore,
    /// The terminator ended at this many bytes into the input; the bytes
    /// after it belong to the next command.
    Done { consumed: usize },
}

/// Decodes one DATA body.
#[derive(Debug, Clone)]
pub struct DataDecoder {
    state: State,
    bare_line_ending: bool,
    decoded: u64,
    /// Longest text line allowed (without its CRLF); 0 for no limit.
    max_line: usize,
    line_len: usize,
    line_too_long: bool,
}

impl Default for DataDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl DataDecoder {
    pub fn new() -> Self {
        Self {
            state: State::LineStart,
            bare_line_ending: false,
            decoded: 0,
            max_line: 0,
            line_len: 0,
            line_too_long: false,
        }
    }

    /// Flags text lines longer than `max` octets (CRLF not counted; RFC 5321
    /// 4.5.3.1.6 says 998). The data is still read to its end.
    pub fn with_max_line(mut self, max: usize) -> Self {
        self.max_line = max;
        self
    }

    /// True once a text line went over the limit.
    pub fn saw_long_line(&self) -> bool {
        self.line_too_long
    }

    /// True once a bare CR or bare LF was seen in the body.
    pub fn saw_bare_line_ending(&self) -> bool {
        self.bare_line_ending
    }

    /// Bytes of message produced so far (after unstuffing).
    pub fn decoded_len(&self) -> u64 {
        self.decoded
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes `input`, appending message bytes to `out`. At most
    /// `input.len() + 2` bytes are appended (a pending CR or ".\r" may be
    /// released), so the caller bounds memory by bounding its reads.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Progress {
        let start = out.len();
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Done => break,
                State::LineStart => match b {
                    b'.' => self.state = State::Dot,
                    _ => {
                        // Not a dot line: handle the byte as ordinary text.
                        self.state = State::Text;
                        continue;
                    }
                },
                State::Dot => match b {
                    b'\r' => self.state = State::DotCr,
                    _ => {
                        // A dot line that is not the terminator: the leading
                        // dot is dropped and the rest is ordinary text.
                        self.state = State::Text;
                        continue;
                    }
                },
                State::DotCr => {
                    if b == b'\n' {
                        self.state = State::Done;
                        i += 1;
                        break;
                    }
                    // ".\r" then something other than LF: the dot is dropped
                    // as for any dot line, the CR is bare.
                    self.bare_line_ending = true;
                    out.push(b'\r');
                    self.state = State::Text;
                    continue;
                }
                State::Text => match b {
                    b'\r' => self.state = State::Cr,
                    b'\n' => {
                        // Bare LF: kept, recorded, and not a line start.
                        self.bare_line_ending = true;
                        out.push(b'\n');
                    }
                    _ => {
                        // Fast path: copy the run of ordinary bytes up to the
                        // next CR or LF in one go (at least this byte).
                        let run = input[i..]
                            .iter()
                            .position(|&c| c == b'\r' || c == b'\n')
                            .unwrap_or(input.len() - i);
                        out.extend_from_slice(&input[i..i + run]);
                        i += run;
                        continue;
                    }
                },
                State::Cr => {
                    if b == b'\n' {
                        out.extend_from_slice(b"\r\n");
                        self.state = State::LineStart;
                    } else {
                        self.bare_line_ending = true;
                        out.push(b'\r');
                        self.state = State::Text;
                        continue;
                    }
                }
            }
            i += 1;
        }
        self.decoded += (out.len() - start) as u64;
        if self.max_line > 0 && !self.line_too_long {
            for &b in &out[start..] {
                if b == b'\n' {
                    self.line_len = 0;
                } else if b != b'\r' {
                    self.line_len += 1;
                    if self.line_len > self.max_line {
                        self.line_too_long = true;
                        break;
                    }
                }
            }
        }
        if self.state == State::Done {
            Progress::Done { consumed: i }
        } else {
            Progress::NeedMore
        }
    }
}

/// Finds a bare CR or bare LF in a body that arrives in pieces (BDAT
/// chunks), by the same rule as [`DataDecoder`]: every CR must be followed
/// by LF and every LF preceded by CR, across piece borders. A CR ending the
/// last piece is bare.
#[derive(Debug, Clone, Default)]
pub struct LineEndingCheck {
    /// The previous piece ended with CR.
    pending_cr: bool,
    bare: bool,
}

impl LineEndingCheck {
    pub fn push(&mut self, data: &[u8]) {
        if self.bare {
            return;
        }
        for &b in data {
            if self.pending_cr {
                if b != b'\n' {
                    self.bare = true;
                    return;
                }
                self.pending_cr = false;
                continue;
            }
            match b {
                b'\r' => self.pending_cr = true,
                b'\n' => {
                    self.bare = true;
                    return;
                }
                _ => {}
            }
        }
    }

    /// True once a bare CR or LF was seen; `at_end` counts a CR left at
    /// the end as bare.
    pub fn saw_bare(&self, at_end: bool) -> bool {
        self.bare || (at_end && self.pending_cr)
    }
}
