//! The tagged result of a command and how it is written.

/// The tagged result of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Ok(String),
    No(String),
    Bad(String),
    /// LOGOUT: BYE already written; close after the tagged OK.
    Logout,
    /// The tagged reply was already sent (STARTTLS).
    Sent,
}

impl Reply {
    /// The metrics label of the result.
    pub fn result(&self) -> &'static str {
        match self {
            Reply::Ok(_) | Reply::Logout | Reply::Sent => "ok",
            Reply::No(_) => "no",
            Reply::Bad(_) => "bad",
        }
    }

    /// The tagged response line, CRLF included (empty for [`Reply::Sent`]).
    pub fn line(&self, tag: &str) -> String {
        match self {
            Reply::Ok(t) => format!("{tag} OK {t}\r\n"),
            Reply::No(t) => format!("{tag} NO {t}\r\n"),
            Reply::Bad(t) => format!("{tag} BAD {t}\r\n"),
            Reply::Logout => format!("{tag} OK LOGOUT completed\r\n"),
            Reply::Sent => String::new(),
        }
    }
}
