//! HTML to plain text for `body :text` (RFC 5173 5.2 lets an implementation extract text from
//! other types; Pigeonhole does it for text/html, so a script's `body :text :contains "offer"`
//! matches HTML-only mail too). Deliberately small: tags are dropped (block-level ones become a
//! line break, table cells a space), `script` and `style` contents and comments are skipped,
//! character references are decoded, white space is collapsed. One pass over the input with no
//! backtracking beyond a bounded look-ahead, and the output is never longer than the input (every
//! character reference is at least as long as what it decodes to), so cost and memory follow the
//! body budget the caller already applies.

/// Longest character reference looked at (`&#x10FFFF;` and the names below fit).
const MAX_REFERENCE: usize = 12;

/// The text of `html`.
pub(crate) fn to_text(html: &str) -> String {
    let mut out = Text::with_capacity(html.len());
    let mut rest = html;
    while let Some(c) = rest.chars().next() {
        match c {
            '<' => rest = tag(rest, &mut out),
            '&' => {
                let (decoded, len) = reference(rest);
                out.push_str(&decoded);
                rest = &rest[len..];
            }
            c if c.is_whitespace() => {
                out.space();
                rest = &rest[c.len_utf8()..];
            }
            c => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out.finish()
}

/// Consumes the markup at the start of `s` (which starts with `<`), writes what it stands for and
/// returns what follows. A `<` that starts no markup is text.
fn tag<'a>(s: &'a str, out: &mut Text) -> &'a str {
    let after = &s[1..];
    if let Some(comment) = after.strip_prefix("!--") {
        return comment.find("-->").map_or("", |end| &comment[end + 3..]);
    }
    let closing = after.starts_with('/');
    let name_start = if closing { &after[1..] } else { after };
    let name_len = name_start
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(name_start.len());
    let bang = after.starts_with('!') || after.starts_with('?');
    if name_len == 0 && !bang {
        out.push('<');
        return after;
    }
    let name = name_start[..name_len].to_ascii_lowercase();
    let rest = skip_tag(name_start);
    if !closing && (name == "script" || name == "style") {
        return skip_element(rest, &name);
    }
    match name.as_str() {
        "br" | "p" | "div" | "li" | "tr" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "hr"
        | "blockquote" | "pre" | "table" | "ul" | "ol" | "dl" | "dt" | "dd" | "title" => {
            out.line_break();
        }
        "td" | "th" => out.space(),
        _ => {}
    }
    rest
}

/// What follows the `>` that ends the tag in `s`, quoted attribute values included.
fn skip_tag(s: &str) -> &str {
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '>') => return &s[i + 1..],
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
    }
    ""
}

/// What follows the end tag `</name ...>` in `s`; everything before it is dropped.
fn skip_element<'a>(s: &'a str, name: &str) -> &'a str {
    let mut from = 0;
    while let Some(at) = s[from..].find("</") {
        let start = from + at + 2;
        let candidate = &s[start..];
        if candidate
            .get(..name.len())
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
            && !candidate[name.len()..].starts_with(|c: char| c.is_ascii_alphanumeric())
        {
            return skip_tag(&candidate[name.len()..]);
        }
        from = start;
    }
    ""
}

/// The character reference at the start of `s` (which starts with `&`): what it decodes to and
/// how many bytes it took. An unknown or malformed one is a literal `&`.
fn reference(s: &str) -> (String, usize) {
    let literal = ("&".to_owned(), 1);
    let window = &s[1..];
    let Some(semi) = window
        .char_indices()
        .take(MAX_REFERENCE)
        .find(|&(_, c)| c == ';')
        .map(|(i, _)| i)
    else {
        return literal;
    };
    let body = &window[..semi];
    let decoded = if let Some(num) = body.strip_prefix('#') {
        let (digits, radix) = match num.strip_prefix(['x', 'X']) {
            Some(hex) => (hex, 16),
            None => (num, 10),
        };
        if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
            None
        } else {
            // HTML maps NUL, surrogates and values past Unicode (or past u32) to U+FFFD.
            let c = u32::from_str_radix(digits, radix)
                .ok()
                .filter(|&v| v != 0)
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}');
            Some(String::from(c))
        }
    } else {
        named(body).map(str::to_owned)
    };
    match decoded {
        Some(text) => (text, semi + 2),
        None => literal,
    }
}

/// The common named references (the full HTML table has over 2000; these cover what mail uses).
fn named(name: &str) -> Option<&'static str> {
    Some(match name {
        "amp" | "AMP" => "&",
        "lt" | "LT" => "<",
        "gt" | "GT" => ">",
        "quot" | "QUOT" => "\"",
        "apos" => "'",
        "nbsp" => " ",
        "shy" | "zwnj" | "zwj" => "",
        "copy" => "©",
        "reg" => "®",
        "trade" => "™",
        "euro" => "€",
        "pound" => "£",
        "yen" => "¥",
        "cent" => "¢",
        "sect" => "§",
        "deg" => "°",
        "middot" => "·",
        "bull" => "•",
        "hellip" => "…",
        "ndash" => "–",
        "mdash" => "—",
        "lsquo" => "‘",
        "rsquo" => "’",
        "ldquo" => "“",
        "rdquo" => "”",
        "laquo" => "«",
        "raquo" => "»",
        "times" => "×",
        "divide" => "÷",
        "auml" => "ä",
        "ouml" => "ö",
        "uuml" => "ü",
        "Auml" => "Ä",
        "Ouml" => "Ö",
        "Uuml" => "Ü",
        "szlig" => "ß",
        "eacute" => "é",
        "egrave" => "è",
        "aacute" => "á",
        "agrave" => "à",
        "ccedil" => "ç",
        _ => return None,
    })
}

