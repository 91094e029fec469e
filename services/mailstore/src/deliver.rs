//! Deliver: a batch of deliveries stored in one Postgres transaction
//! (DESIGN.md, durability contract step 3).
//!
//! Before the transaction: each distinct body not yet known is streamed
//! from object storage and analysed once as it goes by (its metadata is
//! shared by every recipient; the body is never held whole), and the distinct
//! recipients are resolved with one query. In the transaction: the
//! idempotency keys are claimed, one row per job (`idempotency`: new
//! groups inserted with `ON CONFLICT DO NOTHING`, the others locked and
//! read; keys already listed are duplicates), the target inboxes and their accounts
//! are locked once each in id order, UIDs are allocated per inbox with one
//! UPDATE, and the message rows are inserted with one UNNEST INSERT. A hot
//! mailbox thus costs one transaction per batch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use futures::StreamExt;
use mailfleet_mime::Analyzer;
use mailfleet_proto::v1::{Delivery, DeliveryResult, DeliveryStatus, SieveOutbound};
use prost::Message;

use crate::append::finish_analysis;
use crate::error::{Result, StoreError};
use crate::idempotency;
use crate::metrics::StatusLabel;
use crate::sieve::run::{Copy, Decision, Subject};
use crate::store::{LocalAccount, Resolution, Store};

/// Bodies fetched and analysed concurrently when a batch brings new ones.
const BLOB_FETCH_CONCURRENCY: usize = 8;

/// The Return-Path line served before the stored bytes (`<>` for the null sender).
pub fn return_path_line(return_path: Option<&str>) -> Vec<u8> {
    match return_path {
        Some(rp) => format!("Return-Path: <{rp}>\r\n").into_bytes(),
        None => Vec::new(),
    }
}

/// The envelope sender as stored: no brackets, no line breaks or controls.
fn clean_return_path(raw: &str) -> String {
    let t = raw.trim();
    let t = t
        .strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(t);
    t.chars().filter(|c| !c.is_control()).collect()
}

fn valid_blob_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn status_name(s: DeliveryStatus) -> &'static str {
    match s {
        DeliveryStatus::DeliveryStored => "stored",
        DeliveryStatus::DeliveryDuplicate => "duplicate",
        DeliveryStatus::DeliveryUnknownRecipient => "unknown_recipient",
        DeliveryStatus::DeliveryTemporaryFailure => "temporary_failure",
        DeliveryStatus::DeliveryOverQuota => "over_quota",
        DeliveryStatus::DeliveryRejected => "rejected",
        DeliveryStatus::Unspecified => "unspecified",
    }
}

/// One planned copy of a message into a mailbox.
struct Placement {
    item: usize,
    mailbox: i64,
    size: i64,
    flags: Vec<String>,
}

/// The result of one delivery before it becomes a `DeliveryResult`.
type Status = (DeliveryStatus, String, Vec<SieveOutbound>);

/// One account's copies of a message: (mailbox id, flags) each.
type Targets = Vec<(i64, Vec<String>)>;

/// A delivery that got past resolution: (item, body size, its accounts).
type Candidate = (usize, i64, Vec<LocalAccount>);

/// Where a copy for `account` goes when no script says otherwise.
fn inbox_only() -> Vec<Copy> {
    vec![Copy {
        mailbox: "INBOX".into(),
        flags: Vec::new(),
        create: false,
    }]
}

/// An inbox locked for delivery: (mailbox, account, quota_bytes,
/// used_bytes, quota_messages, messages held).
type Quotas = (i64, i64, i64, i64, i64, i64);

