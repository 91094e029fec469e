//! The pass that finds a message's structure as its bytes go by.
//!
//! [`Analyzer`] reads a message in chunks of any size and keeps only what the
//! metadata needs: the line being read (its first octets, to recognise a
//! blank line or a boundary delimiter), the header block being read, and
//! the metadata found so far. A body is counted (octets and line feeds) and
//! forgotten, so a 50 MiB attachment costs what a 5 KiB one does.
//!
//! It follows RFC 2046 5.1.1 as IMAP reads it: a delimiter line is
//! `--boundary` (`--boundary--` closes) with optional trailing white space,
//! and the line break before it belongs to the delimiter, so a part ends
//! before it. The boundaries of every enclosing multipart are checked on
//! every line, outermost first: an outer delimiter ends the inner parts
//! wherever they are. A part's end is only known at the next delimiter, so
//! what would be cut (its header block, its line count) is settled then.

use mail_parser::MessageParser;

use crate::headers::{TopFields, describe, envelope, parse_header_block};
use crate::{BodyPart, EmbeddedMessage, Envelope, MAX_DEPTH, MessageMeta};

/// Octets of one header block kept for parsing. A longer block still ends
/// where its blank line is (the byte ranges stay exact), but fields past
/// this point are not read into the envelope or the body structure.
pub const MAX_HEADER: usize = 256 * 1024;

/// Octets of header blocks kept over the whole message. Once spent, each
/// further block is read from its first [`MIN_HEADER`] octets only, enough
/// for its Content-Type, so the structure is still found.
pub const MAX_HEADERS: usize = 2 * 1024 * 1024;

/// See [`MAX_HEADERS`].
pub const MIN_HEADER: usize = 1024;

/// Longest multipart boundary recognised. RFC 2046 allows 70 characters; a
/// multipart with a longer one is read as one text part.
pub const MAX_BOUNDARY: usize = 998;

/// Parts (multipart children and embedded messages) found in one message at
/// most. After that, delimiter lines are read as body text: the open parts
/// run on to the end of their enclosing part.
pub const MAX_PARTS: usize = 10_000;

/// Octets of a line kept: enough for `--`, the longest boundary and `--`.
const LINE_KEEP: usize = MAX_BOUNDARY + 4;

/// Computes a [`MessageMeta`] from a message given in chunks: call
/// [`Analyzer::update`] with each chunk in order, then [`Analyzer::finish`].
/// The result does not depend on how the message is cut into chunks.
pub struct Analyzer {
    parser: MessageParser,
    /// Octets and line feeds seen so far.
    offset: u64,
    lfs: u64,
    /// The last three octets seen (the most recent last).
    tail: [u8; 3],
    line: Line,
    /// The entities (message or part) open at this point, outermost first.
    stack: Vec<Entity>,
    /// The header block of the innermost entity while it is being read.
    header: Vec<u8>,
    /// How much of the current header block is kept.
    header_cap: usize,
    /// What is left of [`MAX_HEADERS`].
    header_budget: usize,
    parts: usize,
    top: Option<TopFields>,
    root: Option<(Envelope, BodyPart)>,
}

/// The line being read.
struct Line {
    start: u64,
    /// Line feeds before `start`.
    lfs: u64,
    /// The three octets before `start` (the last one last).
    before: [u8; 3],
    /// Its first [`LINE_KEEP`] octets.
    head: Vec<u8>,
    /// Whether every octet after `head` is white space.
    rest_blank: bool,
}

/// Where an entity ends: the offset, the line feeds before it and the
/// octet just before it (for the line count of a body without a final
/// line break).
#[derive(Clone, Copy)]
struct End {
    at: u64,
    lfs: u64,
    last: u8,
}

/// A message (the whole one, or one inside a message/rfc822 part) or a
/// part of a multipart.
struct Entity {
    /// Offset of its header block.
    start: u64,
    depth: usize,
    /// A part of a multipart/digest, whose default type is message/rfc822.
    in_digest: bool,
    /// A message, which has an envelope.
    message: bool,
    /// `None` while its header block is read.
    body: Option<Box<Body>>,
}