/// The output, with white space collapsed: a run of spaces is one space, a line break swallows
/// the spaces around it, and no more than one empty line in a row.
struct Text {
    out: String,
    pending_space: bool,
    newlines: u8,
}

impl Text {
    fn with_capacity(n: usize) -> Self {
        Text {
            out: String::with_capacity(n),
            pending_space: false,
            // As if after a line break: leading space and breaks are dropped.
            newlines: 2,
        }
    }

    fn push(&mut self, c: char) {
        if self.pending_space && self.newlines == 0 {
            self.out.push(' ');
        }
        self.pending_space = false;
        self.newlines = 0;
        self.out.push(c);
    }

    fn push_str(&mut self, s: &str) {
        for c in s.chars() {
            if c.is_whitespace() {
                self.space();
            } else {
                self.push(c);
            }
        }
    }

    fn space(&mut self) {
        self.pending_space = true;
    }

    fn line_break(&mut self) {
        self.pending_space = false;
        if self.newlines < 2 {
            self.out.push('\n');
            self.newlines += 1;
        }
    }

    fn finish(mut self) -> String {
        let end = self.out.trim_end().len();
        self.out.truncate(end);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::to_text;

    #[test]
    fn tags_go_and_blocks_break_lines() {
        assert_eq!(
            to_text("<html><body><p>Hello <b>world</b>!</p><p>Second&nbsp;line</p></body></html>"),
            "Hello world!\n\nSecond line"
        );
        assert_eq!(to_text("a<br>b<br/>c"), "a\nb\nc");
        assert_eq!(
            to_text("<table><tr><td>1</td><td>2</td></tr></table>"),
            "1 2"
        );
        assert_eq!(to_text("  lots \r\n of\t\tspace  "), "lots of space");
    }

    #[test]
    fn script_style_and_comments_are_skipped() {
        let html = "<style type=\"text/css\">p { color: red }</style>\
                    <script>if (a < b) { document.write('</p>hidden') }</script>\
                    <!-- a <b>comment</b> -->visible<SCRIPT src=x>more hidden</SCRIPT >end";
        assert_eq!(to_text(html), "visibleend");
        // An unclosed script hides the rest, as a browser would.
        assert_eq!(to_text("shown<script>never"), "shown");
        assert_eq!(to_text("a<!-- unterminated"), "a");
        // `<scripts>` is not `<script>`.
        assert_eq!(to_text("<scripts>x</scripts>"), "x");
    }

    #[test]
    fn attributes_may_hold_angle_brackets() {
        assert_eq!(
            to_text("<a href=\"x?a>b\" title='c>d'>link</a> text"),
            "link text"
        );
    }

    #[test]
    fn references_decode() {
        assert_eq!(
            to_text("Fish &amp; chips &lt;3 &#8364;5 &#x20AC;6 caf&eacute;"),
            "Fish & chips <3 €5 €6 café"
        );
        // Unknown, unterminated and malformed references stay as written.
        assert_eq!(to_text("a &bogus; b & c &amp"), "a &bogus; b & c &amp");
        assert_eq!(
            to_text("&#0;&#xD800;&#99999999;"),
            "\u{FFFD}\u{FFFD}\u{FFFD}"
        );
        assert_eq!(to_text("&#;&#x;"), "&#;&#x;");
    }

    #[test]
    fn stray_angle_brackets_are_text() {
        assert_eq!(to_text("1 < 2 and 3 <= 4"), "1 < 2 and 3 <= 4");
        assert_eq!(to_text("x <"), "x <");
    }

    proptest::proptest! {
        /// Any input, markup-heavy or not: no panic (every slice is on a
        /// character boundary) and never more output than input.
        #[test]
        fn any_input_converts_within_its_length(
            html in "([<>&;#xX/!a-z0-9 \"'=-]|script|style|<!--|-->|&amp;|&#|\u{e9}|\u{1F600}){0,200}"
        ) {
            let text = to_text(&html);
            proptest::prop_assert!(text.len() <= html.len());
        }
    }

    #[test]
    fn output_is_never_longer_than_input() {
        for html in [
            "&#x10FFFF;&#1114111;&hellip;&nbsp;",
            "<p><p><p>a",
            "a     b",
            "\u{00e9}&eacute;",
        ] {
            assert!(to_text(html).len() <= html.len(), "{html}");
        }
    }
}
