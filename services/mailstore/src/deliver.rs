//! Deliver: a batch of deliveries stored in one Postgres transaction
//! (DESIGN.md, durability contract step 3).
//!
//! Before the transaction: each distinct body not yet known is streamed
//! from object storage and analysed once as it goes by (its metadata is
//! shared by every recipient; the body is never held whole), and each distinct recipient is resolved. In the transaction:
//! idempotency keys are inserted with `ON CONFLICT DO NOTHING RETURNING`
//! (keys not returned are duplicates), the target inboxes and their accounts
//! are locked once each in id order, UIDs are allocated per inbox with one
//! UPDATE, and the message rows are inserted with one UNNEST INSERT. A hot
//! mailbox thus costs one transaction per batch.
//!
//! Which mailbox of an account a copy goes to is [`target`]'s decision
//! alone: INBOX, or Junk for mail rspamd marked as spam.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use futures::StreamExt;
use mailfleet_mime::Analyzer;
use mailfleet_proto::v1::{Delivery, DeliveryResult, DeliveryStatus};

use crate::append::finish_analysis;
use crate::error::{Result, StoreError};
use crate::metrics::StatusLabel;
use crate::store::{Resolution, Store};

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
        DeliveryStatus::Unspecified => "unspecified",
    }
}

/// Where a delivered copy goes in each target account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Inbox,
    /// The account's `\Junk` mailbox, created (as "Junk") when missing.
    Junk,
}

/// The mailbox for `delivery`: Junk when rspamd marked it as spam and
/// `spam_junk` (MAILFLEET_SPAM_JUNK) allows, INBOX otherwise. The one place
/// this is decided, so a user's Sieve script (fileinto, keep) can take
/// precedence here.
pub fn target(delivery: &Delivery, spam_junk: bool) -> Target {
    if delivery.spam && spam_junk {
        Target::Junk
    } else {
        Target::Inbox
    }
}

/// One planned copy of a message into a mailbox.
struct Placement {
    item: usize,
    inbox: i64,
    size: i64,
}

