//! Where mail for a domain goes: static routes first
//! (`MAILFLEET_RELAY_ROUTES`, `domain=host:port`, `*=host:port` for a smart
//! host), otherwise the domain's MX records by preference (RFC 5321 5.1),
//! the domain itself when it has no MX (implicit MX, A/AAAA), and nowhere
//! when it publishes a null MX (RFC 7505).
//!
//! Hosts found in DNS are used only at public addresses unless
//! `relay_allow_private` is set: an MX record is written by whoever controls
//! the recipient's domain, and must not make the relay connect to loopback,
//! the cluster network or a cloud metadata service. Static routes are exempt:
//! the operator named that host on purpose (as Postfix's relayhost).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;

/// One host to try, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

/// Parsed `relay_routes`.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    domains: HashMap<String, Target>,
    smart_host: Option<Target>,
}

fn parse_target(raw: &str) -> Result<Target, String> {
    let raw = raw.trim();
    // `[v6]:port`, `host:port`, or a bare host meaning port 25.
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (h, p) = rest
            .split_once(']')
            .ok_or_else(|| format!("unclosed [ in {raw:?}"))?;
        (h, p.strip_prefix(':'))
    } else {
        match raw.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (raw, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().map_err(|_| format!("bad port in {raw:?}"))?,
        None => 25,
    };
    if host.is_empty() {
        return Err(format!("empty host in {raw:?}"));
    }
    Ok(Target {
        host: host.to_ascii_lowercase(),
        port,
    })
}

impl Routes {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut routes = Routes::default();
        for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (domain, target) = item
                .split_once('=')
                .ok_or_else(|| format!("expected domain=host:port, got {item:?}"))?;
            let target = parse_target(target)?;
            let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
            if domain == "*" {
                routes.smart_host = Some(target);
            } else if domain.is_empty() {
                return Err(format!("empty domain in {item:?}"));
            } else {
                routes.domains.insert(domain, target);
            }
        }
        Ok(routes)
    }

    /// Whether `target` is one the operator configured.
    fn is_routed(&self, target: &Target) -> bool {
        self.domains
            .values()
            .chain(self.smart_host.as_ref())
            .any(|t| t == target)
    }

    /// The hosts of every static route (the smart host's included).
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.domains
            .values()
            .chain(self.smart_host.as_ref())
            .map(|t| t.host.as_str())
    }

    /// The static route of a domain, if any.
    pub fn route(&self, domain: &str) -> Option<&Target> {
        self.domains
            .get(&domain.to_ascii_lowercase())
            .or(self.smart_host.as_ref())
    }
}

/// Why a domain has no usable destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// Null MX or no such domain: permanent.
    NoMail(String),
    /// DNS failed in a way that may pass.
    Temporary(String),
}

/// Why a target gave no address to connect to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Its addresses are all loopback, private, link-local or otherwise not
    /// on the public internet (see [`is_public`]).
    #[error("{0} has no public address")]
    NotPublic(String),
    /// The lookup failed or found nothing.
    #[error("{0}")]
    Lookup(String),
}

/// Whether `ip` is a public unicast address: not loopback, RFC 1918
/// private, link-local, shared (100.64/10), unique-local (fc00::/7),
/// unspecified, multicast, broadcast or reserved. An IPv4-mapped IPv6
/// address is judged as its IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(a == 0
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || (a == 100 && b & 0xc0 == 64)
                || v4.is_multicast()
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_unspecified()
                || v6.is_loopback()
                || first & 0xfe00 == 0xfc00
                || first & 0xffc0 == 0xfe80
                || v6.is_multicast())
        }
    }
}

/// Static routes plus DNS.
pub struct Router {
    routes: Routes,
    resolver: TokioResolver,
    allow_private: bool,
}

