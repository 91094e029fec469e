//! The transaction whose body is being received: what the Received header
//! and the delivery job are made of. Shared by DATA/BDAT (`data`) and the
//! body's way to storage (`intake`), so neither imports the other for it.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use mailfleet_proto::v1::{DeliveryJob, DsnRet, JobRecipient};

use super::{Client, Envelope, TlsInfo};
use crate::backend::StoredBody;
use crate::codec::command::{BodyType, Ret};
use crate::codec::received::{self, Trace};
use crate::role::Role;

/// A transaction whose body is being received.
#[derive(Debug, Clone)]
pub struct Transaction {
    pub client: Client,
    pub envelope: Envelope,
    /// Fresh per transaction (UUID v7): the queue id and the dedup key.
    pub job_id: String,
    pub client_ip: IpAddr,
    pub received_at: DateTime<Utc>,
    pub role: Role,
    pub tls: Option<TlsInfo>,
    /// The authenticated account (submission).
    pub account: Option<String>,
}

impl Transaction {
    /// The Received header to put in front of the body.
    pub fn received_header(&self, hostname: &str) -> String {
        let single = match self.envelope.recipients.as_slice() {
            [one] => Some(one.address.as_str()),
            _ => None,
        };
        received::header(&Trace {
            helo: &self.client.helo,
            client_ip: self.client_ip,
            hostname,
            esmtp: self.client.esmtp,
            utf8: self.envelope.smtputf8,
            authenticated: self.account.is_some(),
            tls: self
                .tls
                .as_ref()
                .map(|t| (t.version.as_str(), t.cipher.as_str())),
            id: &self.job_id,
            recipient: single,
            date: self.received_at,
        })
    }

    /// The delivery job for the stored body.
    pub fn job(&self, body: &StoredBody) -> DeliveryJob {
        DeliveryJob {
            job_id: self.job_id.clone(),
            return_path: self.envelope.return_path.clone(),
            recipients: self
                .envelope
                .recipients
                .iter()
                .map(|r| JobRecipient {
                    address: r.address.clone(),
                    orcpt: r.orcpt.clone().unwrap_or_default(),
                    notify: r.notify,
                })
                .collect(),
            blob_id: body.id.clone(),
            blob_size: body.size,
            received_at_ms: self.received_at.timestamp_millis(),
            // The job is built once the body is stored, right before the
            // confirmed publish that the 250 waits for.
            accepted_at_ms: Utc::now().timestamp_millis(),
            client_ip: self.client_ip.to_string(),
            client_helo: self.client.helo.clone(),
            envid: self.envelope.envid.clone().unwrap_or_default(),
            ret: match self.envelope.ret {
                Ret::Unspecified => DsnRet::Unspecified,
                Ret::Full => DsnRet::Full,
                Ret::Headers => DsnRet::Hdrs,
            } as i32,
            auth_user: self.account.clone().unwrap_or_default(),
            smtputf8: self.envelope.smtputf8,
            body_type: match self.envelope.body {
                BodyType::SevenBit => "7BIT",
                BodyType::EightBitMime => "8BITMIME",
                BodyType::BinaryMime => "BINARYMIME",
            }
            .to_owned(),
            ..DeliveryJob::default()
        }
    }
}
