//! Remote relay: hands the copies for non-local recipients to the
//! recipients' mail servers over SMTP.
//!
//! Recipients of one job are grouped by domain; each group is one SMTP
//! transaction to the first destination that answers (static route, or MX
//! hosts by preference, each host's addresses in DNS order). Connections are
//! pooled per destination host: at most `relay_max_connections_per_host` at
//! once, and an idle connection carries the next message for the same host
//! (up to `relay_max_messages_per_connection`). The outcome is per recipient:
//! RCPT refusals are per recipient, a connection or transaction failure
//! applies to the whole group.

pub mod client;
pub mod pool;
pub mod reply;
pub mod routes;
pub mod tls;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use mailfleet_blob::BlobStore;
use mailfleet_proto::v1::{DeliveryJob, DsnRet, JobRecipient};
use tracing::{debug, info, warn};

use crate::dkim::Signer;
use crate::metrics::Metrics;
use crate::outcome::Outcome;
use client::{ClientError, ClientSettings, Envelope, Recipient};
use pool::Pool;
use routes::{AddressError, RouteError, Router};

/// Everything relaying needs; shared by all jobs.
pub struct Relay {
    pub router: Router,
    pub pool: Pool,
    pub blobs: BlobStore,
    pub signer: Option<Signer>,
    pub metrics: Metrics,
}

fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
        .unwrap_or_default()
}

/// RFC 3461 NOTIFY bits (queue.proto) as the keyword list.
pub fn notify_keywords(bits: u32) -> String {
    if bits & 8 != 0 {
        return "NEVER".into();
    }
    let mut words = Vec::new();
    if bits & 1 != 0 {
        words.push("SUCCESS");
    }
    if bits & 2 != 0 {
        words.push("FAILURE");
    }
    if bits & 4 != 0 {
        words.push("DELAY");
    }
    words.join(",")
}

impl Relay {
    pub fn new(
        router: Router,
        settings: ClientSettings,
        per_host: usize,
        per_connection: usize,
        blobs: BlobStore,
        signer: Option<Signer>,
        metrics: Metrics,
    ) -> Arc<Self> {
        Arc::new(Self {
            router,
            pool: Pool::new(settings, per_host, per_connection),
            blobs,
            signer,
            metrics,
        })
    }