impl Router {
    /// `dns_resolver` is `ip` or `ip:port`; empty uses the system's
    /// configuration.
    pub fn new(routes: Routes, dns_resolver: &str) -> Result<Self, String> {
        let resolver = if dns_resolver.trim().is_empty() {
            TokioResolver::builder_tokio()
                .map_err(|e| format!("cannot read the system DNS configuration: {e}"))?
                .build()
        } else {
            let addr: SocketAddr = dns_resolver
                .trim()
                .parse()
                .or_else(|_| {
                    dns_resolver
                        .trim()
                        .parse::<IpAddr>()
                        .map(|ip| SocketAddr::new(ip, 53))
                })
                .map_err(|_| format!("MAILFLEET_DNS_RESOLVER: bad address {dns_resolver:?}"))?;
            let mut server = NameServerConfig::udp_and_tcp(addr.ip());
            for c in &mut server.connections {
                c.port = addr.port();
            }
            let config = ResolverConfig::from_parts(None, vec![], vec![server]);
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default()).build()
        }
        .map_err(|e| format!("cannot build the DNS resolver: {e}"))?;
        Ok(Self {
            routes,
            resolver,
            allow_private: false,
        })
    }

    /// Lets hosts found in DNS be used at non-public addresses too
    /// (`relay_allow_private`: tests, an internal mail network).
    pub fn allow_private(mut self, allow: bool) -> Self {
        self.allow_private = allow;
        self
    }

    /// The static routes this router was made with.
    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    /// The `destination` label of the relay metrics for `target`: its host
    /// when it is a static route, else the one label of every host found in
    /// DNS (bounded, whatever domains mail goes to).
    pub fn metric_destination<'a>(&self, target: &'a Target) -> &'a str {
        if self.routes.is_routed(target) {
            &target.host
        } else {
            crate::metrics::DNS_DESTINATION
        }
    }

    /// The hosts to try for `domain`, best first.
    pub async fn targets(&self, domain: &str) -> Result<Vec<Target>, RouteError> {
        if let Some(t) = self.routes.route(domain) {
            return Ok(vec![t.clone()]);
        }
        let lookup = tokio::time::timeout(
            Duration::from_secs(30),
            self.resolver.mx_lookup(format!("{domain}.")),
        )
        .await
        .map_err(|_| RouteError::Temporary(format!("MX lookup for {domain} timed out")))?;
        let mut mx: Vec<(u16, String)> = match lookup {
            Ok(l) => l
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(m) => Some((
                        m.preference,
                        m.exchange
                            .to_ascii()
                            .trim_end_matches('.')
                            .to_ascii_lowercase(),
                    )),
                    _ => None,
                })
                .collect(),
            Err(e) if e.is_nx_domain() => {
                return Err(RouteError::NoMail(format!(
                    "domain {domain} does not exist"
                )));
            }
            Err(e) if e.is_no_records_found() => Vec::new(),
            Err(e) => {
                return Err(RouteError::Temporary(format!(
                    "MX lookup for {domain}: {e}"
                )));
            }
        };
        order_mx(domain, &mut mx)
    }

    /// The addresses of one target (IPv6 and IPv4, as DNS returns them),
    /// without the non-public ones unless the target is a static route or
    /// private addresses are allowed.
    pub async fn addresses(&self, target: &Target) -> Result<Vec<SocketAddr>, AddressError> {
        let mut all = self.lookup(target).await.map_err(AddressError::Lookup)?;
        if self.allow_private || self.routes.is_routed(target) {
            return Ok(all);
        }
        let found = all.len();
        all.retain(|a| is_public(a.ip()));
        if all.is_empty() && found > 0 {
            return Err(AddressError::NotPublic(target.host.clone()));
        }
        Ok(all)
    }

    async fn lookup(&self, target: &Target) -> Result<Vec<SocketAddr>, String> {
        if let Ok(ip) = target.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, target.port)]);
        }
        if target.host == "localhost" {
            return Ok(vec![SocketAddr::new(
                IpAddr::from([127, 0, 0, 1]),
                target.port,
            )]);
        }
        let lookup = tokio::time::timeout(
            Duration::from_secs(30),
            self.resolver.lookup_ip(format!("{}.", target.host)),
        )
        .await
        .map_err(|_| format!("address lookup for {} timed out", target.host))?
        .map_err(|e| format!("address lookup for {}: {e}", target.host))?;
        Ok(lookup
            .iter()
            .map(|ip| SocketAddr::new(ip, target.port))
            .collect())
    }
}

/// Sorts MX records by preference and applies RFC 7505 and the implicit MX.
fn order_mx(domain: &str, mx: &mut Vec<(u16, String)>) -> Result<Vec<Target>, RouteError> {
    if mx.is_empty() {
        // RFC 5321 5.1: no MX means the domain itself is the mail host.
        return Ok(vec![Target {
            host: domain.to_ascii_lowercase(),
            port: 25,
        }]);
    }
    if mx.iter().any(|(_, host)| host.is_empty()) {
        // A null MX ("0 .") says the domain accepts no mail (RFC 7505 3).
        return Err(RouteError::NoMail(format!(
            "domain {domain} accepts no mail (null MX)"
        )));
    }
    mx.sort_by_key(|(pref, _)| *pref);
    let mut seen = std::collections::HashSet::new();
    Ok(mx
        .drain(..)
        .filter(|(_, h)| seen.insert(h.clone()))
        .map(|(_, host)| Target { host, port: 25 })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn routes_parse_domains_and_a_smart_host() {
        let r = Routes::parse("b.test=127.0.0.1:2526, *=smart.test:587,v6.test=[::1]:25").unwrap();
        assert_eq!(
            r.route("B.test"),
            Some(&Target {
                host: "127.0.0.1".into(),
                port: 2526
            })
        );
        assert_eq!(r.route("other.test").unwrap().host, "smart.test");
        assert_eq!(r.route("v6.test").unwrap().host, "::1");
        assert!(Routes::parse("nonsense").is_err());
        assert!(Routes::parse("a=b:x").is_err());
        assert!(Routes::parse("").unwrap().route("x").is_none());
    }

    #[test]
    fn mx_order_null_mx_and_implicit_mx() {
        let mut mx = vec![
            (20, "b.mx".into()),
            (10, "a.mx".into()),
            (20, "b.mx".into()),
        ];
        let t = order_mx("d.test", &mut mx).unwrap();
        assert_eq!(
            t.iter().map(|t| t.host.as_str()).collect::<Vec<_>>(),
            ["a.mx", "b.mx"]
        );
        assert!(matches!(
            order_mx("d.test", &mut vec![(0, String::new())]),
            Err(RouteError::NoMail(_))
        ));
        assert_eq!(order_mx("D.test", &mut vec![]).unwrap()[0].host, "d.test");
    }

    #[test]
    fn public_addresses() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "192.0.2.1",
            "2001:db8::1",
            "2a00:1450::1",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}
