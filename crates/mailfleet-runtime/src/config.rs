//! Settings of every service, from `MAILFLEET_…` environment variables over an
//! optional TOML file (`MAILFLEET_CONFIG` names it).
//!
//! One flat set of settings serves all services, so docker-compose, Helm and
//! the TOML file use the same names. A service reads the settings it needs and
//! ignores the others. Unknown keys in the TOML file are errors (a typo must
//! not silently fall back to a default); unknown `MAILFLEET_` variables are
//! ignored, since deployments share one environment across containers.
//! Every value is parsed and every error is reported at once.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A value that can be read from an environment variable or a TOML scalar.
pub trait Setting: Sized {
    fn parse_setting(raw: &str) -> Result<Self, String>;
}

macro_rules! from_str_setting {
    ($($t:ty),*) => {$(
        impl Setting for $t {
            fn parse_setting(raw: &str) -> Result<Self, String> {
                raw.trim().parse::<$t>().map_err(|e| e.to_string())
            }
        }
    )*};
}
from_str_setting!(u16, u32, u64, usize, f64, SocketAddr, PathBuf);

impl Setting for String {
    fn parse_setting(raw: &str) -> Result<Self, String> {
        Ok(raw.to_owned())
    }
}

impl Setting for bool {
    fn parse_setting(raw: &str) -> Result<Self, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            other => Err(format!("expected true or false, got {other:?}")),
        }
    }
}

impl<T: Setting> Setting for Option<T> {
    fn parse_setting(raw: &str) -> Result<Self, String> {
        if raw.trim().is_empty() {
            Ok(None)
        } else {
            T::parse_setting(raw).map(Some)
        }
    }
}

impl Setting for Duration {
    /// `250ms`, `30s`, `5m`, `2h`, `5d`; a bare number is seconds.
    fn parse_setting(raw: &str) -> Result<Self, String> {
        parse_duration(raw)
    }
}

/// Parses `250ms`, `30s`, `5m`, `2h`, `5d`; a bare number is seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(raw.len());
    let (num, unit) = raw.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("expected a duration like 30s, got {raw:?}"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return Err(format!("unknown duration unit in {raw:?}")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("duration out of range: {raw:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A secret read from configuration: never printed by `Debug` or `Display`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Setting for SecretString {
    fn parse_setting(raw: &str) -> Result<Self, String> {
        Ok(Self(raw.to_owned()))
    }
}

/// One CIDR block (`10.0.0.0/8`, `2001:db8::/32`; a bare address is a /32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` lies in this block. An IPv4-mapped IPv6 address (a dual-stack
    /// socket's view of an IPv4 peer) counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let (addr, prefix) = raw.split_once('/').unwrap_or((raw, ""));
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{raw:?} is not an address or CIDR block"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{raw:?} has a prefix length outside 0..={max}"))?
        };
        Ok(Self { network, prefix })
    }
}

/// A comma-separated list of CIDR blocks; empty matches nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CidrList(pub Vec<Cidr>);

impl CidrList {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }
}

