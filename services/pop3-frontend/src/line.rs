//! Reading one CRLF-terminated line with a hard length limit.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

pub(crate) enum Line {
    /// A whole line, terminator included, in the caller's buffer.
    Complete,
    /// The line exceeded the limit; it was drained up to its end.
    TooLong,
    /// The peer closed the connection (a partial last line is dropped).
    Eof,
}

/// Reads the next line into `buf` (cleared first), never holding more than
/// `max` bytes; an over-long line is consumed to its LF so the stream stays in
/// step.
pub(crate) async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    buf.clear();
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(Line::Eof);
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let n = chunk.len();
        if !too_long {
            if buf.len() + n > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        reader.consume(n);
        if done {
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Complete
            });
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn long_lines_are_drained_and_the_next_line_reads() {
        let data = b"short\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\nnext\r\npartial";
        let mut reader = tokio::io::BufReader::with_capacity(4, &data[..]);
        let mut buf = Vec::new();
        assert!(matches!(
            read_line(&mut reader, &mut buf, 16).await.unwrap(),
            Line::Complete
        ));
        assert_eq!(buf, b"short\r\n");
        assert!(matches!(
            read_line(&mut reader, &mut buf, 16).await.unwrap(),
            Line::TooLong
        ));
        assert!(matches!(
            read_line(&mut reader, &mut buf, 16).await.unwrap(),
            Line::Complete
        ));
        assert_eq!(buf, b"next\r\n");
        assert!(matches!(
            read_line(&mut reader, &mut buf, 16).await.unwrap(),
            Line::Eof
        ));
    }
}
