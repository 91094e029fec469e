//! The gRPC handlers: check the credential, convert, call the [`Store`],
//! map errors to `Status` (through `From<StoreError>`).

use mailfleet_proto::v1 as pb;
use mailfleet_proto::v1::admin_server::Admin;
use mailfleet_proto::v1::mail_store_server::MailStore;
use mailfleet_runtime::grpc::check_bearer;
use tonic::{Request, Response, Status};

use crate::body::BodyStream;
use crate::maildrop::{Opened, Snapshot};
use crate::metrics::StatusLabel;
use crate::store::{AuthResult, Resolution, Store};
pub use crate::tokens::Tokens;

#[derive(Clone)]
pub struct MailStoreService {
    pub store: Store,
    pub tokens: Tokens,
    /// Largest body AppendMessageStream accepts (smtp_max_message_size).
    pub max_append: u64,
}

#[derive(Clone)]
pub struct AdminService {
    pub store: Store,
    pub tokens: Tokens,
}

impl MailStoreService {
    fn authorize<T>(&self, req: &Request<T>) -> Result<(), Status> {
        // Operator tools may read mail with the admin credential too.
        check_bearer(
            req,
            &[self.tokens.service.expose(), self.tokens.admin.expose()],
        )
    }
}

impl AdminService {
    fn authorize<T>(&self, req: &Request<T>) -> Result<(), Status> {
        check_bearer(req, &[self.tokens.admin.expose()])
    }
}