/// A mailbox locked for delivery: (mailbox, account, is INBOX, is
/// special-use \Junk, quota_bytes, used_bytes, quota_messages, messages
/// held).
type Quotas = (i64, i64, bool, bool, i64, i64, i64, i64);

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
        for (item, (status, detail)) in items.iter().zip(statuses) {
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
            });
        }
        Ok(results)
    }

    async fn deliver_inner(&self, items: &[Delivery]) -> Result<Vec<(DeliveryStatus, String)>> {
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
        let mut status: Vec<Option<(DeliveryStatus, String)>> = vec![None; items.len()];

        // Bodies: known ones from the blobs table, new ones read and analysed.
        let blob_sizes = self.ensure_blobs(items).await?;
        // Recipients: each distinct one resolved once.
        let mut resolved: HashMap<&str, Resolution> = HashMap::new();
        for d in items {
            if !resolved.contains_key(d.recipient.as_str()) {
                let r = self.resolve(&d.recipient).await?;
                resolved.insert(d.recipient.as_str(), r);
            }
        }
        let mut candidates = Vec::new();
        for (i, d) in items.iter().enumerate() {
            let Some(&blob_size) = blob_sizes.get(d.blob_id.as_str()) else {
                status[i] = Some((
                    DeliveryStatus::DeliveryTemporaryFailure,
                    "message body not found in object storage".into(),
                ));
                continue;
            };
            match resolved.get(d.recipient.as_str()) {
                Some(Resolution::Local(accounts)) if !accounts.is_empty() => candidates.push((
                    i,
                    blob_size,
                    accounts.iter().map(|a| a.id).collect::<Vec<_>>(),
                )),
                _ => {
                    status[i] = Some((
                        DeliveryStatus::DeliveryUnknownRecipient,
                        format!("no mailbox for {}", d.recipient),
                    ))
                }
            }
        }

        if !candidates.is_empty() {
            self.store_batch(items, &candidates, &mut status).await?;
        }
        Ok(status
            .into_iter()
            .map(|s| {
                s.unwrap_or((
                    DeliveryStatus::DeliveryTemporaryFailure,
                    "not processed".into(),
                ))
            })
            .collect())
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
        candidates: &[(usize, i64, Vec<i64>)],
        status: &mut [Option<(DeliveryStatus, String)>],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;

        // 1. Idempotency keys: inserted, never checked first.
        // Sorted, so two batches sharing keys wait on each other instead of deadlocking.
        let mut keys: Vec<&str> = candidates
            .iter()
            .map(|c| items[c.0].idempotency_key.as_str())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let inserted: Vec<(String,)> = sqlx::query_as(
            "INSERT INTO deliveries (idempotency_key) SELECT k FROM UNNEST($1::text[]) WITH ORDINALITY AS v(k, i) \
             ORDER BY i ON CONFLICT DO NOTHING RETURNING idempotency_key",
        )
        .bind(&keys)
        .fetch_all(&mut *tx)
        .await?;
        let mut fresh: HashSet<String> = inserted.into_iter().map(|r| r.0).collect();
        let mut new_items = Vec::new();
        for c in candidates {
            // A key repeated within the batch is new only the first time.
            if fresh.remove(&items[c.0].idempotency_key) {
                new_items.push(c);
            } else {
                status[c.0] = Some((
                    DeliveryStatus::DeliveryDuplicate,
                    "already delivered".into(),
                ));
            }
        }
        if new_items.is_empty() {
            tx.commit().await?;
            return Ok(());
        }

        // 2. Lock each target mailbox and its account once, in id order.
        let mut account_ids: Vec<i64> =
            new_items.iter().flat_map(|c| c.2.iter().copied()).collect();
        account_ids.sort_unstable();
        account_ids.dedup();
        let mut junk_accounts: Vec<i64> = new_items
            .iter()
            .filter(|c| target(&items[c.0], self.spam_junk) == Target::Junk)
            .flat_map(|c| c.2.iter().copied())
            .collect();
        junk_accounts.sort_unstable();
        junk_accounts.dedup();
        if !junk_accounts.is_empty() {
            create_missing_junk(&mut tx, &junk_accounts).await?;
        }
        let locked: Vec<Quotas> = sqlx::query_as(
            "SELECT m.id, m.account_id, m.name = 'INBOX', COALESCE(m.special_use = '\\Junk', false), \
                    a.quota_bytes, a.used_bytes, a.quota_messages, \
                    (SELECT COALESCE(sum(x.message_count), 0) FROM mailboxes x WHERE x.account_id = a.id)::int8 \
             FROM mailboxes m JOIN accounts a ON a.id = m.account_id \
             WHERE m.account_id = ANY($1) AND (m.name = 'INBOX' \
                OR (m.account_id = ANY($2) AND (m.special_use = '\\Junk' OR m.name = 'Junk'))) \
             ORDER BY m.id FOR UPDATE",
        )
        .bind(&account_ids)
        .bind(&junk_accounts)
        .fetch_all(&mut *tx)
        .await?;
        // account -> (inbox, quota, used so far including this batch,
        // message quota, messages so far including this batch)
        let mut inbox_of: HashMap<i64, (i64, i64, i64, i64, i64)> = HashMap::new();
        // account -> (Junk mailbox, whether it has the special-use)
        let mut junk_of: HashMap<i64, (i64, bool)> = HashMap::new();
        for (m, a, inbox, special, q, u, qm, n) in locked {
            if inbox {
                inbox_of.insert(a, (m, q, u, qm, n));
            } else {
                // The special-use one wins over a plain "Junk".
                let entry = junk_of.entry(a).or_insert((m, special));
                if special && !entry.1 {
                    *entry = (m, special);
                }
            }
        }

        // 3. Plan the copies: all targets of an item or none.
        let mut copies: Vec<Placement> = Vec::new();
        let mut released: Vec<&str> = Vec::new();
        for (i, blob_size, accounts) in new_items {
            let d = &items[*i];
            // Every delivery over SMTP has an envelope sender (maybe null).
            let rp = clean_return_path(&d.return_path);
            let size = blob_size + return_path_line(Some(&rp)).len() as i64;
            let mut outcome = None;
            for a in accounts {
                match inbox_of.get(a) {
                    None => {
                        outcome = Some((
                            DeliveryStatus::DeliveryUnknownRecipient,
                            format!("no mailbox for {}", d.recipient),
                        ));
                        break;
                    }
                    Some(&(_, quota, used, _, _)) if quota > 0 && used + size > quota => {
                        outcome = Some((DeliveryStatus::DeliveryOverQuota, "mailbox full".into()));
                        break;
                    }
                    Some(&(_, _, _, most, held)) if most > 0 && held >= most => {
                        outcome = Some((
                            DeliveryStatus::DeliveryOverQuota,
                            "mailbox full (message count)".into(),
                        ));
                        break;
                    }
                    Some(_) => {}
                }
            }
            if let Some(o) = outcome {
                status[*i] = Some(o);
                released.push(d.idempotency_key.as_str());
                continue;
            }
            let to = target(d, self.spam_junk);
            for a in accounts {
                if let Some(entry) = inbox_of.get_mut(a) {
                    entry.2 += size;
                    entry.4 += 1;
                    let mailbox = match (to, junk_of.get(a)) {
                        (Target::Junk, Some(&(junk, _))) => junk,
                        _ => entry.0,
                    };
                    copies.push(Placement {
                        item: *i,
                        inbox: mailbox,
                        size,
                    });
                }
            }
            status[*i] = Some((DeliveryStatus::DeliveryStored, String::new()));
        }
        if !released.is_empty() {
            // Not stored, so a later retry must not read as a duplicate.
            sqlx::query("DELETE FROM deliveries WHERE idempotency_key = ANY($1)")
                .bind(&released)
                .execute(&mut *tx)
                .await?;
        }
        if copies.is_empty() {
            tx.commit().await?;
            return Ok(());
        }

        // 4. UIDs: one UPDATE for every inbox of the batch.
        let mut per_inbox: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        for c in &copies {
            let e = per_inbox.entry(c.inbox).or_default();
            e.0 += 1;
            e.1 += c.size;
        }
        let inbox_ids: Vec<i64> = per_inbox.keys().copied().collect();
        let counts: Vec<i64> = per_inbox.values().map(|v| v.0).collect();
        let bytes: Vec<i64> = per_inbox.values().map(|v| v.1).collect();
        let allocated: Vec<(i64, i64, i64)> = sqlx::query_as(
            "UPDATE mailboxes m SET uidnext = m.uidnext + v.n, highestmodseq = m.highestmodseq + 1, \
                    message_count = m.message_count + v.n, unseen_count = m.unseen_count + v.n, \
                    total_size = m.total_size + v.bytes \
             FROM UNNEST($1::int8[], $2::int8[], $3::int8[]) AS v(id, n, bytes) \
             WHERE m.id = v.id \
             RETURNING m.id, m.uidnext - v.n, m.highestmodseq",
        )
        .bind(&inbox_ids)
        .bind(&counts)
        .bind(&bytes)
        .fetch_all(&mut *tx)
        .await?;
        // inbox -> (next uid to hand out, modseq)
        let mut next: HashMap<i64, (i64, i64)> = allocated
            .into_iter()
            .map(|(m, uid, ms)| (m, (uid, ms)))
            .collect();

        // 5. The message rows, in one INSERT.
        let n = copies.len();
        let (mut mailbox_col, mut uid_col, mut modseq_col) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut date_col, mut rp_col, mut size_col, mut blob_col) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let now = chrono::Utc::now();
        for c in &copies {
            let d = &items[c.item];
            let Some(slot) = next.get_mut(&c.inbox) else {
                return Err(StoreError::Internal(
                    "inbox vanished during delivery".into(),
                ));
            };
            mailbox_col.push(c.inbox);
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
        }
        sqlx::query(
            "INSERT INTO messages (mailbox_id, uid, modseq, internal_date, return_path, size, blob_id) \
             SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::timestamptz[], $5::text[], $6::int8[], $7::text[])",
        )
        .bind(&mailbox_col)
        .bind(&uid_col)
        .bind(&modseq_col)
        .bind(&date_col)
        .bind(&rp_col)
        .bind(&size_col)
        .bind(&blob_col)
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
        self.events.changed(inbox_ids);
        Ok(())
    }
}

/// Gives each of `accounts` without a `\Junk` mailbox one named "Junk"
/// (subscribed), as Dovecot's autocreate does. An account with a plain
/// mailbox of that name keeps it, and delivery uses it.
async fn create_missing_junk(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    accounts: &[i64],
) -> Result<()> {
    sqlx::query(
        "WITH boxes AS (INSERT INTO mailboxes (account_id, name, special_use, uidvalidity) \
            SELECT a, 'Junk', '\\Junk', LEAST(4294967295, GREATEST( \
                (extract(epoch FROM now())::bigint % 4294967296), \
                COALESCE((SELECT max(uidvalidity) + 1 FROM mailboxes WHERE account_id = a), 1))) \
            FROM UNNEST($1::int8[]) AS v(a) \
            WHERE NOT EXISTS (SELECT 1 FROM mailboxes x WHERE x.account_id = a AND x.special_use = '\\Junk') \
            ON CONFLICT DO NOTHING RETURNING account_id, name) \
         INSERT INTO subscriptions (account_id, name) SELECT account_id, name FROM boxes ON CONFLICT DO NOTHING",
    )
    .bind(accounts)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
