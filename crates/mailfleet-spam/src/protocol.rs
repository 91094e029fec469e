//! rspamd's answers and what the gateway makes of them: pure functions,
//! no I/O.

use std::ops::Range;

use base64::Engine as _;
use serde::Deserialize;

/// Most header fields taken from `milter.add_headers`.
const MAX_EXTRA_HEADERS: usize = 32;
/// Longest header value taken from rspamd (after unfolding).
const MAX_VALUE: usize = 8 * 1024;
/// Longest SMTP reply text taken from rspamd.
const MAX_REPLY_TEXT: usize = 200;

/// What rspamd wants done with a message (its `action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    NoAction,
    Greylist,
    AddHeader,
    RewriteSubject,
    SoftReject,
    Reject,
}

impl Action {
    /// rspamd's name, as in its answer.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "no action" => Self::NoAction,
            "greylist" => Self::Greylist,
            "add header" => Self::AddHeader,
            "rewrite subject" => Self::RewriteSubject,
            "soft reject" => Self::SoftReject,
            "reject" => Self::Reject,
            _ => return None,
        })
    }

    /// rspamd's name for the action (the `X-Spam-Action` value).
    pub fn name(self) -> &'static str {
        match self {
            Self::NoAction => "no action",
            Self::Greylist => "greylist",
            Self::AddHeader => "add header",
            Self::RewriteSubject => "rewrite subject",
            Self::SoftReject => "soft reject",
            Self::Reject => "reject",
        }
    }

    /// A metric label (no spaces).
    pub fn label(self) -> &'static str {
        match self {
            Self::NoAction => "no_action",
            Self::Greylist => "greylist",
            Self::AddHeader => "add_header",
            Self::RewriteSubject => "rewrite_subject",
            Self::SoftReject => "soft_reject",
            Self::Reject => "reject",
        }
    }

    /// Accepted but marked: the message goes to Junk.
    pub fn is_spam(self) -> bool {
        matches!(self, Self::AddHeader | Self::RewriteSubject)
    }
}

/// rspamd's verdict on one message (the parts of `/checkv2` we use).
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub action: Action,
    pub score: f64,
    pub required: f64,
    /// The rewritten Subject (action `rewrite subject`).
    pub subject: Option<String>,
    /// Text for the SMTP reply (`messages.smtp_message`), sanitised.
    pub smtp_message: Option<String>,
    /// Header fields rspamd asks to add (`milter.add_headers`), sanitised.
    pub add_headers: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct Raw {
    action: String,
    #[serde(default)]
    score: f64,
    #[serde(default)]
    required_score: f64,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    messages: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    milter: Option<Milter>,
}

#[derive(Deserialize)]
struct Milter {
    #[serde(default)]
    add_headers: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Check {
    /// Reads a `/checkv2` answer.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let raw: Raw = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let action = Action::from_name(&raw.action)
            .ok_or_else(|| format!("unknown action {:?}", truncate(&raw.action, 40)))?;
        let smtp_message = raw
            .messages
            .as_ref()
            .and_then(|m| m.get("smtp_message"))
            .and_then(|v| v.as_str())
            .map(reply_text)
            .filter(|t| !t.is_empty());
        let mut add_headers = Vec::new();
        if let Some(headers) = raw.milter.and_then(|m| m.add_headers) {
            for (name, value) in headers {
                if !valid_field_name(&name) {
                    continue;
                }
                // A value is a string, {"value": .., "order": ..}, or a list
                // of those.
                let values = match value {
                    serde_json::Value::Array(items) => items,
                    other => vec![other],
                };
                for value in values {
                    let text = match &value {
                        serde_json::Value::String(s) => Some(s.as_str()),
                        serde_json::Value::Object(o) => o.get("value").and_then(|v| v.as_str()),
                        _ => None,
                    };
                    if let Some(text) = text
                        && add_headers.len() < MAX_EXTRA_HEADERS
                    {
                        add_headers.push((name.clone(), header_value(text)));
                    }
                }
            }
        }
        Ok(Self {
            action,
            score: raw.score,
            required: raw.required_score,
            subject: raw.subject.filter(|s| !s.is_empty()),
            smtp_message,
            add_headers,
        })
    }

