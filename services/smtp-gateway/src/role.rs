//! What each listener is for; metrics and sessions both label by it.

/// What a listener is for (RFC 6409, RFC 8314).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Port 25: mail for local recipients, no AUTH, inbound SPF/DKIM/DMARC.
    Mx,
    /// Port 587: STARTTLS, AUTH required before MAIL.
    Submission,
    /// Port 465: TLS from the first byte, AUTH required before MAIL.
    Submissions,
}

impl Role {
    /// The listener label of metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Role::Mx => "smtp",
            Role::Submission => "submission",
            Role::Submissions => "submissions",
        }
    }

    pub fn is_submission(self) -> bool {
        !matches!(self, Role::Mx)
    }
}
