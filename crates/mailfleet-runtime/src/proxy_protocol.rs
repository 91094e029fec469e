//! The PROXY protocol (HAProxy, versions 1 and 2): a load balancer that
//! forwards TCP prepends a header naming the real client, so the client IP
//! survives the balancer (per-IP limits, Received headers, relay decisions).
//!
//! [`parse`] is a pure function over the bytes read so far. It never asks for
//! more bytes than the header can still need, so a caller that reads exactly
//! [`Parse::Incomplete`]'s count never consumes protocol bytes that follow the
//! header (the client may send nothing more until the server greets it).
//! [`read_header`] drives it over an async stream.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

/// The 12-byte signature that opens a version 2 header.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// `PROXY ` opens a version 1 header.
const V1_PREFIX: &[u8] = b"PROXY ";
/// The shortest version 1 header is `PROXY UNKNOWN\r\n`.
const V1_MIN: usize = 15;
/// The longest version 1 header, CRLF included (spec section 2.1).
const V1_MAX: usize = 107;
/// Fixed part of a version 2 header: signature, version/command, family, length.
const V2_FIXED: usize = 16;
/// Largest version 2 payload accepted (addresses plus TLVs). The format allows
/// 64 KiB; balancers send a few hundred bytes at most, so bound the memory.
pub const V2_MAX_PAYLOAD: usize = 4096;

/// What the header says about the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proxied {
    /// A relayed connection from `source` (the client) to `destination`.
    Tcp {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// The balancer's own connection (v2 LOCAL, e.g. a health check) or an
    /// address family that is not TCP over IP (v1 UNKNOWN, v2 UNSPEC/UNIX/UDP):
    /// the spec says to use the connection's real endpoints.
    Local,
}

/// The result of parsing the bytes received so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parse {
    /// A complete header of `len` bytes; protocol data starts after it.
    Done { header: Proxied, len: usize },
    /// At least this many more bytes are needed; reading exactly that many
    /// never reads past the header.
    Incomplete(usize),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyError {
    #[error("the connection does not start with a PROXY protocol header")]
    NotProxy,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
    #[error("PROXY protocol header larger than {V2_MAX_PAYLOAD} bytes")]
    TooLarge,
}

/// Parses a PROXY protocol header (v1 or v2) at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parse, ProxyError> {
    let sig = buf.len().min(V2_SIGNATURE.len());
    if buf[..sig] == V2_SIGNATURE[..sig] && !buf.is_empty() {
        return parse_v2(buf);
    }
    let pre = buf.len().min(V1_PREFIX.len());
    if buf[..pre] == V1_PREFIX[..pre] {
        if buf.is_empty() {
            // Either version may follow; both are at least V1_MIN bytes long.
            return Ok(Parse::Incomplete(V1_MIN));
        }
        return parse_v1(buf);
    }
    Err(ProxyError::NotProxy)
}

fn parse_v1(buf: &[u8]) -> Result<Parse, ProxyError> {
    let Some(lf) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() >= V1_MAX {
            return Err(ProxyError::Malformed("v1 line longer than 107 bytes"));
        }
        if buf.len() < V1_MIN {
            return Ok(Parse::Incomplete(V1_MIN - buf.len()));
        }
        // The line ends with CRLF: one more byte if the CR is already here.
        return Ok(Parse::Incomplete(if buf.ends_with(b"\r") { 1 } else { 2 }));
    };
    if lf == 0 || buf[lf - 1] != b'\r' {
        return Err(ProxyError::Malformed("v1 line does not end with CRLF"));
    }
    let line = std::str::from_utf8(&buf[V1_PREFIX.len()..lf - 1])
        .map_err(|_| ProxyError::Malformed("v1 line is not ASCII"))?;
    let len = lf + 1;
    let mut fields = line.split(' ');
    let header = match fields.next() {
        // Anything may follow UNKNOWN; the receiver ignores it.
        Some("UNKNOWN") => Proxied::Local,
        Some(proto @ ("TCP4" | "TCP6")) => {
            let mut next = || {
                fields
                    .next()
                    .ok_or(ProxyError::Malformed("v1 line has too few fields"))
            };
            let (src, dst, sport, dport) = (next()?, next()?, next()?, next()?);
            if fields.next().is_some() {
                return Err(ProxyError::Malformed("v1 line has too many fields"));
            }
            let (src, dst): (IpAddr, IpAddr) = if proto == "TCP4" {
                (
                    v1_addr::<Ipv4Addr>(src)?.into(),
                    v1_addr::<Ipv4Addr>(dst)?.into(),
                )
            } else {
                (
                    v1_addr::<Ipv6Addr>(src)?.into(),
                    v1_addr::<Ipv6Addr>(dst)?.into(),
                )
            };
            Proxied::Tcp {
                source: SocketAddr::new(src, v1_port(sport)?),
                destination: SocketAddr::new(dst, v1_port(dport)?),
            }
        }
        _ => {
            return Err(ProxyError::Malformed(
                "v1 protocol is not TCP4, TCP6 or UNKNOWN",
            ));
        }
    };
    Ok(Parse::Done { header, len })
}