struct Body {
    /// Its description, with `header_offset` and `body_offset` set.
    part: BodyPart,
    envelope: Option<Envelope>,
    /// Line feeds before `part.body_offset`.
    lfs: u64,
    kind: Kind,
}

enum Kind {
    Leaf,
    /// `boundary` is `None` when no usable one was given: the body is then
    /// served as text. `open` until the close delimiter.
    Multipart {
        boundary: Option<Vec<u8>>,
        open: bool,
        children: Vec<BodyPart>,
    },
    /// A message/rfc822 part; the embedded message when it has ended.
    Message(Option<Box<EmbeddedMessage>>),
}

impl Default for Analyzer {
    fn default() -> Self {
        Self::new()
    }
}

impl Analyzer {
    pub fn new() -> Self {
        Analyzer {
            parser: MessageParser::new(),
            offset: 0,
            lfs: 0,
            tail: [0; 3],
            line: Line {
                start: 0,
                lfs: 0,
                before: [0; 3],
                head: Vec::new(),
                rest_blank: true,
            },
            stack: vec![Entity {
                start: 0,
                depth: 0,
                in_digest: false,
                message: true,
                body: None,
            }],
            header: Vec::new(),
            header_cap: MAX_HEADER,
            header_budget: MAX_HEADERS,
            parts: 0,
            top: None,
            root: None,
        }
    }