impl Store {
    pub async fn deliver(&self, items: Vec<Delivery>) -> Result<Vec<DeliveryResult>> {
        let started = Instant::now();
        let outcome = self.deliver_inner(&items).await;
        self.metrics.batch_size.observe(items.len() as f64);
        self.metrics
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
        let statuses = outcome?;
        let mut results = Vec::with_capacity(items.len());
        for (item, (status, detail, outbound)) in items.iter().zip(statuses) {
            self.metrics
                .deliveries
                .get_or_create(&StatusLabel {
                    status: status_name(status),
                })
                .inc();
            results.push(DeliveryResult {
                idempotency_key: item.idempotency_key.clone(),
                status: status as i32,
                detail,
                outbound,
            });
        }
        Ok(results)
    }

    async fn deliver_inner(&self, items: &[Delivery]) -> Result<Vec<Status>> {
        for d in items {
            if d.idempotency_key.is_empty() || d.idempotency_key.len() > 1024 {
                return Err(StoreError::InvalidArgument(
                    "every delivery needs an idempotency key of at most 1024 bytes".into(),
                ));
            }
            if !valid_blob_id(&d.blob_id) {
                return Err(StoreError::InvalidArgument(format!(
                    "blob id {:?} is not a lower-case sha256 hex digest",
                    d.blob_id
                )));
            }
        }
        let mut status: Vec<Option<Status>> = vec![None; items.len()];

        // Bodies: known ones from the blobs table, new ones read and analysed.
        let blob_sizes = self.ensure_blobs(items).await?;
        // Recipients: each distinct one resolved once, all in one query.
        let mut distinct: Vec<&str> = items.iter().map(|d| d.recipient.as_str()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        let resolved: HashMap<&str, Resolution> = distinct
            .iter()
            .copied()
            .zip(self.resolve_many(&distinct).await?)
            .collect();
        let mut candidates = Vec::new();
        for (i, d) in items.iter().enumerate() {
            let Some(&blob_size) = blob_sizes.get(d.blob_id.as_str()) else {
                status[i] = Some((
                    DeliveryStatus::DeliveryTemporaryFailure,
                    "message body not found in object storage".into(),
                    Vec::new(),
                ));
                continue;
            };
            match resolved.get(d.recipient.as_str()) {
                Some(Resolution::Local(accounts)) if !accounts.is_empty() => {
                    candidates.push((i, blob_size, accounts.clone()))
                }
                _ => {
                    status[i] = Some((
                        DeliveryStatus::DeliveryUnknownRecipient,
                        format!("no mailbox for {}", d.recipient),
                        Vec::new(),
                    ))
                }
            }
        }

        if !candidates.is_empty() {
            let decisions = self.run_scripts(items, &candidates).await?;
            self.store_batch(items, &candidates, &decisions, &mut status)
                .await?;
        }
        Ok(status
            .into_iter()
            .map(|s| {
                s.unwrap_or((
                    DeliveryStatus::DeliveryTemporaryFailure,
                    "not processed".into(),
                    Vec::new(),
                ))
            })
            .collect())
    }

    /// The recipients' Sieve scripts on every copy, and the mailboxes they
    /// create (before the transaction: an empty mailbox left by a failed
    /// batch is harmless, and CREATE's rules apply unchanged).
    async fn run_scripts(
        &self,
        items: &[Delivery],
        candidates: &[Candidate],
    ) -> Result<HashMap<(usize, i64), Decision>> {
        let subjects: Vec<Subject<'_>> = candidates
            .iter()
            .flat_map(|(i, size, accounts)| {
                let d = &items[*i];
                accounts.iter().map(move |a| Subject {
                    item: *i,
                    account_id: a.id,
                    account: &a.address,
                    blob_id: &d.blob_id,
                    blob_size: u64::try_from(*size).unwrap_or(0),
                    return_path: &d.return_path,
                    recipient: &d.recipient,
                })
            })
            .collect();
        let mut decisions = self.sieve_decisions(&subjects).await?;
        if self.spam_junk {
            self.spam_into_junk(items, &subjects, &mut decisions)
                .await?;
        }
        for s in &subjects {
            let Some(d) = decisions.get(&(s.item, s.account_id)) else {
                continue;
            };
            for c in d.copies.iter().filter(|c| c.create && c.mailbox != "INBOX") {
                match self.create_mailbox(s.account, &c.mailbox, "").await {
                    Ok(_) | Err(StoreError::AlreadyExists(_)) => {}
                    Err(StoreError::InvalidArgument(reason)) => {
                        tracing::info!(account = s.account, mailbox = %c.mailbox, %reason, "Sieve fileinto :create of an invalid name; keeping in INBOX.");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(decisions)
    }

    /// A copy rspamd marked as spam (`Delivery.spam`) goes to the account's
    /// `\Junk` mailbox instead of INBOX when no script decided where it
    /// goes: no active script, or a script whose only keep is the implicit
    /// one. An explicit `keep` or `fileinto` is the user's choice and wins.
    async fn spam_into_junk(
        &self,
        items: &[Delivery],
        subjects: &[Subject<'_>],
        decisions: &mut HashMap<(usize, i64), Decision>,
    ) -> Result<()> {
        let mut junk_of: HashMap<i64, String> = HashMap::new();
        for s in subjects.iter().filter(|s| items[s.item].spam) {
            let d = decisions
                .entry((s.item, s.account_id))
                .or_insert_with(|| Decision {
                    copies: inbox_only(),
                    implicit_keep: true,
                    ..Decision::default()
                });
            if !d.implicit_keep {
                continue;
            }
            let junk = match junk_of.get(&s.account_id) {
                Some(name) => name.clone(),
                None => {
                    let name = self.junk_mailbox(s.account_id, s.account).await?;
                    junk_of.insert(s.account_id, name.clone());
                    name
                }
            };
            for c in d.copies.iter_mut().filter(|c| c.mailbox == "INBOX") {
                c.mailbox = junk.clone();
            }
        }
        Ok(())
    }

    /// The name of the account's `\Junk` mailbox (a plain "Junk" will do);
    /// one named "Junk" with the special-use, subscribed, is created when it
    /// has neither, as Dovecot's autocreate does. Before the delivery
    /// transaction, like the mailboxes of `fileinto :create`.
    async fn junk_mailbox(&self, account_id: i64, account: &str) -> Result<String> {
        let found: Option<(String,)> = sqlx::query_as(
            "SELECT name FROM mailboxes WHERE account_id = $1 \
               AND (special_use = '\\Junk' OR name = 'Junk') \
             ORDER BY COALESCE(special_use = '\\Junk', false) DESC, id LIMIT 1",
        )
        .bind(account_id)
        .fetch_optional(&self.pool)
        .await?;
        if let Some((name,)) = found {
            return Ok(name);
        }
        match self.create_mailbox(account, "Junk", "\\Junk").await {
            Ok(_) | Err(StoreError::AlreadyExists(_)) => {}
            Err(e) => return Err(e),
        }
        sqlx::query(
            "INSERT INTO subscriptions (account_id, name) VALUES ($1, 'Junk') ON CONFLICT DO NOTHING",
        )
        .bind(account_id)
        .execute(&self.pool)
        .await?;
        Ok("Junk".into())
    }

    /// Makes sure every body of the batch has its row (size and metadata),
    /// returning the sizes of those that exist. A body missing from object
    /// storage is left out; a storage outage fails the batch.
    async fn ensure_blobs(&self, items: &[Delivery]) -> Result<HashMap<String, i64>> {
        let ids: Vec<String> = items
            .iter()
            .map(|d| d.blob_id.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let known: Vec<(String, i64)> =
            sqlx::query_as("SELECT id, size FROM blobs WHERE id = ANY($1)")
                .bind(&ids)
                .fetch_all(&self.pool)
                .await?;
        let mut sizes: HashMap<String, i64> = known.into_iter().collect();
        let missing: Vec<String> = ids
            .into_iter()
            .filter(|id| !sizes.contains_key(id))
            .collect();
        if missing.is_empty() {
            return Ok(sizes);
        }
        let fetched: Vec<Result<Option<(String, i64, String)>>> = futures::stream::iter(missing)
            .map(|id| async move {
                let mut body = match self.blobs.stream(&id, None).await {
                    Ok(b) => b,
                    Err(e) if e.is_not_found() => return Ok(None),
                    Err(e) => return Err(StoreError::Blob(e)),
                };
                // Read as it streams, never held whole.
                let mut analyzer = Analyzer::new();
                let mut size = 0usize;
                while let Some(chunk) = body.next().await {
                    let chunk = chunk.map_err(StoreError::Blob)?;
                    size = size.saturating_add(chunk.len());
                    analyzer.update(&chunk);
                }
                let size = i64::try_from(size)
                    .map_err(|_| StoreError::Internal("body too large".into()))?;
                let meta = finish_analysis(analyzer).await?;
                Ok(Some((id, size, meta)))
            })
            .buffer_unordered(BLOB_FETCH_CONCURRENCY)
            .collect()
            .await;
        let mut new_ids = Vec::new();
        let mut new_sizes = Vec::new();
        let mut metas = Vec::new();
        for f in fetched {
            if let Some((id, size, meta)) = f? {
                new_ids.push(id);
                new_sizes.push(size);
                metas.push(meta);
            }
        }
        if !new_ids.is_empty() {
            // Content-addressed rows never change: a concurrent insert of the
            // same body is the same row.
            sqlx::query(
                "INSERT INTO blobs (id, size, meta) \
                 SELECT id, size, meta::jsonb FROM UNNEST($1::text[], $2::int8[], $3::text[]) AS v(id, size, meta) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&new_ids)
            .bind(&new_sizes)
            .bind(&metas)
            .execute(&self.pool)
            .await?;
            sizes.extend(new_ids.into_iter().zip(new_sizes));
        }
        Ok(sizes)
    }

    async fn store_batch(
        &self,
        items: &[Delivery],
        candidates: &[Candidate],
        decisions: &HashMap<(usize, i64), Decision>,
        status: &mut [Option<Status>],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;

        // 1. Idempotency keys: claimed, never checked first (one row per
        // job, see `idempotency`).
        let keys: Vec<&str> = candidates
            .iter()
            .map(|c| items[c.0].idempotency_key.as_str())
            .collect();
        let claim = idempotency::claim(&mut tx, &keys).await?;
        let mut new_items = Vec::new();
        let mut duplicates = Vec::new();
        for (c, fresh) in candidates.iter().zip(&claim.fresh) {
            if *fresh {
                new_items.push(c);
            } else {
                duplicates.push(c.0);
            }
        }
        if !duplicates.is_empty() {
            // What the scripts sent the first time goes back to the worker,
            // which may not have published it before it died.
            let dup_keys: Vec<&str> = duplicates
                .iter()
                .map(|i| items[*i].idempotency_key.as_str())
                .collect();
            let kept: Vec<(String, Option<Vec<Vec<u8>>>)> = sqlx::query_as(
                "SELECT idempotency_key, sieve_outbound FROM deliveries WHERE idempotency_key = ANY($1)",
            )
            .bind(&dup_keys)
            .fetch_all(&mut *tx)
            .await?;
            let kept: HashMap<String, Vec<SieveOutbound>> = kept
                .into_iter()
                .map(|(k, v)| {
                    let decoded = v
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|b| SieveOutbound::decode(b.as_slice()).ok())
                        .collect();
                    (k, decoded)
                })
                .collect();
            for i in duplicates {
                status[i] = Some((
                    DeliveryStatus::DeliveryDuplicate,
                    "already delivered".into(),
                    kept.get(&items[i].idempotency_key)
                        .cloned()
                        .unwrap_or_default(),
                ));
            }
        }
        if new_items.is_empty() {
            tx.commit().await?;
            return Ok(());
        }

        // 2. Lock each target inbox and its account once, in id order.
        let mut account_ids: Vec<i64> = new_items
            .iter()
            .flat_map(|c| c.2.iter().map(|a| a.id))
            .collect();
        account_ids.sort_unstable();
        account_ids.dedup();
        let locked: Vec<Quotas> = sqlx::query_as(
            "SELECT m.id, m.account_id, a.quota_bytes, a.used_bytes, a.quota_messages, \
                    (SELECT COALESCE(sum(x.message_count), 0) FROM mailboxes x WHERE x.account_id = a.id)::int8 \
             FROM mailboxes m JOIN accounts a ON a.id = m.account_id \
             WHERE m.account_id = ANY($1) AND m.name = 'INBOX' ORDER BY m.id FOR UPDATE",
        )
        .bind(&account_ids)
        .fetch_all(&mut *tx)
        .await?;
        // account -> (inbox, quota, used so far including this batch,
        // message quota, messages so far including this batch)
        let mut inbox_of: HashMap<i64, (i64, i64, i64, i64, i64)> = locked
            .into_iter()
            .map(|(m, a, q, u, qm, n)| (a, (m, q, u, qm, n)))
            .collect();
        // The other mailboxes the scripts file into, by (account, name).
        let mut other_names: Vec<&str> = decisions
            .values()
            .flat_map(|d| d.copies.iter())
            .filter(|c| c.mailbox != "INBOX")
            .map(|c| c.mailbox.as_str())
            .collect();
        other_names.sort_unstable();
        other_names.dedup();
        let mailbox_of: HashMap<(i64, String), i64> = if other_names.is_empty() {
            HashMap::new()
        } else {
            let rows: Vec<(i64, i64, String)> = sqlx::query_as(
                "SELECT id, account_id, name FROM mailboxes WHERE account_id = ANY($1) AND name = ANY($2)",
            )
            .bind(&account_ids)
            .bind(&other_names)
            .fetch_all(&mut *tx)
            .await?;
            rows.into_iter().map(|(id, a, n)| ((a, n), id)).collect()
        };

        // 3. Plan the copies: all targets of an item or none.
        let mut copies: Vec<Placement> = Vec::new();
        let mut released: Vec<&str> = Vec::new();
        let mut outbound_rows: Vec<(&str, Vec<Vec<u8>>)> = Vec::new();
        for (i, blob_size, accounts) in new_items {
            let d = &items[*i];
            // Every delivery over SMTP has an envelope sender (maybe null).
            let rp = clean_return_path(&d.return_path);
            let size = blob_size + return_path_line(Some(&rp)).len() as i64;
            // Each account's copies: where its script put them (INBOX
            // without one), a missing mailbox meaning INBOX.
            let mut planned: Vec<(i64, Targets)> = Vec::new();
            let mut outcome = None;
            let mut reject = None;
            for a in accounts {
                let Some(&(inbox, quota, used, most, held)) = inbox_of.get(&a.id) else {
                    outcome = Some((
                        DeliveryStatus::DeliveryUnknownRecipient,
                        format!("no mailbox for {}", d.recipient),
                    ));
                    break;
                };
                let decision = decisions.get(&(*i, a.id));
                let wanted = decision.map_or_else(inbox_only, |d| d.copies.clone());
                if let Some(r) = decision.and_then(|d| d.reject.clone()) {
                    reject = Some(r);
                }
                let mut targets: Targets = Vec::new();
                for c in wanted {
                    let id = if c.mailbox == "INBOX" {
                        inbox
                    } else if let Some(id) = mailbox_of.get(&(a.id, c.mailbox.clone())) {
                        *id
                    } else {
                        tracing::info!(account = %a.address, mailbox = %c.mailbox, "Sieve fileinto a mailbox that does not exist; keeping in INBOX.");
                        inbox
                    };
                    match targets.iter_mut().find(|t| t.0 == id) {
                        Some(t) => t.1.extend(c.flags),
                        None => targets.push((id, c.flags)),
                    }
                }
                let n = targets.len() as i64;
                if n > 0 && quota > 0 && used + size * n > quota {
                    outcome = Some((DeliveryStatus::DeliveryOverQuota, "mailbox full".into()));
                    break;
                }
                if n > 0 && most > 0 && held + n > most {
                    outcome = Some((
                        DeliveryStatus::DeliveryOverQuota,
                        "mailbox full (message count)".into(),
                    ));
                    break;
                }
                planned.push((a.id, targets));
            }
            if let Some((st, detail)) = outcome {
                status[*i] = Some((st, detail, Vec::new()));
                released.push(d.idempotency_key.as_str());
                continue;
            }
            let mut stored_any = false;
            for (account, targets) in planned {
                if let Some(entry) = inbox_of.get_mut(&account) {
                    for (mailbox, flags) in targets {
                        entry.2 += size;
                        entry.4 += 1;
                        stored_any = true;
                        copies.push(Placement {
                            item: *i,
                            mailbox,
                            size,
                            flags,
                        });
                    }
                }
            }
            // What leaves: redirects always, a vacation reply once per
            // (account, sender, handle) and period, decided here so a
            // retried batch never replies twice.
            let mut outbound = Vec::new();
            for a in accounts {
                let Some(decision) = decisions.get(&(*i, a.id)) else {
                    continue;
                };
                outbound.extend(decision.redirects.iter().cloned());
                if let Some(v) = &decision.vacation {
                    let due: Option<(i64,)> = sqlx::query_as(
                        "INSERT INTO sieve_vacation_sent (account_id, sender, handle) VALUES ($1, $2, $3) \
                         ON CONFLICT (account_id, sender, handle) DO UPDATE SET sent_at = now() \
                         WHERE sieve_vacation_sent.sent_at <= now() - make_interval(secs => $4) \
                         RETURNING 1::int8",
                    )
                    .bind(a.id)
                    .bind(&v.sender)
                    .bind(&v.handle)
                    .bind(v.period_secs as f64)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if due.is_some() {
                        outbound.push(v.reply.clone());
                    }
                }
            }
            if !outbound.is_empty() {
                outbound_rows.push((
                    d.idempotency_key.as_str(),
                    outbound.iter().map(|o| o.encode_to_vec()).collect(),
                ));
            }
            status[*i] = Some(match reject {
                Some(reason) if !stored_any => (DeliveryStatus::DeliveryRejected, reason, outbound),
                _ => (DeliveryStatus::DeliveryStored, String::new(), outbound),
            });
        }
        for (key, rows) in &outbound_rows {
            sqlx::query(
                "INSERT INTO deliveries (idempotency_key, sieve_outbound) VALUES ($1, $2) \
                 ON CONFLICT (idempotency_key) DO UPDATE SET sieve_outbound = EXCLUDED.sieve_outbound",
            )
            .bind(key)
            .bind(rows)
            .execute(&mut *tx)
            .await?;
        }
        // Not stored, so a later retry must not read as a duplicate.
        idempotency::settle(&mut tx, &claim, &released).await?;
        if copies.is_empty() {
            tx.commit().await?;
            return Ok(());
        }

        // 4. UIDs: one UPDATE for every mailbox of the batch.
        // mailbox -> (copies, bytes, unseen copies)
        let mut per_mailbox: BTreeMap<i64, (i64, i64, i64)> = BTreeMap::new();
        for c in &copies {
            let e = per_mailbox.entry(c.mailbox).or_default();
            e.0 += 1;
            e.1 += c.size;
            if !c.flags.iter().any(|f| f == "\\Seen") {
                e.2 += 1;
            }
        }
        let mailbox_ids: Vec<i64> = per_mailbox.keys().copied().collect();
        let counts: Vec<i64> = per_mailbox.values().map(|v| v.0).collect();
        let bytes: Vec<i64> = per_mailbox.values().map(|v| v.1).collect();
        let unseen: Vec<i64> = per_mailbox.values().map(|v| v.2).collect();
        let allocated: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
            "UPDATE mailboxes m SET uidnext = m.uidnext + v.n, highestmodseq = m.highestmodseq + 1, \
                    message_count = m.message_count + v.n, unseen_count = m.unseen_count + v.unseen, \
                    total_size = m.total_size + v.bytes \
             FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::int8[]) AS v(id, n, bytes, unseen) \
             WHERE m.id = v.id \
             RETURNING m.id, m.uidnext - v.n, m.highestmodseq, m.account_id",
        )
        .bind(&mailbox_ids)
        .bind(&counts)
        .bind(&bytes)
        .bind(&unseen)
        .fetch_all(&mut *tx)
        .await?;
        // The change events, known now: no read when they are published.
        let changes: Vec<(i64, i64, i64)> =
            allocated.iter().map(|&(m, _, ms, a)| (m, a, ms)).collect();
        // mailbox -> (next uid to hand out, modseq)
        let mut next: HashMap<i64, (i64, i64)> = allocated
            .into_iter()
            .map(|(m, uid, ms, _)| (m, (uid, ms)))
            .collect();

        // 5. The message rows, in one INSERT.
        let n = copies.len();
        let (mut mailbox_col, mut uid_col, mut modseq_col) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut date_col, mut rp_col, mut size_col, mut blob_col, mut flags_col) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let now = chrono::Utc::now();
        for c in &copies {
            let d = &items[c.item];
            let Some(slot) = next.get_mut(&c.mailbox) else {
                return Err(StoreError::Internal(
                    "mailbox vanished during delivery".into(),
                ));
            };
            mailbox_col.push(c.mailbox);
            uid_col.push(slot.0);
            modseq_col.push(slot.1);
            slot.0 += 1;
            date_col.push(if d.internal_date_ms > 0 {
                chrono::DateTime::from_timestamp_millis(d.internal_date_ms).unwrap_or(now)
            } else {
                now
            });
            rp_col.push(clean_return_path(&d.return_path));
            size_col.push(c.size);
            blob_col.push(d.blob_id.as_str());
            // Flags are IMAP atoms (checked by the Sieve step), so a space
            // separates them safely through UNNEST.
            flags_col.push(c.flags.join(" "));
        }
        sqlx::query(
            "INSERT INTO messages (mailbox_id, uid, modseq, internal_date, return_path, size, blob_id, flags) \
             SELECT m, u, ms, d, rp, sz, b, COALESCE(string_to_array(NULLIF(f, ''), ' '), '{}') \
             FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::timestamptz[], $5::text[], $6::int8[], $7::text[], $8::text[]) \
                  AS v(m, u, ms, d, rp, sz, b, f)",
        )
        .bind(&mailbox_col)
        .bind(&uid_col)
        .bind(&modseq_col)
        .bind(&date_col)
        .bind(&rp_col)
        .bind(&size_col)
        .bind(&blob_col)
        .bind(&flags_col)
        .execute(&mut *tx)
        .await?;

        // 6. Quota usage per account.
        let used: Vec<(i64, i64)> = inbox_of
            .iter()
            .map(|(a, (_, _, u, _, _))| (*a, *u))
            .collect();
        let (acc_col, used_col): (Vec<i64>, Vec<i64>) = used.into_iter().unzip();
        sqlx::query(
            "UPDATE accounts a SET used_bytes = v.used FROM UNNEST($1::int8[], $2::int8[]) AS v(id, used) WHERE a.id = v.id",
        )
        .bind(&acc_col)
        .bind(&used_col)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.events.changed_known(changes);
        Ok(())
    }
}