fn u32_of(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A POP3 maildrop answer: locked with its snapshot, or in use.
fn maildrop_response(address: String, snapshot: Option<Snapshot>) -> pb::Maildrop {
    let Some(s) = snapshot else {
        return pb::Maildrop {
            ok: true,
            in_use: true,
            address,
            ..Default::default()
        };
    };
    pb::Maildrop {
        ok: true,
        locked: false,
        in_use: false,
        address,
        lease_id: s.lease_id,
        uidvalidity: s.uidvalidity,
        messages: s
            .messages
            .into_iter()
            .map(|m| pb::MaildropMessage {
                uid: m.uid,
                size: m.size,
                blob_id: m.blob_id,
                prefix: m.prefix,
                seen: m.seen,
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl MailStore for MailStoreService {
    async fn authenticate(
        &self,
        request: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        let result = self
            .store
            .authenticate(&r.username, &r.password, &r.remote_ip, &r.protocol)
            .await?;
        let label = match &result {
            AuthResult::Ok { .. } => "ok",
            AuthResult::Failed => "failed",
            AuthResult::Locked => "locked",
        };
        self.store
            .metrics
            .auth
            .get_or_create(&StatusLabel { status: label })
            .inc();
        if result == AuthResult::Failed {
            tracing::info!(remote_ip = %r.remote_ip, protocol = %r.protocol, "Authentication failed.");
        }
        Ok(Response::new(match result {
            AuthResult::Ok { id, address } => pb::AuthenticateResponse {
                ok: true,
                account_id: id,
                address,
                locked: false,
            },
            AuthResult::Failed => pb::AuthenticateResponse::default(),
            AuthResult::Locked => pb::AuthenticateResponse {
                locked: true,
                ..Default::default()
            },
        }))
    }

    async fn resolve_recipient(
        &self,
        request: Request<pb::ResolveRecipientRequest>,
    ) -> Result<Response<pb::ResolveRecipientResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        let (status, accounts, over_quota, quota_limited) =
            match self.store.resolve(&r.address).await? {
                Resolution::Local(a) => {
                    // Only accounts with a quota need their usage read.
                    let limited: Vec<i64> = a.iter().filter(|a| a.limited).map(|a| a.id).collect();
                    let over_quota = self.store.over_quota(&limited, r.size).await?;
                    (
                        pb::RecipientStatus::RecipientLocal,
                        a.into_iter().map(|a| a.address).collect(),
                        over_quota,
                        !limited.is_empty(),
                    )
                }
                Resolution::UnknownUser => (
                    pb::RecipientStatus::RecipientUnknownUser,
                    Vec::new(),
                    false,
                    false,
                ),
                Resolution::NotLocal => (
                    pb::RecipientStatus::RecipientNotLocal,
                    Vec::new(),
                    false,
                    false,
                ),
            };
        let label = match status {
            pb::RecipientStatus::RecipientLocal => "local",
            pb::RecipientStatus::RecipientUnknownUser => "unknown_user",
            _ => "not_local",
        };
        self.store
            .metrics
            .recipient_checks
            .get_or_create(&StatusLabel { status: label })
            .inc();
        Ok(Response::new(pb::ResolveRecipientResponse {
            status: status as i32,
            accounts,
            over_quota,
            quota_limited,
        }))
    }

    async fn deliver(
        &self,
        request: Request<pb::DeliverRequest>,
    ) -> Result<Response<pb::DeliverResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        let results = self.store.deliver(r.deliveries).await?;
        Ok(Response::new(pb::DeliverResponse { results }))
    }

    async fn list_mailboxes(
        &self,
        request: Request<pb::ListMailboxesRequest>,
    ) -> Result<Response<pb::ListMailboxesResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        let (rows, subscribed_only) = self.store.list_mailboxes(&r.account).await?;
        Ok(Response::new(pb::ListMailboxesResponse {
            subscribed_only,
            mailboxes: rows
                .into_iter()
                .map(|m| pb::Mailbox {
                    id: m.id,
                    name: m.name,
                    special_use: m.special_use.unwrap_or_default(),
                    subscribed: m.subscribed,
                    uidvalidity: u32_of(m.uidvalidity),
                    uidnext: u32_of(m.uidnext),
                    highestmodseq: u64_of(m.highestmodseq),
                    messages: u32_of(m.messages),
                    unseen: u32_of(m.unseen),
                    size: u64_of(m.size),
                    // Only SelectMailbox counts recent messages.
                    recent: 0,
                })
                .collect(),
        }))
    }

    async fn list_messages(
        &self,
        request: Request<pb::ListMessagesRequest>,
    ) -> Result<Response<pb::ListMessagesResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        let (uidvalidity, rows) = self
            .store
            .list_messages(&r.account, &r.mailbox, r.uid_from, r.limit)
            .await?;
        Ok(Response::new(pb::ListMessagesResponse {
            uidvalidity: u32_of(uidvalidity),
            messages: rows
                .into_iter()
                .map(|m| pb::MessageSummary {
                    uid: u32_of(m.uid),
                    size: u64_of(m.size),
                    modseq: u64_of(m.modseq),
                    flags: m.flags,
                    internal_date_ms: m.internal_date.timestamp_millis(),
                    subject: m.subject.unwrap_or_default(),
                    blob_id: m.blob_id,
                })
                .collect(),
        }))
    }

    type GetBodyStream = BodyStream;

    async fn get_body(
        &self,
        request: Request<pb::GetBodyRequest>,
    ) -> Result<Response<Self::GetBodyStream>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        let stream = self
            .store
            .body(
                &r.account,
                &r.mailbox,
                r.uid,
                (r.offset, r.length),
                r.include_expunged,
                r.body_ref.as_ref(),
            )
            .await?;
        Ok(Response::new(stream))
    }

    async fn store_flags(
        &self,
        request: Request<pb::StoreFlagsRequest>,
    ) -> Result<Response<pb::StoreFlagsResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        let mode = r.mode();
        let out = self
            .store
            .store_flags(
                &r.account,
                &r.mailbox,
                r.uids.as_ref(),
                mode,
                &r.flags,
                r.unchanged_since,
            )
            .await?;
        Ok(Response::new(out))
    }

    async fn expunge(
        &self,
        request: Request<pb::ExpungeRequest>,
    ) -> Result<Response<pb::ExpungeResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        let out = self
            .store
            .expunge(&r.account, &r.mailbox, r.uids.as_ref(), r.only_deleted)
            .await?;
        Ok(Response::new(out))
    }

    async fn acquire_lease(
        &self,
        request: Request<pb::AcquireLeaseRequest>,
    ) -> Result<Response<pb::AcquireLeaseResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        let lease = self
            .store
            .acquire_lease(&r.account, &r.resource, &r.holder, r.ttl_seconds)
            .await?;
        Ok(Response::new(pb::AcquireLeaseResponse {
            acquired: lease.is_some(),
            lease_id: lease.unwrap_or_default(),
        }))
    }

    async fn renew_lease(
        &self,
        request: Request<pb::RenewLeaseRequest>,
    ) -> Result<Response<pb::RenewLeaseResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        let renewed = self
            .store
            .renew_lease(&r.account, &r.resource, &r.lease_id, r.ttl_seconds)
            .await?;
        Ok(Response::new(pb::RenewLeaseResponse { renewed }))
    }

    async fn release_lease(
        &self,
        request: Request<pb::ReleaseLeaseRequest>,
    ) -> Result<Response<pb::ReleaseLeaseResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        self.store
            .release_lease(&r.account, &r.resource, &r.lease_id)
            .await?;
        Ok(Response::new(pb::ReleaseLeaseResponse {}))
    }

    async fn open_maildrop(
        &self,
        request: Request<pb::OpenMaildropRequest>,
    ) -> Result<Response<pb::Maildrop>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        let opened = self
            .store
            .open_maildrop(
                &r.username,
                &r.password,
                &r.remote_ip,
                &r.holder,
                r.ttl_seconds,
            )
            .await?;
        let label = match &opened {
            Opened::Ok { .. } | Opened::InUse { .. } => "ok",
            Opened::Failed => "failed",
            Opened::Locked => "locked",
        };
        self.store
            .metrics
            .auth
            .get_or_create(&StatusLabel { status: label })
            .inc();
        if opened == Opened::Failed {
            tracing::info!(remote_ip = %r.remote_ip, protocol = "pop3", "Authentication failed.");
        }
        Ok(Response::new(match opened {
            Opened::Ok { address, snapshot } => maildrop_response(address, Some(snapshot)),
            Opened::InUse { address } => maildrop_response(address, None),
            Opened::Failed => pb::Maildrop::default(),
            Opened::Locked => pb::Maildrop {
                locked: true,
                ..Default::default()
            },
        }))
    }

    async fn lock_maildrop(
        &self,
        request: Request<pb::LockMaildropRequest>,
    ) -> Result<Response<pb::Maildrop>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        let snapshot = self
            .store
            .lock_maildrop(&r.account, &r.holder, r.ttl_seconds)
            .await?;
        Ok(Response::new(maildrop_response(r.account, snapshot)))
    }

    async fn close_maildrop(
        &self,
        request: Request<pb::CloseMaildropRequest>,
    ) -> Result<Response<pb::CloseMaildropResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        let expunged = self
            .store
            .close_maildrop(&r.account, &r.lease_id, r.expunge.as_ref(), r.seen.as_ref())
            .await?;
        Ok(Response::new(pb::CloseMaildropResponse { expunged }))
    }

    // ---- IMAP operations (crate::mailboxes, fetch, append, copy, search) ----

    async fn create_mailbox(
        &self,
        request: Request<pb::CreateMailboxRequest>,
    ) -> Result<Response<pb::Mailbox>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        let row = self
            .store
            .create_mailbox(&r.account, &r.name, &r.special_use)
            .await?;
        Ok(Response::new(crate::mailboxes::mailbox_pb(row)))
    }

    async fn delete_mailbox(
        &self,
        request: Request<pb::DeleteMailboxRequest>,
    ) -> Result<Response<pb::DeleteMailboxResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        self.store.delete_mailbox(&r.account, &r.name).await?;
        Ok(Response::new(pb::DeleteMailboxResponse {}))
    }

    async fn rename_mailbox(
        &self,
        request: Request<pb::RenameMailboxRequest>,
    ) -> Result<Response<pb::RenameMailboxResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        self.store
            .rename_mailbox(&r.account, &r.from, &r.to)
            .await?;
        Ok(Response::new(pb::RenameMailboxResponse {}))
    }

    async fn subscribe_mailbox(
        &self,
        request: Request<pb::SubscribeMailboxRequest>,
    ) -> Result<Response<pb::SubscribeMailboxResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        self.store
            .subscribe_mailbox(&r.account, &r.name, r.subscribed)
            .await?;
        Ok(Response::new(pb::SubscribeMailboxResponse {}))
    }

    async fn select_mailbox(
        &self,
        request: Request<pb::SelectMailboxRequest>,
    ) -> Result<Response<pb::SelectMailboxResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        let out = self
            .store
            .select_mailbox(
                &r.account,
                &r.mailbox,
                r.changed_since,
                r.uid_from,
                r.limit,
                r.claim_recent,
            )
            .await?;
        Ok(Response::new(out))
    }

    async fn fetch_messages(
        &self,
        request: Request<pb::FetchMessagesRequest>,
    ) -> Result<Response<pb::FetchMessagesResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        let out = self
            .store
            .fetch_messages(
                &r.account,
                &r.mailbox,
                r.uids.as_ref(),
                r.with_meta,
                r.with_header,
            )
            .await?;
        Ok(Response::new(out))
    }

    async fn append_message(
        &self,
        request: Request<pb::AppendMessageRequest>,
    ) -> Result<Response<pb::AppendMessageResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        let out = self
            .store
            .append_message(&r.account, &r.mailbox, &r.flags, r.internal_date_ms, r.data)
            .await?;
        Ok(Response::new(out))
    }

    async fn append_message_stream(
        &self,
        request: Request<tonic::Streaming<pb::AppendStreamRequest>>,
    ) -> Result<Response<pb::AppendMessageResponse>, Status> {
        use futures::StreamExt;
        self.authorize(&request)?;
        let mut stream = request.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty append stream"))?;
        let start = first
            .start
            .ok_or_else(|| Status::invalid_argument("the first message must carry start"))?;
        // The body ends at the message marked `commit`; a stream that ends
        // before it is an abandoned upload (the call runs to its end even
        // when the client goes away, see `detach`), never a complete body.
        let first_commit = first.commit;
        let rest =
            futures::stream::unfold((stream, first_commit), |(mut stream, done)| async move {
                if done {
                    return None;
                }
                match stream.message().await {
                    Ok(Some(m)) => Some((Ok(m.data), (stream, m.commit))),
                    Ok(None) => Some((
                        Err(Status::cancelled("the append stream ended without commit")),
                        (stream, true),
                    )),
                    Err(status) => Some((Err(status), (stream, true))),
                }
            });
        let chunks =
            futures::stream::iter((!first.data.is_empty()).then_some(Ok::<_, Status>(first.data)))
                .chain(rest);
        let out = self
            .store
            .append_stream(start, self.max_append, Box::pin(chunks))
            .await?;
        Ok(Response::new(out))
    }

    async fn copy_messages(
        &self,
        request: Request<pb::CopyMessagesRequest>,
    ) -> Result<Response<pb::CopyMessagesResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        let out = self
            .store
            .copy_messages(&r.account, &r.mailbox, r.uids.as_ref(), &r.target, r.r#move)
            .await?;
        Ok(Response::new(out))
    }

    async fn search_messages(
        &self,
        request: Request<pb::SearchMessagesRequest>,
    ) -> Result<Response<pb::SearchMessagesResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        let found = self
            .store
            .search_messages_with_modseqs(&r.account, &r.mailbox, r.key.as_ref())
            .await?;
        let modseqs = if r.with_modseqs {
            found.iter().map(|&(_, m)| m).collect()
        } else {
            Vec::new()
        };
        let uids = found.into_iter().map(|(u, _)| u).collect();
        Ok(Response::new(pb::SearchMessagesResponse { uids, modseqs }))
    }

    async fn get_quota(
        &self,
        request: Request<pb::GetQuotaRequest>,
    ) -> Result<Response<pb::GetQuotaResponse>, Status> {
        self.authorize(&request)?;
        let (quota, used, messages, quota_messages) =
            self.store.quota(&request.into_inner().account).await?;
        Ok(Response::new(pb::GetQuotaResponse {
            quota_bytes: u64_of(quota),
            used_bytes: u64_of(used),
            messages: u64_of(messages),
            quota_messages: u64_of(quota_messages),
        }))
    }

    async fn sort_messages(
        &self,
        request: Request<pb::SortMessagesRequest>,
    ) -> Result<Response<pb::SortMessagesResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        let uids = self
            .store
            .sort_messages(&r.account, &r.mailbox, r.key.as_ref(), &r.criteria)
            .await?;
        Ok(Response::new(pb::SortMessagesResponse { uids }))
    }

    async fn thread_messages(
        &self,
        request: Request<pb::ThreadMessagesRequest>,
    ) -> Result<Response<pb::ThreadMessagesResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        let algorithm = r.algorithm();
        let nodes = self
            .store
            .thread_messages(&r.account, &r.mailbox, r.key.as_ref(), algorithm)
            .await?;
        Ok(Response::new(pb::ThreadMessagesResponse { nodes }))
    }
}