    /// Reads the next chunk of the message.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let (segment, rest) = match memchr::memchr(b'\n', data) {
                Some(i) => data.split_at(i + 1),
                None => (data, &[][..]),
            };
            self.take(segment);
            if segment.last() == Some(&b'\n') {
                self.lfs += 1;
                self.end_line();
            }
            data = rest;
        }
    }

    /// The metadata of the message read.
    pub fn finish(mut self) -> MessageMeta {
        if self.line.start < self.offset {
            // A last line without a line break is a line all the same.
            self.end_line();
        }
        let end = End {
            at: self.offset,
            lfs: self.lfs,
            last: self.tail[2],
        };
        while !self.stack.is_empty() {
            self.close_top(end);
        }
        let (envelope, body) = self.root.take().unwrap_or_default();
        let top = self.top.take().unwrap_or_default();
        MessageMeta {
            size: self.offset,
            lines: line_count(0, 0, end),
            header_len: body.body_offset - body.header_offset,
            subject: top.subject,
            from: top.from,
            to: top.to,
            date: envelope.date.clone(),
            date_ms: top.date_ms,
            message_id: envelope.message_id.clone(),
            references: top.references,
            envelope,
            body,
        }
    }

    /// Octets held for the line and header block being read (their
    /// buffers' capacity): bounded whatever the message.
    pub fn buffered(&self) -> usize {
        self.line.head.capacity() + self.header.capacity()
    }

    /// Reads octets of one line (the whole rest of it, or up to its end).
    fn take(&mut self, segment: &[u8]) {
        let keep = LINE_KEEP
            .saturating_sub(self.line.head.len())
            .min(segment.len());
        self.line.head.extend_from_slice(&segment[..keep]);
        if self.line.rest_blank && !segment[keep..].iter().all(|&b| is_blank(b)) {
            self.line.rest_blank = false;
        }
        if self.stack.last().is_some_and(|e| e.body.is_none()) {
            let room = self
                .header_cap
                .saturating_sub(self.header.len())
                .min(segment.len());
            self.header.extend_from_slice(&segment[..room]);
        }
        self.offset += segment.len() as u64;
        match segment {
            [.., a, b, c] => self.tail = [*a, *b, *c],
            [a, b] => self.tail = [self.tail[2], *a, *b],
            [a] => self.tail = [self.tail[1], self.tail[2], *a],
            [] => {}
        }
    }

    /// The line just read is complete: acts on it and starts the next.
    fn end_line(&mut self) {
        let head = std::mem::take(&mut self.line.head);
        if !self.delimiter(&head)
            && self.stack.last().is_some_and(|e| e.body.is_none())
            && (head == b"\n" || head == b"\r\n")
        {
            self.end_header(self.offset, self.lfs);
        }
        self.line = Line {
            start: self.offset,
            lfs: self.lfs,
            before: self.tail,
            head,
            rest_blank: true,
        };
        self.line.head.clear();
    }

    /// Acts on the line if it is a delimiter of an enclosing multipart.
    fn delimiter(&mut self, line: &[u8]) -> bool {
        if self.parts >= MAX_PARTS || !line.starts_with(b"--") {
            return false;
        }
        let rest_blank = self.line.rest_blank;
        let found = self.stack.iter().enumerate().find_map(|(i, e)| {
            let Kind::Multipart {
                boundary: Some(boundary),
                open: true,
                ..
            } = &e.body.as_ref()?.kind
            else {
                return None;
            };
            is_delimiter(line, rest_blank, boundary).map(|close| (i, close))
        });
        let Some((i, close)) = found else {
            return false;
        };
        if let Some(child) = self.stack.get(i + 1) {
            let end = self.end_before_line(child.start);
            while self.stack.len() > i + 1 {
                self.close_top(end);
            }
        }
        let Some(multipart) = self.stack.get_mut(i) else {
            return true;
        };
        let depth = multipart.depth + 1;
        let Some(body) = multipart.body.as_mut() else {
            return true;
        };
        let in_digest = body.part.subtype == "digest";
        if let Kind::Multipart { open, .. } = &mut body.kind {
            *open = !close;
        }
        if !close {
            self.push(Entity {
                start: self.offset,
                depth,
                in_digest,
                message: false,
                body: None,
            });
        }
        true
    }

    /// The end of a part that a delimiter line closes: the line break
    /// before the line belongs to the delimiter, unless it is before the
    /// part's start.
    fn end_before_line(&self, part_start: u64) -> End {
        let before = self.line.before;
        let (mut at, mut lfs, mut last) = (self.line.start, self.line.lfs, 2);
        if at > part_start && before[last] == b'\n' {
            (at, lfs, last) = (at - 1, lfs - 1, last - 1);
            if at > part_start && before[last] == b'\r' {
                (at, last) = (at - 1, last - 1);
            }
        }
        End {
            at,
            lfs,
            last: before[last],
        }
    }

    fn push(&mut self, entity: Entity) {
        self.parts += 1;
        self.header.clear();
        self.header_cap = self.header_budget.clamp(MIN_HEADER, MAX_HEADER);
        self.stack.push(entity);
    }

    /// The innermost entity's header block ends at `body_at`, with `lfs`
    /// line feeds before it: reads the block and decides how to read the
    /// body.
    fn end_header(&mut self, body_at: u64, lfs: u64) {
        let Some(entity) = self.stack.last_mut() else {
            return;
        };
        let len = usize::try_from(body_at.saturating_sub(entity.start))
            .unwrap_or(usize::MAX)
            .min(self.header.len());
        let block = &self.header[..len];
        self.header_budget = self.header_budget.saturating_sub(len);
        let headers = parse_header_block(&self.parser, block);
        let envelope = entity.message.then(|| envelope(&headers, block));
        if entity.depth == 0 && entity.message {
            self.top = Some(TopFields::read(&headers, block));
        }
        let mut part = describe(&headers, block, entity.in_digest);
        part.header_offset = entity.start;
        part.body_offset = body_at;
        let depth = entity.depth;
        let identity = matches!(part.encoding.as_str(), "7BIT" | "8BIT" | "BINARY");
        let kind = if part.is_multipart() {
            let boundary = part
                .params
                .iter()
                .find(|(k, _)| k == "boundary")
                .map(|(_, v)| v.as_bytes().to_vec())
                .filter(|b| !b.is_empty() && b.len() <= MAX_BOUNDARY && depth < MAX_DEPTH);
            Kind::Multipart {
                boundary,
                open: true,
                children: Vec::new(),
            }
        } else if part.media_type == "message"
            && matches!(part.subtype.as_str(), "rfc822" | "global")
            && identity
            && depth < MAX_DEPTH
            && self.parts < MAX_PARTS
        {
            Kind::Message(None)
        } else {
            Kind::Leaf
        };
        let embedded = matches!(kind, Kind::Message(_));
        entity.body = Some(Box::new(Body {
            part,
            envelope,
            lfs,
            kind,
        }));
        self.header.clear();
        if embedded {
            self.push(Entity {
                start: body_at,
                depth: depth + 1,
                in_digest: false,
                message: true,
                body: None,
            });
        }
    }

    /// Ends the innermost entity at `end`. One still reading its header
    /// block has it end there first (an embedded message it then opens is
    /// ended by the next call).
    fn close_top(&mut self, end: End) {
        let Some(entity) = self.stack.last_mut() else {
            return;
        };
        if entity.body.is_none() {
            self.end_header(end.at, end.lfs);
            return;
        }
        let Some(Entity {
            body: Some(body), ..
        }) = self.stack.pop()
        else {
            return;
        };
        let (envelope, part) = (*body).finish(end);
        let Some(parent) = self.stack.last_mut() else {
            self.root = Some((envelope.unwrap_or_default(), part));
            return;
        };
        match parent.body.as_mut().map(|b| &mut b.kind) {
            Some(Kind::Multipart { children, .. }) => children.push(part),
            Some(Kind::Message(slot)) => {
                *slot = Some(Box::new(EmbeddedMessage {
                    envelope: envelope.unwrap_or_default(),
                    body: part,
                }));
            }
            // Only multiparts and messages have entities inside them.
            Some(Kind::Leaf) | None => {}
        }
    }
}