    /// The header fields to prepend to the stored message, CRLF-terminated:
    /// `X-Spam-Status`, `X-Spam-Action`, rspamd's own fields, and the new
    /// Subject when rspamd rewrote it (the caller drops the old one).
    pub fn header_block(&self) -> String {
        let mut out = format!(
            "X-Spam-Status: {}, score={:.2} required={:.2}\r\nX-Spam-Action: {}\r\n",
            if self.action.is_spam() { "Yes" } else { "No" },
            self.score,
            self.required,
            self.action.name()
        );
        for (name, value) in &self.add_headers {
            // Ours already say it; a second copy would only disagree.
            if name.eq_ignore_ascii_case("X-Spam-Status")
                || name.eq_ignore_ascii_case("X-Spam-Action")
            {
                continue;
            }
            out.push_str(name);
            out.push_str(": ");
            out.push_str(value);
            out.push_str("\r\n");
        }
        if let Some(subject) = self.new_subject() {
            out.push_str("Subject: ");
            out.push_str(&subject);
            out.push_str("\r\n");
        }
        out
    }

    /// The Subject to put in place of the message's own, encoded for a
    /// header (RFC 2047 when not ASCII); only for `rewrite subject`.
    pub fn new_subject(&self) -> Option<String> {
        if self.action != Action::RewriteSubject {
            return None;
        }
        self.subject.as_deref().map(encode_subject)
    }
}

/// The field for a message that was not checked (rspamd unreachable, or
/// the message over the size limit).
pub const UNCHECKED: &str = "X-Spam-Status: unchecked\r\n";

/// The byte ranges of the header fields (continuation lines included) of
/// `message` that the gateway leaves out of a message rspamd checked: every
/// `X-Spam-*` field the client sent (only the ones this gateway writes may
/// speak for rspamd, as with Authentication-Results), and every `Subject:`
/// when rspamd rewrote it (`new_subject`). Only the header block is looked
/// at (up to the first empty line); the ranges are in order.
pub fn replaced_field_ranges(message: &[u8], new_subject: bool) -> Vec<Range<usize>> {
    let mut ranges: Vec<Range<usize>> = Vec::new();
    let mut leaving = false;
    let mut pos = 0;
    while pos < message.len() {
        let end = memchr_newline(&message[pos..]).map_or(message.len(), |i| pos + i + 1);
        let line = &message[pos..end];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if continuation {
            if leaving && let Some(last) = ranges.last_mut() {
                last.end = end;
            }
        } else {
            let name = line
                .iter()
                .position(|&b| b == b':')
                .map_or(&line[..0], |colon| line[..colon].trim_ascii_end());
            leaving = (name.len() > 7 && name[..7].eq_ignore_ascii_case(b"x-spam-"))
                || (new_subject && name.eq_ignore_ascii_case(b"subject"));
            if leaving {
                ranges.push(pos..end);
            }
        }
        pos = end;
    }
    ranges
}

fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

/// RFC 5322 field names: printable ASCII without colon.
fn valid_field_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 76
        && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// A header value from rspamd made safe to write: its own line breaks
/// become folding, other control characters go, and the length is bounded.
fn header_value(value: &str) -> String {
    let mut out = String::new();
    for (i, line) in value.split('\n').enumerate() {
        let line: String = line.trim().chars().filter(|c| !c.is_control()).collect();
        if line.is_empty() {
            continue;
        }
        if i > 0 && !out.is_empty() {
            out.push_str("\r\n\t");
        }
        out.push_str(&line);
        if out.len() > MAX_VALUE {
            out = truncate(&out, MAX_VALUE).to_owned();
            break;
        }
    }
    out
}