fn account_pb(a: crate::store::AccountRow) -> pb::Account {
    pb::Account {
        address: a.address,
        quota_bytes: u64_of(a.quota_bytes),
        used_bytes: u64_of(a.used_bytes),
        quota_messages: u64_of(a.quota_messages),
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn add_domain(
        &self,
        request: Request<pb::AddDomainRequest>,
    ) -> Result<Response<pb::Domain>, Status> {
        self.authorize(&request)?;
        let name = self.store.add_domain(&request.into_inner().name).await?;
        // The DKIM key is made now so `domain dns` is stable from the start;
        // failing here is harmless (it is created on first use instead).
        if let Err(error) = self.store.dkim_key(&name).await {
            tracing::warn!(%error, domain = %name, "Could not create the DKIM key yet.");
        }
        Ok(Response::new(pb::Domain { name }))
    }

    async fn list_domains(
        &self,
        request: Request<pb::ListDomainsRequest>,
    ) -> Result<Response<pb::ListDomainsResponse>, Status> {
        self.authorize(&request)?;
        let domains = self.store.list_domains().await?;
        Ok(Response::new(pb::ListDomainsResponse {
            domains: domains
                .into_iter()
                .map(|name| pb::Domain { name })
                .collect(),
        }))
    }

    async fn add_account(
        &self,
        request: Request<pb::AddAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        let a = self
            .store
            .add_account(&r.address, &r.password, r.quota_bytes, r.quota_messages)
            .await?;
        Ok(Response::new(account_pb(a)))
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        self.authorize(&request)?;
        let rows = self
            .store
            .list_accounts(&request.into_inner().domain)
            .await?;
        Ok(Response::new(pb::ListAccountsResponse {
            accounts: rows.into_iter().map(account_pb).collect(),
        }))
    }

    async fn set_password(
        &self,
        request: Request<pb::SetPasswordRequest>,
    ) -> Result<Response<pb::SetPasswordResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        self.store.set_password(&r.address, &r.password).await?;
        Ok(Response::new(pb::SetPasswordResponse {}))
    }

    async fn remove_account(
        &self,
        request: Request<pb::RemoveAccountRequest>,
    ) -> Result<Response<pb::RemoveAccountResponse>, Status> {
        self.authorize(&request)?;
        self.store
            .remove_account(&request.into_inner().address)
            .await?;
        Ok(Response::new(pb::RemoveAccountResponse {}))
    }

    async fn add_alias(
        &self,
        request: Request<pb::AddAliasRequest>,
    ) -> Result<Response<pb::Alias>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        let (address, targets) = self.store.add_alias(&r.address, &r.targets).await?;
        Ok(Response::new(pb::Alias { address, targets }))
    }

    async fn list_aliases(
        &self,
        request: Request<pb::ListAliasesRequest>,
    ) -> Result<Response<pb::ListAliasesResponse>, Status> {
        self.authorize(&request)?;
        let rows = self
            .store
            .list_aliases(&request.into_inner().domain)
            .await?;
        Ok(Response::new(pb::ListAliasesResponse {
            aliases: rows
                .into_iter()
                .map(|(address, targets)| pb::Alias { address, targets })
                .collect(),
        }))
    }

    async fn remove_alias(
        &self,
        request: Request<pb::RemoveAliasRequest>,
    ) -> Result<Response<pb::RemoveAliasResponse>, Status> {
        self.authorize(&request)?;
        self.store
            .remove_alias(&request.into_inner().address)
            .await?;
        Ok(Response::new(pb::RemoveAliasResponse {}))
    }

    // Deferred-job index and DNS records: see `crate::queue_index`.
    async fn list_queue(
        &self,
        request: Request<pb::ListQueueRequest>,
    ) -> Result<Response<pb::ListQueueResponse>, Status> {
        self.authorize(&request)?;
        let r = crate::queue_index::admin::list(&self.store, request.into_inner()).await?;
        Ok(Response::new(r))
    }

    async fn show_queue(
        &self,
        request: Request<pb::ShowQueueRequest>,
    ) -> Result<Response<pb::QueueEntry>, Status> {
        self.authorize(&request)?;
        let r = crate::queue_index::admin::show(&self.store, request.into_inner()).await?;
        Ok(Response::new(r))
    }

    async fn retry_queue(
        &self,
        request: Request<pb::RetryQueueRequest>,
    ) -> Result<Response<pb::RetryQueueResponse>, Status> {
        self.authorize(&request)?;
        let r = crate::queue_index::admin::retry(&self.store, request.into_inner()).await?;
        Ok(Response::new(r))
    }

    async fn delete_queue(
        &self,
        request: Request<pb::DeleteQueueRequest>,
    ) -> Result<Response<pb::DeleteQueueResponse>, Status> {
        self.authorize(&request)?;
        let r = crate::queue_index::admin::delete(&self.store, request.into_inner()).await?;
        Ok(Response::new(r))
    }

    async fn domain_dns(
        &self,
        request: Request<pb::DomainDnsRequest>,
    ) -> Result<Response<pb::DomainDnsResponse>, Status> {
        self.authorize(&request)?;
        let r = crate::queue_index::admin::domain_dns(&self.store, request.into_inner()).await?;
        Ok(Response::new(r))
    }
}