impl Setting for CidrList {
    fn parse_setting(raw: &str) -> Result<Self, String> {
        raw.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

/// Configuration errors, all of them at once.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigError(pub Vec<String>);

macro_rules! settings {
    ($( $(#[doc = $doc:literal])+ $field:ident : $ty:ty = $default:literal; )*) => {
        /// Every setting of mailfleet. See [`Config::KEYS`] for names and defaults.
        #[derive(Clone, Debug)]
        pub struct Config {
            $( $(#[doc = $doc])+ pub $field: $ty, )*
        }

        impl Config {
            /// (setting name, default, description) of every setting; the
            /// environment variable is `MAILFLEET_` + the name in upper case.
            pub const KEYS: &'static [(&'static str, &'static str, &'static str)] = &[
                $( (stringify!($field), $default, concat!($($doc),+)), )*
            ];

            fn from_values(values: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
                let mut errors = Vec::new();
                $(
                    let raw = values.get(stringify!($field)).map(String::as_str).unwrap_or($default);
                    let $field: Option<$ty> = match <$ty as Setting>::parse_setting(raw) {
                        Ok(v) => Some(v),
                        Err(e) => {
                            errors.push(format!(
                                "MAILFLEET_{}: {e}",
                                stringify!($field).to_ascii_uppercase()
                            ));
                            None
                        }
                    };
                )*
                match ($($field,)*) {
                    ($(Some($field),)*) => Ok(Config { $($field,)* }),
                    _ => Err(ConfigError(errors)),
                }
            }
        }
    };
}

settings! {
    /// Postgres URL (mailstore).
    database_url: String = "postgres://postgres@127.0.0.1:5432/mailfleet";
    /// Largest Postgres connection pool (mailstore).
    database_max_connections: u32 = "16";
    /// RabbitMQ URL (smtp-gateway, delivery-worker).
    amqp_url: String = "amqp://guest:guest@127.0.0.1:5672/%2f";
    /// Prefix of every exchange and queue name.
    queue_prefix: String = "mailfleet";
    /// Where message bodies live: file:///path, or s3://bucket.
    blob_url: String = "file://./data/blobs";
    /// S3 endpoint URL for s3:// blob URLs (MinIO, Garage, ...); empty means AWS.
    s3_endpoint: String = "";
    /// S3 region.
    s3_region: String = "us-east-1";
    /// S3 access key id.
    s3_access_key: SecretString = "";
    /// S3 secret access key.
    s3_secret_key: SecretString = "";
    /// Allow plain http:// S3 endpoints (local test servers).
    s3_allow_http: bool = "false";
    /// Bodies up to this size are hashed in memory and stored with one PUT; larger ones use multipart upload.
    blob_inline_limit: usize = "1048576";
    /// Bytes of message metadata (for ENVELOPE, BODYSTRUCTURE and SEARCH) mailstore keeps in memory; 0 turns the cache off.
    metadata_cache_size: u64 = "67108864";
    /// Bytes of mailbox listings (UIDs, flags, dates, sizes and blob ids of live messages, for SEARCH) mailstore keeps in memory; 0 turns the cache off.
    mailbox_cache_size: u64 = "33554432";
    /// mailstore gRPC endpoint the other services and the CLI call.
    mailstore_url: String = "http://127.0.0.1:50051";
    /// Credential every service presents to mailstore.
    service_token: SecretString = "";
    /// Credential for the Admin API (the mailfleet CLI).
    admin_token: SecretString = "";
    /// mailstore gRPC listen address.
    grpc_listen: SocketAddr = "0.0.0.0:50051";
    /// Health and metrics HTTP listen address.
    http_listen: SocketAddr = "0.0.0.0:8080";
    /// Host name in SMTP greetings and Received headers.
    hostname: String = "localhost";
    /// SMTP MX listener (no AUTH; local recipients only).
    smtp_listen: SocketAddr = "0.0.0.0:25";
    /// SMTP submission listener (STARTTLS, AUTH required).
    submission_listen: SocketAddr = "0.0.0.0:587";
    /// SMTP submission listener with implicit TLS (RFC 8314).
    submissions_listen: SocketAddr = "0.0.0.0:465";
    /// IMAP listener.
    imap_listen: SocketAddr = "0.0.0.0:143";
    /// IMAP listener with implicit TLS.
    imaps_listen: SocketAddr = "0.0.0.0:993";
    /// POP3 listener.
    pop3_listen: SocketAddr = "0.0.0.0:110";
    /// POP3 listener with implicit TLS.
    pop3s_listen: SocketAddr = "0.0.0.0:995";
    /// ManageSieve listener (RFC 5804; STARTTLS), served by imap-frontend.
    sieve_listen: SocketAddr = "0.0.0.0:4190";
    /// Most Sieve scripts one account may store.
    sieve_max_scripts: u32 = "20";
    /// Most bytes of Sieve scripts one account may store, all scripts together.
    sieve_max_bytes: u64 = "1048576";
    /// Largest single Sieve script in bytes (at most 1 MiB).
    sieve_max_script_size: usize = "65536";
    /// Bytes of a delivered message a Sieve script sees (header, address, body and date tests read at most this much; `size` always sees the whole size); read from object storage per message, so memory per delivery batch is bounded by it.
    sieve_max_message_size: u64 = "1048576";
    /// TLS certificate chain (PEM) for every protocol listener; empty disables TLS.
    tls_cert: String = "";
    /// TLS private key (PEM).
    tls_key: String = "";
    /// When the files MAILFLEET_TLS_CERT and MAILFLEET_TLS_KEY name do not exist, write a self-signed pair there at start (a laptop stack such as docker compose; never in production).
    tls_self_signed: bool = "false";
    /// Certificate chain (PEM) of this service on the internal gRPC plane: mailstore serves TLS with it, the other services present it as their client certificate (mutual TLS). Empty: plaintext gRPC.
    grpc_tls_cert: String = "";
    /// Private key (PEM) of MAILFLEET_GRPC_TLS_CERT.
    grpc_tls_key: String = "";
    /// CA certificate(s) (PEM) of the internal gRPC plane: clients check mailstore's certificate with it (MAILFLEET_MAILSTORE_URL must then be https://), and mailstore requires client certificates it signed.
    grpc_tls_ca: String = "";
    /// How often the certificate files are checked for changes (secret rotation).
    tls_reload_interval: Duration = "30s";
    /// Allow password logins over unencrypted connections from any address (off: only TLS, or loopback in dev).
    allow_plaintext_auth: bool = "false";
    /// Longest IMAP command line, CRLF included (Dovecot's default is 64k too; an RFC 2971 ID of 30 pairs takes about 32 KiB). Whole commands, literals included, are bounded as well: 64 KiB before login, 15 MiB after (APPEND's message excepted).
    imap_max_line_length: usize = "65536";
    /// How long an IMAP client may take to send a command, stay in IDLE or leave a response unread before `* BYE` (RFC 9051 5.4: at least 30 minutes; before login at most 60 s).
    imap_timeout: Duration = "30m";
    /// Longest POP3 command line, CRLF included (RFC 2449: 255 octets).
    pop3_max_line_length: usize = "1024";
    /// How long a POP3 client may stay silent (RFC 1939 3: at least 10 minutes).
    pop3_timeout: Duration = "10m";
    /// Lifetime of the POP3 maildrop lock lease, renewed while the session lives; bounds how long a crashed frontend keeps a maildrop locked.
    pop3_lease_ttl: Duration = "60s";
    /// Largest message accepted over SMTP, and by IMAP APPEND (APPENDLIMIT), in octets.
    smtp_max_message_size: u64 = "52428800";
    /// Most recipients in one SMTP transaction.
    smtp_max_recipients: usize = "100";
    /// Longest SMTP command line, CRLF included (RFC 5321 4.5.3.1.4: at least 512).
    smtp_max_line_length: usize = "2048";
    /// Most commands in one SMTP session.
    smtp_max_commands: usize = "10000";
    /// How long an SMTP client may take to send its whole next command line, or to read a reply (RFC 5321 4.5.3.2.7: at least 5 minutes).
    smtp_timeout: Duration = "5m";
    /// How long an SMTP client may take to send each 16 KiB data block inside DATA or BDAT before the session is closed (RFC 5321 4.5.3.2.5: 3 minutes per data block).
    smtp_data_timeout: Duration = "3m";
    /// Command timeout on the submission listeners until the client has authenticated (an unauthenticated session holds a slot for nothing).
    smtp_preauth_timeout: Duration = "60s";
    /// Longest wait for the broker's publisher confirm before answering 451.
    smtp_publish_timeout: Duration = "15s";
    /// How long smtp-gateway serves a recipient answer without asking mailstore again, while mailstore's directory events flow (0 turns the cache off).
    smtp_recipient_cache_ttl: Duration = "5s";
    /// Failed logins (IMAP, POP3, SMTP AUTH together) for one account from one client address (IPv6: its /64) before that pair is locked out.
    auth_max_failures: u32 = "5";
    /// Failed logins from one client address (IPv6: its /64), whatever the account, before that address is locked out.
    auth_max_failures_per_address: u32 = "30";
    /// How long a locked pair or address is refused; failures older than this are forgotten.
    auth_lockout: Duration = "15m";
    /// Delay before a failed login is answered, doubled with each earlier failure of the account or the pair (at most 15 s).
    auth_failure_delay: Duration = "1s";
    /// Verify SPF, DKIM and DMARC on the MX listener and record the result in Authentication-Results.
    smtp_verify_inbound: bool = "true";
    /// Refuse mail (550 5.7.1) that fails DMARC when the sender domain publishes p=reject.
    smtp_dmarc_reject: bool = "false";
    /// Largest message held in memory for DKIM verification on the MX listener; larger ones are stored unverified (DMARC then relies on SPF).
    smtp_verify_max_size: u64 = "2097152";
    /// Message bytes all SMTP sessions together may hold in memory (bodies kept for DKIM or rspamd, write buffers: up to the larger of smtp_verify_max_size and spam_max_size plus 8 MiB for one message); a session that would go over waits, reading nothing more, up to smtp_data_timeout, then gets 451.
    smtp_body_memory: u64 = "268435456";
    /// Longest text line in an SMTP DATA body, CRLF not counted (RFC 5321: 998); 0 means no limit.
    smtp_max_text_line: usize = "65536";
    /// rspamd's scanner (normal worker, e.g. http://127.0.0.1:11333): smtp-gateway asks it about every message on the MX listener before answering the final dot; empty turns spam checks off.
    spam_url: String = "";
    /// rspamd's controller (e.g. http://127.0.0.1:11334): delivery-worker teaches it spam and ham when users move mail into or out of Junk; empty turns learning off.
    spam_learn_url: String = "";
    /// Password for rspamd's controller (sent as its `Password` header with every lesson); empty sends none, for a controller that trusts the worker's address (secure_ip).
    spam_learn_password: SecretString = "";
    /// Longest wait for rspamd's answer (connect, check, learn).
    spam_timeout: Duration = "10s";
    /// When rspamd does not answer in time or cannot be reached: accept the message marked `X-Spam-Status: unchecked` (true) or answer 451 4.7.1 (false).
    spam_fail_open: bool = "true";
    /// Deliver mail rspamd marked as spam (add header, rewrite subject) into the account's Junk mailbox (special-use \Junk, created when missing) instead of INBOX.
    spam_junk: bool = "true";
    /// Largest message checked by rspamd; it is held in memory (charged to smtp_body_memory) until rspamd answers. Larger ones are accepted marked `X-Spam-Status: unchecked` (spam is small; rspamd's own max_message is 50 MiB).
    spam_max_size: u64 = "10485760";
    /// Expect a PROXY protocol (v1 or v2) header from a load balancer on every SMTP, IMAP and POP3 connection.
    proxy_protocol: bool = "false";
    /// How long a connection may take to send its PROXY protocol header.
    proxy_protocol_timeout: Duration = "5s";
    /// Peers allowed to send a PROXY protocol header (comma-separated CIDR blocks, e.g. the load balancers' subnet); empty trusts nobody, so with MAILFLEET_PROXY_PROTOCOL on every connection is closed until this lists the balancers.
    proxy_trusted: CidrList = "";
    /// Most concurrent connections per listener.
    max_connections: usize = "10000";
    /// Most concurrent connections from one IP address per listener.
    max_connections_per_ip: usize = "100";
    /// AMQP prefetch of delivery-worker: jobs held unacked at once.
    delivery_prefetch: u16 = "256";
    /// Most deliveries stored in one mailstore transaction.
    delivery_batch_size: usize = "128";
    /// How long delivery-worker waits to fill a batch.
    delivery_batch_wait: Duration = "5ms";
    /// Static relay routes of delivery-worker: `domain=host:port,...`, `*=host:port` for a smart host.
    relay_routes: String = "";
    /// Let delivery-worker relay to mail hosts found in DNS (MX, or the domain's own A/AAAA) at loopback, private, link-local or shared addresses; off, such a host is skipped and a domain with only such hosts fails with `5.4.4 no public mail host`. Static routes are always used as given.
    relay_allow_private: bool = "false";
    /// DNS resolver (`ip` or `ip:port`) for MX lookups; empty uses the system configuration.
    dns_resolver: String = "";
    /// Secret (at least 32 random bytes) that seals DKIM private keys at rest in Postgres (mailstore); empty stores them unsealed.
    dkim_key_secret: SecretString = "";
    /// Delays between delivery attempts of a deferred recipient; the last one repeats.
    retry_schedule: String = "1m,5m,15m,30m,1h,2h,4h";
    /// How long a message is retried before it bounces (RFC 5321 4.5.4.1 suggests 4-5 days).
    delivery_lifetime: Duration = "5d";
    /// Most concurrent outbound SMTP connections per destination host.
    relay_max_connections_per_host: usize = "4";
    /// Messages sent over one outbound SMTP connection before it is closed.
    relay_max_messages_per_connection: usize = "100";
    /// Timeout of each outbound SMTP step (connect, command, data).
    relay_timeout: Duration = "2m";
    /// How long in-flight work may take to finish after SIGTERM.
    shutdown_grace: Duration = "30s";
    /// argon2id memory cost in KiB for new password hashes.
    argon2_memory_kib: u32 = "19456";
    /// argon2id iterations for new password hashes.
    argon2_iterations: u32 = "2";
    /// Log filter (tracing EnvFilter syntax).
    log: String = "info";
    /// Log format: text or json.
    log_format: String = "text";
}

impl Config {
    /// Reads the process environment and the TOML file it names.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(std::env::vars())
    }

    /// Reads settings from the given variables (tests pass their own) and the
    /// TOML file named by `MAILFLEET_CONFIG` among them.
    pub fn load(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let env: BTreeMap<String, String> = vars
            .into_iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("MAILFLEET_")
                    .map(|k| (k.to_ascii_lowercase(), v))
            })
            .collect();
        let mut values = BTreeMap::new();
        let mut errors = Vec::new();
        if let Some(path) = env.get("config").filter(|p| !p.is_empty()) {
            match read_toml(Path::new(path)) {
                Ok(file) => values.extend(file),
                Err(e) => errors.extend(e.0),
            }
        }
        let known = |k: &str| Self::KEYS.iter().any(|(name, _, _)| *name == k);
        values.extend(env.into_iter().filter(|(k, _)| known(k)));
        match Self::from_values(&values) {
            Ok(c) if errors.is_empty() => Ok(c),
            Ok(_) => Err(ConfigError(errors)),
            Err(e) => {
                errors.extend(e.0);
                Err(ConfigError(errors))
            }
        }
    }

    /// The settings table for `--help`.
    pub fn help() -> String {
        let mut out = String::from(
            "Environment (or the same keys in the TOML file named by MAILFLEET_CONFIG):\n",
        );
        for (name, default, doc) in Self::KEYS {
            out.push_str(&format!(
                "  MAILFLEET_{:<28} {}{}\n",
                name.to_ascii_uppercase(),
                doc.trim(),
                if default.is_empty() {
                    String::new()
                } else {
                    format!(" [default: {default}]")
                }
            ));
        }
        out
    }
}

impl Default for Config {
    fn default() -> Self {
        // The defaults are literals checked by the `defaults_parse` test.
        #[allow(clippy::expect_used)]
        Self::from_values(&BTreeMap::new()).expect("built-in defaults parse")
    }
}

fn read_toml(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(vec![format!("cannot read {}: {e}", path.display())]))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| ConfigError(vec![format!("{}: {e}", path.display())]))?;
    let mut values = BTreeMap::new();
    let mut errors = Vec::new();
    for (key, value) in table {
        if !Config::KEYS.iter().any(|(name, _, _)| *name == key) {
            errors.push(format!("{}: unknown key {key:?}", path.display()));
            continue;
        }
        let raw = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                errors.push(format!(
                    "{}: {key} must be a string, number or boolean, not {}",
                    path.display(),
                    other.type_str()
                ));
                continue;
            }
        };
        values.insert(key, raw);
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(ConfigError(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_parse() {
        let c = Config::load(Vec::new()).unwrap();
        assert_eq!(c.smtp_max_recipients, 100);
        assert_eq!(c.smtp_timeout, Duration::from_secs(300));
    }

    #[test]
    fn environment_overrides_and_foreign_variables_are_ignored() {
        let c = Config::load(vars(&[
            ("MAILFLEET_SMTP_MAX_RECIPIENTS", "7"),
            ("MAILFLEET_SOMETHING_ELSE", "x"),
            ("PATH", "/bin"),
        ]))
        .unwrap();
        assert_eq!(c.smtp_max_recipients, 7);
    }

    #[test]
    fn every_bad_value_is_reported() {
        let err = Config::load(vars(&[
            ("MAILFLEET_SMTP_MAX_RECIPIENTS", "many"),
            ("MAILFLEET_SMTP_TIMEOUT", "soon"),
        ]))
        .unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
        assert!(err.to_string().contains("MAILFLEET_SMTP_TIMEOUT"));
    }

    #[test]
    fn toml_file_with_unknown_key_is_rejected() {
        let dir = std::env::temp_dir().join(format!("mf-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "hostname = \"mx.example\"\nsmtp_max_recipients = 5\nhostnme = 1\n",
        )
        .unwrap();
        let err = Config::load(vars(&[("MAILFLEET_CONFIG", path.to_str().unwrap())])).unwrap_err();
        assert!(err.to_string().contains("hostnme"), "{err}");

        std::fs::write(
            &path,
            "hostname = \"mx.example\"\nsmtp_max_recipients = 5\n",
        )
        .unwrap();
        let c = Config::load(vars(&[
            ("MAILFLEET_CONFIG", path.to_str().unwrap()),
            ("MAILFLEET_SMTP_MAX_RECIPIENTS", "9"),
        ]))
        .unwrap();
        assert_eq!(c.hostname, "mx.example");
        assert_eq!(c.smtp_max_recipients, 9, "environment wins over the file");
    }

    #[test]
    fn readme_lists_every_setting() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"));
        let missing: Vec<String> = Config::KEYS
            .iter()
            .map(|(name, _, _)| format!("`MAILFLEET_{}`", name.to_ascii_uppercase()))
            .filter(|var| !readme.contains(var.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "README.md's configuration table lacks {missing:?}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("5x").is_err());
    }

    #[test]
    fn cidr_lists() {
        let l = CidrList::parse_setting("10.0.0.0/8, 192.0.2.7,2001:db8::/32").unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(l.contains(ip("10.200.1.1")));
        assert!(l.contains(ip("192.0.2.7")));
        assert!(!l.contains(ip("192.0.2.8")));
        assert!(l.contains(ip("2001:db8:1::1")));
        assert!(
            l.contains(ip("::ffff:10.1.2.3")),
            "IPv4-mapped counts as IPv4"
        );
        assert!(!l.contains(ip("11.0.0.1")));
        assert!(CidrList::parse_setting("").unwrap().0.is_empty());
        assert!(
            CidrList::parse_setting("0.0.0.0/0")
                .unwrap()
                .contains(ip("203.0.113.1"))
        );
        assert!(CidrList::parse_setting("10.0.0.0/33").is_err());
        assert!(CidrList::parse_setting("example.org").is_err());
    }

    #[test]
    fn secrets_are_not_printed() {
        let s = SecretString::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