fn v1_addr<T: std::str::FromStr>(s: &str) -> Result<T, ProxyError> {
    s.parse()
        .map_err(|_| ProxyError::Malformed("v1 address does not match its protocol"))
}

fn v1_port(s: &str) -> Result<u16, ProxyError> {
    // Decimal without sign or leading zeroes (spec section 2.1).
    let plain =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    s.parse()
        .ok()
        .filter(|_| plain)
        .ok_or(ProxyError::Malformed(
            "v1 port is not a number from 0 to 65535",
        ))
}

fn parse_v2(buf: &[u8]) -> Result<Parse, ProxyError> {
    if buf.len() < V2_FIXED {
        return Ok(Parse::Incomplete(V2_FIXED - buf.len()));
    }
    let (ver_cmd, fam) = (buf[12], buf[13]);
    let payload = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::Malformed("v2 version is not 2"));
    }
    let command = ver_cmd & 0x0f;
    if command > 1 {
        return Err(ProxyError::Malformed(
            "v2 command is neither LOCAL nor PROXY",
        ));
    }
    if payload > V2_MAX_PAYLOAD {
        return Err(ProxyError::TooLarge);
    }
    let len = V2_FIXED + payload;
    if buf.len() < len {
        return Ok(Parse::Incomplete(len - buf.len()));
    }
    let body = &buf[V2_FIXED..len];
    // LOCAL: the balancer speaks for itself; the address block is ignored.
    if command == 0 {
        return Ok(Parse::Done {
            header: Proxied::Local,
            len,
        });
    }
    let stream = fam & 0x0f == 1;
    let header = match fam >> 4 {
        1 if stream => {
            let a = body
                .get(..12)
                .ok_or(ProxyError::Malformed("v2 IPv4 address block is short"))?;
            let ip = |i: usize| IpAddr::from([a[i], a[i + 1], a[i + 2], a[i + 3]]);
            Proxied::Tcp {
                source: SocketAddr::new(ip(0), u16::from_be_bytes([a[8], a[9]])),
                destination: SocketAddr::new(ip(4), u16::from_be_bytes([a[10], a[11]])),
            }
        }
        2 if stream => {
            let a = body
                .get(..36)
                .ok_or(ProxyError::Malformed("v2 IPv6 address block is short"))?;
            let ip = |i: usize| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&a[i..i + 16]);
                IpAddr::from(o)
            };
            Proxied::Tcp {
                source: SocketAddr::new(ip(0), u16::from_be_bytes([a[32], a[33]])),
                destination: SocketAddr::new(ip(16), u16::from_be_bytes([a[34], a[35]])),
            }
        }
        0..=3 => Proxied::Local,
        _ => return Err(ProxyError::Malformed("v2 address family is unknown")),
    };
    Ok(Parse::Done { header, len })
}

