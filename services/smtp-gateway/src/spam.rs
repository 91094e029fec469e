//! The spam check on the MX role: rspamd (`/checkv2`) sees the whole
//! message after the final dot and before the reply. The body is held in
//! memory for it by `session::intake` (up to `spam_max_size`, charged to
//! the body memory budget); this module asks rspamd, counts the outcome and
//! turns it into a reply or the header fields to prepend.

use bytes::Bytes;
use mailfleet_runtime::Config;
use mailfleet_spam::protocol::UNCHECKED;
use mailfleet_spam::{Action, Check, Envelope, Rspamd, SpamError};

use crate::codec::reply::{self, Reply};
use crate::metrics::Metrics;

/// rspamd and what to do when it cannot answer.
#[derive(Debug, Clone)]
pub struct SpamFilter {
    pub rspamd: Rspamd,
    /// Accept unchecked (true) or answer 451 (false) on timeout or outage.
    pub fail_open: bool,
    /// Larger messages are not held for rspamd.
    pub max_size: u64,
}

impl SpamFilter {
    /// `None` when `spam_url` is empty.
    pub fn from_config(config: &Config) -> Result<Option<Self>, SpamError> {
        if config.spam_url.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            rspamd: Rspamd::new(&config.spam_url, config.spam_timeout)?,
            fail_open: config.spam_fail_open,
            max_size: config.spam_max_size,
        }))
    }
}

/// What became of the check.
#[derive(Debug)]
pub enum Outcome {
    Checked(Check),
    /// Over `spam_max_size`: not sent.
    TooBig,
    /// rspamd did not answer (timeout, outage, a garbled answer).
    Failed,
}

/// What the gateway does with the message.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Store it with these fields in front; `spam` goes into the job;
    /// `new_subject` says the client's Subject must be left out.
    Accept {
        headers: String,
        spam: bool,
        new_subject: bool,
    },
    Refuse(Reply),
}

/// Asks rspamd about `message` and counts the result.
pub async fn check(
    filter: &SpamFilter,
    envelope: &Envelope<'_>,
    message: Bytes,
    metrics: &Metrics,
) -> Outcome {
    match filter.rspamd.check(envelope, message).await {
        Ok(check) => {
            metrics.spam_check(check.action.label());
            tracing::info!(
                job_id = %envelope.queue_id,
                action = check.action.name(),
                score = check.score,
                "Spam check done."
            );
            Outcome::Checked(check)
        }
        Err(error) => {
            metrics.spam_check("unchecked");
            metrics.spam_check_errors.inc();
            tracing::warn!(%error, job_id = %envelope.queue_id, fail_open = filter.fail_open, "Spam check failed.");
            Outcome::Failed
        }
    }
}

/// The reply or the fields for an outcome.
pub fn decide(outcome: &Outcome, fail_open: bool) -> Decision {
    let unchecked = || Decision::Accept {
        headers: UNCHECKED.to_owned(),
        spam: false,
        new_subject: false,
    };
    match outcome {
        Outcome::TooBig => unchecked(),
        Outcome::Failed if fail_open => unchecked(),
        Outcome::Failed => Decision::Refuse(reply::spam_try_later(None)),
        Outcome::Checked(check) => match check.action {
            Action::Reject => Decision::Refuse(reply::spam_reject(check.smtp_message.as_deref())),
            Action::SoftReject | Action::Greylist => {
                Decision::Refuse(reply::spam_try_later(check.smtp_message.as_deref()))
            }
            Action::NoAction | Action::AddHeader | Action::RewriteSubject => Decision::Accept {
                headers: check.header_block(),
                spam: check.action.is_spam(),
                new_subject: check.new_subject().is_some(),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(json: &str) -> Outcome {
        Outcome::Checked(Check::parse(json.as_bytes()).unwrap())
    }

    #[test]
    fn actions_map_to_replies() {
        let reject = decide(
            &checked(r#"{"action":"reject","messages":{"smtp_message":"Gtube pattern"}}"#),
            true,
        );
        assert_eq!(
            reject,
            Decision::Refuse(reply::spam_reject(Some("Gtube pattern")))
        );
        let Decision::Refuse(r) = reject else {
            unreachable!()
        };
        assert_eq!((r.code, r.status), (550, Some("5.7.1")));
        for action in ["soft reject", "greylist"] {
            let Decision::Refuse(r) =
                decide(&checked(&format!(r#"{{"action":"{action}"}}"#)), true)
            else {
                panic!("{action} accepted")
            };
            assert_eq!((r.code, r.status), (451, Some("4.7.1")));
        }
        let Decision::Accept { spam, headers, .. } = decide(
            &checked(r#"{"action":"add header","score":7,"required_score":15}"#),
            true,
        ) else {
            panic!()
        };
        assert!(spam);
        assert!(headers.starts_with("X-Spam-Status: Yes, score=7.00"));
    }

    #[test]
    fn failures_follow_fail_open() {
        assert!(matches!(
            decide(&Outcome::Failed, true),
            Decision::Accept { ref headers, spam: false, .. } if headers == UNCHECKED
        ));
        let Decision::Refuse(r) = decide(&Outcome::Failed, false) else {
            panic!()
        };
        assert_eq!(r.code, 451);
        // Too big is never a failure, whatever the setting.
        assert!(matches!(
            decide(&Outcome::TooBig, false),
            Decision::Accept { .. }
        ));
    }
}