    /// Relays the job's copies for `recipients`; one outcome per recipient,
    /// in order.
    pub async fn relay(&self, job: &DeliveryJob, recipients: &[JobRecipient]) -> Vec<Outcome> {
        let signature = match &self.signer {
            Some(signer) => match signer.signature(&self.blobs, &job.blob_id).await {
                Ok(s) => s,
                Err(error) => {
                    warn!(job_id = %job.job_id, %error, "Cannot sign the message now; deferring its remote recipients.");
                    return recipients
                        .iter()
                        .map(|_| Outcome::temp(error.clone()))
                        .collect();
                }
            },
            None => Vec::new(),
        };
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, r) in recipients.iter().enumerate() {
            groups.entry(domain_of(&r.address)).or_default().push(i);
        }
        let sends = groups.into_iter().map(|(domain, idx)| {
            let rcpts: Vec<&JobRecipient> = idx.iter().filter_map(|&i| recipients.get(i)).collect();
            let signature = &signature;
            async move {
                let outcomes = self.relay_domain(job, &domain, &rcpts, signature).await;
                idx.into_iter().zip(outcomes).collect::<Vec<_>>()
            }
        });
        let mut outcomes: Vec<Outcome> = recipients
            .iter()
            .map(|_| Outcome::temp("not attempted"))
            .collect();
        for (i, outcome) in futures::future::join_all(sends).await.into_iter().flatten() {
            if let Some(slot) = outcomes.get_mut(i) {
                *slot = outcome;
            }
        }
        outcomes
    }

    async fn relay_domain(
        &self,
        job: &DeliveryJob,
        domain: &str,
        rcpts: &[&JobRecipient],
        signature: &[u8],
    ) -> Vec<Outcome> {
        let all = |o: Outcome| rcpts.iter().map(|_| o.clone()).collect::<Vec<_>>();
        if domain.is_empty() {
            return all(Outcome::PermFail {
                reason: "bad_address",
                detail: "recipient address has no domain".into(),
            });
        }
        let targets = match self.router.targets(domain).await {
            Ok(t) => t,
            Err(RouteError::NoMail(detail)) => {
                return all(Outcome::PermFail {
                    reason: "no_mail_host",
                    detail,
                });
            }
            Err(RouteError::Temporary(detail)) => return all(Outcome::temp(detail)),
        };
        let envelope = Envelope {
            from: job.return_path.clone(),
            recipients: rcpts
                .iter()
                .map(|r| Recipient {
                    address: r.address.clone(),
                    notify: notify_keywords(r.notify),
                    orcpt: r.orcpt.clone(),
                })
                .collect(),
            size: job.blob_size + signature.len() as u64,
            ret: match DsnRet::try_from(job.ret) {
                Ok(DsnRet::Full) => Some("FULL"),
                Ok(DsnRet::Hdrs) => Some("HDRS"),
                _ => None,
            },
            envid: job.envid.clone(),
        };
        let mut last_error = String::from("no destination answered");
        // Hosts refused for having no public address: a temporary failure
        // for that host (the next one is tried), permanent when it was all
        // the domain offered.
        let mut not_public = 0usize;
        for target in &targets {
            let destination = self.router.metric_destination(target);
            let addresses = match self.router.addresses(target).await {
                Ok(a) if !a.is_empty() => a,
                Ok(_) => {
                    last_error = format!("{} has no address", target.host);
                    continue;
                }
                Err(e @ AddressError::NotPublic(_)) => {
                    warn!(job_id = %job.job_id, host = %target.host, "Not relaying to a mail host without a public address.");
                    not_public += 1;
                    last_error = e.to_string();
                    continue;
                }
                Err(AddressError::Lookup(e)) => {
                    last_error = e;
                    continue;
                }
            };
            for addr in addresses {
                // A pooled connection may have been closed by the peer while
                // idle: one failure on a reused connection earns a fresh one.
                let mut retried = false;
                loop {
                    let started = Instant::now();
                    let mut lease = match self.pool.acquire(&target.host, addr).await {
                        Ok(l) => l,
                        Err(error) => {
                            self.metrics.relay_attempt(destination, "connect_failed");
                            debug!(host = %target.host, %addr, %error, "Cannot open an SMTP connection.");
                            last_error = format!("{}: {error}", target.host);
                            break;
                        }
                    };
                    let tls = lease.connection().tls;
                    let reused = lease.connection().transactions > 0;
                    self.metrics.relay_tls(tls);
                    let body = match self.blobs.stream(&job.blob_id, None).await {
                        Ok(b) => b,
                        Err(e) => {
                            self.pool.release(lease).await;
                            let detail = format!("reading the message: {e}");
                            return all(if e.is_not_found() {
                                Outcome::PermFail {
                                    reason: "body_missing",
                                    detail,
                                }
                            } else {
                                Outcome::temp(detail)
                            });
                        }
                    };
                    let result = lease.connection().send(&envelope, signature, body).await;
                    self.pool.release(lease).await;
                    self.metrics
                        .relay_seconds(destination, started.elapsed().as_secs_f64());
                    match result {
                        Ok(results) => {
                            self.metrics.relay_attempt(destination, "completed");
                            info!(job_id = %job.job_id, host = %target.host, tls, recipients = rcpts.len(), "Relayed.");
                            return results
                                .into_iter()
                                .map(|r| match r {
                                    Ok(reply) => Outcome::Relayed {
                                        detail: format!("{}: {}", target.host, reply.one_line()),
                                    },
                                    Err(reply) if reply.is_permanent() => Outcome::PermFail {
                                        reason: "rejected",
                                        detail: format!("{}: {}", target.host, reply.one_line()),
                                    },
                                    Err(reply) => Outcome::temp(format!(
                                        "{}: {}",
                                        target.host,
                                        reply.one_line()
                                    )),
                                })
                                .collect();
                        }
                        Err(e @ ClientError::Rejected(_)) => {
                            self.metrics.relay_attempt(destination, "rejected");
                            let detail = format!("{}: {e}", target.host);
                            return all(if e.is_permanent() {
                                Outcome::PermFail {
                                    reason: "rejected",
                                    detail,
                                }
                            } else {
                                Outcome::temp(detail)
                            });
                        }
                        Err(e) if e.is_permanent() => {
                            return all(Outcome::PermFail {
                                reason: "body_missing",
                                detail: e.to_string(),
                            });
                        }
                        Err(e) => {
                            // The connection broke mid-transaction: try the next
                            // address. (If the peer had in fact accepted, this is
                            // the one case that can duplicate: RFC 5321 6.1.)
                            self.metrics.relay_attempt(destination, "failed");
                            last_error = format!("{}: {e}", target.host);
                            if reused && !retried {
                                retried = true;
                                continue;
                            }
                        }
                    }
                    break;
                }
            }
        }
        if not_public > 0 && not_public == targets.len() {
            return all(Outcome::PermFail {
                reason: "no_public_mail_host",
                detail: format!("5.4.4 no public mail host for {domain} ({last_error})"),
            });
        }
        all(Outcome::temp(last_error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_bits_become_keywords() {
        assert_eq!(notify_keywords(0), "");
        assert_eq!(notify_keywords(1 | 2), "SUCCESS,FAILURE");
        assert_eq!(notify_keywords(8 | 2), "NEVER");
        assert_eq!(domain_of("a@B.Test."), "b.test");
    }
}