/// rspamd's message for an SMTP reply: one line of printable ASCII.
fn reply_text(text: &str) -> String {
    let text: String = text
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { ' ' })
        .collect();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    truncate(&text, MAX_REPLY_TEXT).to_owned()
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// A Subject value: printable ASCII as is, anything else as RFC 2047
/// B-encoded words of at most 45 bytes of UTF-8 each (75 characters).
fn encode_subject(subject: &str) -> String {
    let subject: String = subject.chars().filter(|c| !c.is_control()).collect();
    let subject = truncate(&subject, MAX_VALUE);
    if subject.is_ascii() {
        return subject.to_owned();
    }
    let mut words = Vec::new();
    let mut start = 0;
    while start < subject.len() {
        let mut end = (start + 45).min(subject.len());
        while !subject.is_char_boundary(end) {
            end -= 1;
        }
        let piece = subject.get(start..end).unwrap_or_default();
        words.push(format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(piece)
        ));
        start = end;
    }
    words.join("\r\n ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_reject_with_its_message() {
        let check = Check::parse(
            br#"{"is_skipped":false,"score":1000,"required_score":15,"action":"reject",
                "symbols":{},"messages":{"smtp_message":"Gtube pattern\r\nmore"}}"#,
        )
        .unwrap();
        assert_eq!(check.action, Action::Reject);
        assert_eq!(check.smtp_message.as_deref(), Some("Gtube pattern more"));
    }

    #[test]
    fn header_block_says_no_for_a_clean_message() {
        let check =
            Check::parse(br#"{"score":1.5,"required_score":15,"action":"no action"}"#).unwrap();
        assert_eq!(
            check.header_block(),
            "X-Spam-Status: No, score=1.50 required=15.00\r\nX-Spam-Action: no action\r\n"
        );
    }

    #[test]
    fn milter_headers_are_taken_in_every_shape_and_made_safe() {
        let check = Check::parse(
            br#"{"score":7,"required_score":15,"action":"add header",
                "milter":{"add_headers":{
                    "X-Spamd-Result":{"value":"default: False [7.00 / 15.00];\n SYM(1.0)","order":0},
                    "X-Rspamd-Server":"rspamd\r\nInjected: yes",
                    "Bad Name":"x",
                    "X-Two":[{"value":"a"},"b"]}}}"#,
        )
        .unwrap();
        let block = check.header_block();
        assert!(block.starts_with("X-Spam-Status: Yes, score=7.00 required=15.00\r\n"));
        assert!(block.contains("X-Spamd-Result: default: False [7.00 / 15.00];\r\n\tSYM(1.0)\r\n"));
        // A line break inside a value never starts a new field.
        assert!(block.contains("X-Rspamd-Server: rspamd\r\n\tInjected: yes\r\n"));
        assert!(!block.contains("Bad Name"));
        assert!(block.contains("X-Two: a\r\nX-Two: b\r\n"));
    }

    #[test]
    fn rewritten_subject_is_encoded_when_not_ascii() {
        let check = Check::parse(
            r#"{"score":9,"required_score":15,"action":"rewrite subject","subject":"*** SPAM *** Grüße"}"#
                .as_bytes(),
        )
        .unwrap();
        let subject = check.new_subject().unwrap();
        assert!(subject.starts_with("=?UTF-8?B?"), "{subject}");
        assert!(
            check
                .header_block()
                .ends_with(&format!("Subject: {subject}\r\n"))
        );
        // Only for rewrite subject.
        let plain = Check::parse(br#"{"action":"add header","subject":"x"}"#).unwrap();
        assert_eq!(plain.new_subject(), None);
    }

    #[test]
    fn unknown_action_is_an_error() {
        assert!(Check::parse(br#"{"action":"explode"}"#).is_err());
        assert!(Check::parse(b"not json").is_err());
    }

    #[test]
    fn replaced_fields_cover_folded_fields_in_the_header_block_only() {
        let message = b"From: a@b\r\nSubject: one\r\n two\r\nX-Spam-Status: No\r\n\tscore=-100\r\n\
To: c@d\r\nsubject: again\r\nx-spam-flag : NO\r\nX-Spamd: kept\r\n\r\nSubject: body\r\nX-Spam-Status: body\r\n";
        let taken = |new_subject| -> Vec<&[u8]> {
            replaced_field_ranges(message, new_subject)
                .into_iter()
                .map(|r| &message[r])
                .collect()
        };
        assert_eq!(
            taken(true),
            vec![
                &b"Subject: one\r\n two\r\n"[..],
                &b"X-Spam-Status: No\r\n\tscore=-100\r\n"[..],
                &b"subject: again\r\n"[..],
                &b"x-spam-flag : NO\r\n"[..],
            ]
        );
        // Without a rewritten Subject the client's Subject stays; forged
        // X-Spam fields go all the same.
        assert_eq!(
            taken(false),
            vec![
                &b"X-Spam-Status: No\r\n\tscore=-100\r\n"[..],
                &b"x-spam-flag : NO\r\n"[..],
            ]
        );
    }
}
