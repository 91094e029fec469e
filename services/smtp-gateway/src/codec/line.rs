//! Command line splitting with a hard length limit.
//!
//! A line ends at LF; a CR right before it is dropped. A line longer than the
//! limit (CRLF included) is not kept: the reader discards input up to the next
//! LF and then reports [`LineEvent::TooLong`] once, so the session answers at
//! the right point in the stream and carries on with the next line.

/// What [`LineReader::poll`] found at the start of the input.
#[derive(Debug, PartialEq, Eq)]
pub enum LineEvent<'a> {
    /// A complete line, without its line ending.
    Line(&'a [u8]),
    /// A line over the limit ended; its bytes were discarded.
    TooLong,
}

/// Splits lines out of a byte stream; holds only the "discarding" flag, the
/// bytes stay in the caller's buffer.
#[derive(Debug)]
pub struct LineReader {
    max: usize,
    discarding: bool,
}

impl LineReader {
    /// `max` is the longest accepted line, line ending included.
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(3),
            discarding: false,
        }
    }

    /// Looks at the start of `input`. Returns how many bytes the caller must
    /// drop from its buffer and the event found, if any. With `(0, None)` the
    /// caller must read more input first; the buffer never needs to hold more
    /// than the limit, because a long line is consumed while it is discarded.
    pub fn poll<'a>(&mut self, input: &'a [u8]) -> (usize, Option<LineEvent<'a>>) {
        let lf = input.iter().position(|&b| b == b'\n');
        if self.discarding {
            return match lf {
                Some(i) => {
                    self.discarding = false;
                    (i + 1, Some(LineEvent::TooLong))
                }
                None => (input.len(), None),
            };
        }
        match lf {
            Some(i) if i + 1 > self.max => (i + 1, Some(LineEvent::TooLong)),
            Some(i) => {
                let line = &input[..i];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                (i + 1, Some(LineEvent::Line(line)))
            }
            // Without its LF the line is already at the limit: it can only
            // get longer, so start discarding now to keep the buffer bounded.
            None if input.len() >= self.max => {
                self.discarding = true;
                (input.len(), None)
            }
            None => (0, None),
        }
    }

    /// True while the rest of an over-long line is being thrown away.
    pub fn is_discarding(&self) -> bool {
        self.discarding
    }
}
