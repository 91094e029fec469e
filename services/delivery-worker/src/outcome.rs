//! What happened to each recipient of a job, and what that means for the job.
//!
//! Local delivery decides first; a recipient whose domain is not local becomes
//! [`Outcome::Remote`] and goes to the relay, which answers [`Outcome::Relayed`]
//! or a failure. A [`Outcome::TempFail`] schedules a retry (see `retry`), a
//! [`Outcome::PermFail`] produces a DSN (see `dsn`).

use mailfleet_proto::v1::DeliveryStatus;

/// The result of delivering one recipient's copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Stored now.
    Delivered,
    /// Stored by an earlier attempt (same idempotency key).
    Duplicate,
    /// Not a local domain: to be relayed over SMTP.
    Remote,
    /// Accepted by the remote server (`detail` is its reply).
    Relayed { detail: String },
    /// May succeed later; the job must not be acked as done.
    TempFail { detail: String },
    /// Will never succeed; `reason` is a short metric label.
    PermFail {
        reason: &'static str,
        detail: String,
    },
}

impl Outcome {
    /// The `outcome` label of the deliveries counter.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Delivered => "stored",
            Outcome::Duplicate => "duplicate",
            Outcome::Remote => "remote",
            Outcome::Relayed { .. } => "relayed",
            Outcome::TempFail { .. } => "temp_failed",
            Outcome::PermFail { .. } => "failed",
        }
    }

    pub fn temp(detail: impl Into<String>) -> Self {
        Outcome::TempFail {
            detail: detail.into(),
        }
    }

    /// Maps one mailstore `Deliver` result. `UNKNOWN_RECIPIENT` still needs
    /// [`classify_unknown`] to tell a foreign domain from an unknown user.
    pub fn from_status(status: i32, detail: &str) -> Self {
        match DeliveryStatus::try_from(status) {
            Ok(DeliveryStatus::DeliveryStored) => Outcome::Delivered,
            Ok(DeliveryStatus::DeliveryDuplicate) => Outcome::Duplicate,
            Ok(DeliveryStatus::DeliveryUnknownRecipient) => Outcome::PermFail {
                reason: "unknown_recipient",
                detail: detail.to_owned(),
            },
            Ok(DeliveryStatus::DeliveryTemporaryFailure) => Outcome::temp(detail),
            // The recipient's Sieve script said reject: the message was
            // accepted already, so the refusal is a bounce (RFC 5429 2.1).
            Ok(DeliveryStatus::DeliveryRejected) => Outcome::PermFail {
                reason: "sieve_reject",
                detail: format!("5.7.1 rejected by the recipient's filter: {detail}"),
            },
            // Over quota is temporary in RFC 3463 (4.2.2): the owner may make room.
            Ok(DeliveryStatus::DeliveryOverQuota) => Outcome::temp(format!("over quota: {detail}")),
            Ok(DeliveryStatus::Unspecified) | Err(_) => {
                Outcome::temp(format!("unexpected delivery status {status}"))
            }
        }
    }

    pub fn is_unknown_recipient(&self) -> bool {
        matches!(
            self,
            Outcome::PermFail {
                reason: "unknown_recipient",
                ..
            }
        )
    }
}

/// Refines an `UNKNOWN_RECIPIENT` answer with `ResolveRecipient`.
pub fn classify_unknown(
    resolved: Result<mailfleet_proto::v1::RecipientStatus, String>,
    detail: &str,
) -> Outcome {
    use mailfleet_proto::v1::RecipientStatus;
    match resolved {
        Ok(RecipientStatus::RecipientNotLocal) => Outcome::Remote,
        Ok(RecipientStatus::RecipientUnknownUser) => Outcome::PermFail {
            reason: "unknown_user",
            detail: detail.to_owned(),
        },
        // The address became deliverable between the two calls: try again.
        Ok(RecipientStatus::RecipientLocal) => {
            Outcome::temp("recipient became local during delivery")
        }
        Ok(RecipientStatus::Unspecified) | Err(_) => Outcome::PermFail {
            reason: "unknown_recipient",
            detail: detail.to_owned(),
        },
    }
}

/// What to do with a job once each of its recipients has an outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every recipient has a final outcome: ack.
    Done,
    /// Some recipient failed temporarily: return the job to the queue (after a
    /// pause). Recipients already stored answer DUPLICATE next time.
    Requeue,
}

/// The verdict of local delivery alone (no relay, retry queue or DSN).
pub fn verdict<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> Verdict {
    if outcomes
        .into_iter()
        .any(|o| matches!(o, Outcome::TempFail { .. } | Outcome::Remote))
    {
        Verdict::Requeue
    } else {
        Verdict::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailfleet_proto::v1::RecipientStatus;

    #[test]
    fn statuses_map_to_outcomes() {
        assert_eq!(
            Outcome::from_status(DeliveryStatus::DeliveryStored as i32, ""),
            Outcome::Delivered
        );
        assert_eq!(
            Outcome::from_status(DeliveryStatus::DeliveryDuplicate as i32, ""),
            Outcome::Duplicate
        );
        assert!(
            Outcome::from_status(DeliveryStatus::DeliveryUnknownRecipient as i32, "")
                .is_unknown_recipient()
        );
        assert!(matches!(
            Outcome::from_status(DeliveryStatus::DeliveryOverQuota as i32, ""),
            Outcome::TempFail { .. }
        ));
        assert!(matches!(
            Outcome::from_status(99, ""),
            Outcome::TempFail { .. }
        ));
        assert!(matches!(
            Outcome::from_status(DeliveryStatus::DeliveryRejected as i32, "not here"),
            Outcome::PermFail { reason: "sieve_reject", detail } if detail.contains("5.7.1") && detail.contains("not here")
        ));
    }

    #[test]
    fn unknown_recipients_are_classified() {
        let not_local = classify_unknown(Ok(RecipientStatus::RecipientNotLocal), "x");
        assert_eq!(not_local, Outcome::Remote);
        let unknown = classify_unknown(Ok(RecipientStatus::RecipientUnknownUser), "x");
        assert!(matches!(
            unknown,
            Outcome::PermFail {
                reason: "unknown_user",
                ..
            }
        ));
        assert!(matches!(
            classify_unknown(Ok(RecipientStatus::RecipientLocal), "x"),
            Outcome::TempFail { .. }
        ));
        assert!(classify_unknown(Err("down".into()), "x").is_unknown_recipient());
    }

    #[test]
    fn one_temporary_failure_requeues_the_job() {
        let done = [
            Outcome::Delivered,
            Outcome::Duplicate,
            Outcome::PermFail {
                reason: "not_local",
                detail: String::new(),
            },
        ];
        assert_eq!(verdict(&done), Verdict::Done);
        let mixed = [Outcome::Delivered, Outcome::temp("later")];
        assert_eq!(verdict(&mixed), Verdict::Requeue);
        assert_eq!(verdict(&[]), Verdict::Done);
    }
}