/// Reads one PROXY protocol header from `stream`, consuming exactly its bytes.
pub async fn read_header<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<Proxied> {
    let mut buf = Vec::with_capacity(64);
    loop {
        match parse(&buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))? {
            Parse::Done { header, .. } => return Ok(header),
            Parse::Incomplete(need) => {
                let start = buf.len();
                buf.resize(start + need, 0);
                stream.read_exact(&mut buf[start..]).await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn done(buf: &[u8]) -> (Proxied, usize) {
        match parse(buf).unwrap() {
            Parse::Done { header, len } => (header, len),
            other => panic!("expected a complete header, got {other:?}"),
        }
    }

    fn v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(ver_cmd);
        h.push(fam);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    #[test]
    fn v1_tcp4_and_tcp6() {
        let line = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 25\r\nEHLO x\r\n";
        let (h, len) = done(line);
        assert_eq!(
            h,
            Proxied::Tcp {
                source: sa("192.0.2.7:56324"),
                destination: sa("198.51.100.1:25")
            }
        );
        assert_eq!(&line[len..], b"EHLO x\r\n");

        let (h, _) = done(b"PROXY TCP6 2001:db8::1 2001:db8::2 65535 993\r\n");
        assert_eq!(
            h,
            Proxied::Tcp {
                source: sa("[2001:db8::1]:65535"),
                destination: sa("[2001:db8::2]:993")
            }
        );
        assert_eq!(done(b"PROXY UNKNOWN\r\n"), (Proxied::Local, 15));
        assert_eq!(done(b"PROXY UNKNOWN whatever 1 2\r\n").0, Proxied::Local);
    }

    #[test]
    fn v1_rejects_bad_lines() {
        for bad in [
            &b"PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n"[..],
            b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 25 9\r\n",
            b"PROXY TCP4 2001:db8::1 198.51.100.1 1 25\r\n",
            b"PROXY TCP6 192.0.2.7 2001:db8::2 1 25\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 65536 25\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 025 25\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 +25 25\r\n",
            b"PROXY UDP4 192.0.2.7 198.51.100.1 1 25\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 1 25\n",
        ] {
            assert!(
                matches!(parse(bad), Err(ProxyError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(parse(&[b'A'; V1_MAX]).is_err());
        let mut long = b"PROXY ".to_vec();
        long.resize(V1_MAX, b'1');
        assert!(matches!(parse(&long), Err(ProxyError::Malformed(_))));
    }

    #[test]
    fn not_proxy_is_told_at_the_first_wrong_byte() {
        assert_eq!(parse(b"EHLO"), Err(ProxyError::NotProxy));
        assert_eq!(parse(b"PROXX"), Err(ProxyError::NotProxy));
        assert_eq!(parse(b"\r\n\r\nX"), Err(ProxyError::NotProxy));
    }

    #[test]
    fn v2_ipv4_ipv6_local_and_tlvs() {
        let mut body = vec![192, 0, 2, 7, 198, 51, 100, 1];
        body.extend_from_slice(&56324u16.to_be_bytes());
        body.extend_from_slice(&25u16.to_be_bytes());
        // A TLV (PP2_TYPE_AUTHORITY "mx") after the addresses is skipped.
        body.extend_from_slice(&[0x02, 0x00, 0x02, b'm', b'x']);
        let mut h = v2(0x21, 0x11, &body);
        let header_len = h.len();
        h.extend_from_slice(b"EHLO x\r\n");
        assert_eq!(
            done(&h),
            (
                Proxied::Tcp {
                    source: sa("192.0.2.7:56324"),
                    destination: sa("198.51.100.1:25")
                },
                header_len
            )
        );

        let mut body = Vec::new();
        body.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        body.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        body.extend_from_slice(&[0x01, 0x00, 0x03, 0xe1]);
        assert_eq!(
            done(&v2(0x21, 0x21, &body)).0,
            Proxied::Tcp {
                source: sa("[2001:db8::1]:256"),
                destination: sa("[2001:db8::2]:993")
            }
        );

        // LOCAL (a balancer health check) and non-TCP families use the real peer.
        assert_eq!(done(&v2(0x20, 0x00, &[])), (Proxied::Local, 16));
        assert_eq!(done(&v2(0x20, 0x11, &[0; 12])).0, Proxied::Local);
        assert_eq!(done(&v2(0x21, 0x00, &[])).0, Proxied::Local);
        assert_eq!(done(&v2(0x21, 0x12, &[0; 12])).0, Proxied::Local);
        assert_eq!(done(&v2(0x21, 0x31, &[0; 216])).0, Proxied::Local);
    }

    #[test]
    fn v2_rejects_bad_headers() {
        assert!(matches!(
            parse(&v2(0x11, 0x11, &[0; 12])),
            Err(ProxyError::Malformed(_))
        ));
        assert!(matches!(
            parse(&v2(0x22, 0x11, &[0; 12])),
            Err(ProxyError::Malformed(_))
        ));
        assert!(matches!(
            parse(&v2(0x21, 0x11, &[0; 11])),
            Err(ProxyError::Malformed(_))
        ));
        assert!(matches!(
            parse(&v2(0x21, 0x21, &[0; 35])),
            Err(ProxyError::Malformed(_))
        ));
        assert!(matches!(
            parse(&v2(0x21, 0x41, &[0; 12])),
            Err(ProxyError::Malformed(_))
        ));
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(parse(&huge), Err(ProxyError::TooLarge));
    }

    /// Feeding a header one requested chunk at a time ends exactly at its
    /// last byte: the parser never asks for bytes beyond the header.
    #[test]
    fn incomplete_never_overreads() {
        let mut body = vec![10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2];
        body.extend_from_slice(&[0x04, 0x00, 0x01, 0x00]);
        let headers: Vec<Vec<u8>> = vec![
            b"PROXY UNKNOWN\r\n".to_vec(),
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
            b"PROXY TCP6 ::1 ::2 1 2\r\n".to_vec(),
            v2(0x21, 0x11, &body),
            v2(0x20, 0x00, &[]),
        ];
        for h in headers {
            let mut have = 0;
            loop {
                match parse(&h[..have]).unwrap() {
                    Parse::Done { len, .. } => {
                        assert_eq!(len, h.len());
                        assert_eq!(have, h.len());
                        break;
                    }
                    Parse::Incomplete(n) => {
                        assert!(
                            n >= 1 && have + n <= h.len(),
                            "overread on {h:?} at {have}+{n}"
                        );
                        have += n;
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn read_header_leaves_protocol_bytes() {
        let mut data: &[u8] = b"PROXY TCP4 192.0.2.7 198.51.100.1 4000 25\r\nQUIT\r\n";
        let h = read_header(&mut data).await.unwrap();
        assert_eq!(
            h,
            Proxied::Tcp {
                source: sa("192.0.2.7:4000"),
                destination: sa("198.51.100.1:25")
            }
        );
        assert_eq!(data, b"QUIT\r\n");
        let mut plain: &[u8] = b"EHLO client.example\r\n";
        let err = read_header(&mut plain).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }
}
