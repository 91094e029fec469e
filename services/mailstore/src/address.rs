//! Address normalisation and validation for accounts, aliases and recipients.

/// An address split into lower-case local part and domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub local: String,
    pub domain: String,
}

impl Address {
    /// Parses `local@domain` (angle brackets and surrounding space allowed),
    /// lower-casing both halves. `None` when it is not a plausible address.
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        let raw = raw
            .strip_prefix('<')
            .and_then(|r| r.strip_suffix('>'))
            .unwrap_or(raw);
        let (local, domain) = raw.rsplit_once('@')?;
        if !valid_local(local) {
            return None;
        }
        let domain = normalize_domain(domain)?;
        Some(Self {
            local: local.to_lowercase(),
            domain,
        })
    }

    pub fn full(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }

    /// The address without a `+tag`, when it has one.
    pub fn without_tag(&self) -> Option<Self> {
        let (base, _) = self.local.split_once('+')?;
        (!base.is_empty()).then(|| Self {
            local: base.to_owned(),
            domain: self.domain.clone(),
        })
    }
}

/// Lower-cases and checks a domain name: labels of letters, digits and
/// hyphens (or UTF-8, left to IDNA-aware callers), no empty labels.
pub fn normalize_domain(raw: &str) -> Option<String> {
    let d = raw.trim().trim_end_matches('.').to_lowercase();
    if d.is_empty() || d.len() > 253 {
        return None;
    }
    let ok = d.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
    });
    ok.then_some(d)
}

fn valid_local(local: &str) -> bool {
    !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.chars().all(|c| {
            !c.is_control()
                && !c.is_whitespace()
                && !matches!(
                    c,
                    '@' | '<' | '>' | '(' | ')' | ',' | ';' | ':' | '"' | '[' | ']' | '\\'
                )
        })
}

/// An alias address: a full address, or `@domain` for a catch-all.
/// Returns (normalised alias, domain).
pub fn parse_alias(raw: &str) -> Option<(String, String)> {
    let raw = raw.trim();
    if let Some(domain) = raw.strip_prefix('@') {
        let domain = normalize_domain(domain)?;
        return Some((format!("@{domain}"), domain));
    }
    let a = Address::parse(raw)?;
    Some((a.full(), a.domain))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_and_lowercases() {
        let a = Address::parse(" <Bob+News@Example.TEST> ").unwrap();
        assert_eq!(a.full(), "bob+news@example.test");
        assert_eq!(a.without_tag().unwrap().full(), "bob@example.test");
        assert!(
            Address::parse("bob@example.test")
                .unwrap()
                .without_tag()
                .is_none()
        );
        assert!(
            Address::parse("+x@example.test")
                .unwrap()
                .without_tag()
                .is_none()
        );
    }

    #[test]
    fn rejects_junk() {
        for bad in [
            "",
            "bob",
            "@example.test",
            "bob@",
            "bob@exa mple.test",
            "a b@x.test",
            "bob@x..test",
            "bob@-x.test",
            "a..b@x.test",
        ] {
            assert!(Address::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(parse_alias("@Example.test").unwrap().0, "@example.test");
        assert_eq!(parse_alias("Sales@Example.test").unwrap().1, "example.test");
        assert!(parse_alias("@").is_none());
    }
}