impl Body {
    fn finish(self, end: End) -> (Option<Envelope>, BodyPart) {
        let Body {
            mut part,
            envelope,
            lfs,
            kind,
        } = self;
        // A header block whose blank line the end cut off runs to the end.
        part.header_offset = part.header_offset.min(end.at);
        part.body_offset = part.body_offset.min(end.at);
        part.body_end = end.at;
        part.size = end.at - part.body_offset;
        let lines = line_count(part.body_offset, lfs, end);
        match kind {
            Kind::Multipart { children, .. } if !children.is_empty() => part.parts = children,
            Kind::Multipart { .. } => {
                // IMAP cannot describe a multipart without parts: serve it as text.
                part.media_type = "text".into();
                part.subtype = "plain".into();
                part.params = vec![("charset".into(), "us-ascii".into())];
                part.lines = Some(lines);
            }
            Kind::Message(message) => {
                part.lines = Some(lines);
                part.message = message;
            }
            Kind::Leaf if part.media_type == "text" => part.lines = Some(lines),
            Kind::Leaf => {}
        }
        (envelope, part)
    }
}

/// Lines from `from` (with `lfs` line feeds before it) to `end`: line
/// feeds, plus one for a last line without one.
fn line_count(from: u64, lfs: u64, end: End) -> u64 {
    if end.at <= from {
        return 0;
    }
    end.lfs.saturating_sub(lfs) + u64::from(end.last != b'\n')
}

/// `Some(is_close)` when the line (its first octets `head`, the rest white
/// space or not) is a delimiter line for `boundary`.
fn is_delimiter(head: &[u8], rest_blank: bool, boundary: &[u8]) -> Option<bool> {
    let rest = head.strip_prefix(b"--")?.strip_prefix(boundary)?;
    let (close, rest) = match rest.strip_prefix(b"--") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    (rest_blank && rest.iter().all(|&b| is_blank(b))).then_some(close)
}

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}
