//! StoreFlags: add, remove or replace flags of messages by UID, with RFC 7162
//! modseqs and UNCHANGEDSINCE. The change is planned from the kept mailbox
//! listing or from a read, and written in one statement only while the
//! mailbox's highestmodseq is what the plan saw; after two misses, or for a
//! set with `*`, under the mailbox row lock.
//!
//! Every message whose flags change gets the same new modseq (the mailbox's
//! highestmodseq + 1): RFC 7162 3.1 asks for a new value per operation, and
//! one value per call keeps the update to a single statement. `unseen_count`
//! moves with every \Seen gained or lost. Also home of the UID-set helper
//! that Expunge shares.

use mailfleet_proto::v1::{FlagUpdate, FlagsMode, StoreFlagsResponse, UidSet};

use crate::error::{Result, StoreError};
use crate::store::Store;

/// System flags in their canonical spelling (RFC 3501 2.3.2). `\Recent` is
/// not among them: a client can never set it.
pub const SYSTEM_FLAGS: &[&str] = &["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"];
pub const SEEN: &str = "\\Seen";
pub const DELETED: &str = "\\Deleted";

/// Flags accepted in one call, and the longest keyword.
const MAX_FLAGS: usize = 100;
const MAX_KEYWORD_LEN: usize = 128;
/// UID ranges accepted in one call.
const MAX_RANGES: usize = 10_000;

fn invalid(msg: impl Into<String>) -> StoreError {
    StoreError::InvalidArgument(msg.into())
}

/// Inclusive UID ranges as two parallel arrays for `UNNEST`. A bound of 0 is
/// IMAP's `*`: the highest UID in the mailbox (`max_uid`), so `5:*` on a
/// mailbox whose highest UID is 3 means `3:5` as RFC 3501 6.4.8 says.
pub(crate) fn uid_ranges(set: Option<&UidSet>, max_uid: i64) -> Result<(Vec<i64>, Vec<i64>)> {
    let ranges = set.map(|s| s.ranges.as_slice()).unwrap_or_default();
    if ranges.len() > MAX_RANGES {
        return Err(invalid(format!("at most {MAX_RANGES} UID ranges per call")));
    }
    let mut lo = Vec::with_capacity(ranges.len());
    let mut hi = Vec::with_capacity(ranges.len());
    for r in ranges {
        let bound = |v: u32| if v == 0 { max_uid } else { i64::from(v) };
        let (a, b) = (bound(r.first), bound(r.last));
        lo.push(a.min(b));
        hi.push(a.max(b));
    }
    Ok((lo, hi))
}

/// A flag in canonical form: system flags spelled as RFC 3501 does,
/// keywords as given. Rejects `\Recent`, unknown `\` flags and anything
/// that is not an IMAP atom.
pub fn canonical_flag(raw: &str) -> Result<String> {
    if let Some(known) = SYSTEM_FLAGS.iter().find(|f| f.eq_ignore_ascii_case(raw)) {
        return Ok((*known).to_owned());
    }
    if raw.starts_with('\\') {
        return Err(invalid(format!("{raw:?} is not a flag a client can store")));
    }
    let atom = raw.bytes().all(|b| {
        b.is_ascii_graphic() && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
    });
    if raw.is_empty() || raw.len() > MAX_KEYWORD_LEN || !atom {
        return Err(invalid(format!("{raw:?} is not a valid keyword")));
    }
    Ok(raw.to_owned())
}

fn has(flags: &[String], flag: &str) -> bool {
    flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
}

/// Flags compare case-insensitively (keywords too, RFC 3501 2.3.2).
fn same_set(a: &[String], b: &[String]) -> bool {
    a.iter().all(|f| has(b, f)) && b.iter().all(|f| has(a, f))
}

/// The flags after applying `mode` with `given` to `old`.
fn apply(mode: FlagsMode, old: &[String], given: &[String]) -> Vec<String> {
    let mut out: Vec<String> = match mode {
        FlagsMode::FlagsReplace => Vec::new(),
        _ => old.to_vec(),
    };
    match mode {
        FlagsMode::FlagsRemove => out.retain(|f| !has(given, f)),
        _ => {
            for f in given {
                if !has(&out, f) {
                    out.push(f.clone());
                }
            }
        }
    }
    out
}

impl Store {
    /// Locks the mailbox row and returns (id, highestmodseq).
    pub(crate) async fn lock_mailbox(
        &self,
        tx: &mut sqlx::PgConnection,
        account: &str,
        mailbox: &str,
    ) -> Result<(i64, i64)> {
        // Found and locked in one statement, on the transaction's own
        // connection (a second pooled one could deadlock the pool).
        let addr = crate::store::parse_address(account)?;
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT m.id, m.highestmodseq FROM mailboxes m JOIN accounts a ON a.id = m.account_id \
             WHERE a.address = $1 AND m.name = $2 FOR UPDATE OF m",
        )
        .bind(addr.full())
        .bind(crate::mailboxes::canonical_name(mailbox))
        .fetch_optional(&mut *tx)
        .await?;
        row.ok_or_else(|| {
            StoreError::NotFound(format!("no mailbox {mailbox:?} for {}", addr.full()))
        })
    }

    /// The highest live UID of a locked mailbox, which `*` stands for; only
    /// asked when a set holds `*`.
    pub(crate) async fn star_uid(
        tx: &mut sqlx::PgConnection,
        mailbox_id: i64,
        uids: Option<&UidSet>,
    ) -> Result<i64> {
        let has_star = uids.is_some_and(|s| s.ranges.iter().any(|r| r.first == 0 || r.last == 0));
        if !has_star {
            return Ok(0);
        }
        let (max_uid,): (Option<i64>,) = sqlx::query_as(
            "SELECT max(uid) FROM messages WHERE mailbox_id = $1 AND expunged_modseq IS NULL",
        )
        .bind(mailbox_id)
        .fetch_one(&mut *tx)
        .await?;
        Ok(max_uid.unwrap_or(0))
    }

    pub async fn store_flags(
        &self,
        account: &str,
        mailbox: &str,
        uids: Option<&UidSet>,
        mode: FlagsMode,
        flags: &[String],
        unchanged_since: u64,
    ) -> Result<StoreFlagsResponse> {
        if mode == FlagsMode::Unspecified {
            return Err(invalid("the flags mode must be add, remove or replace"));
        }
        if flags.len() > MAX_FLAGS {
            return Err(invalid(format!("at most {MAX_FLAGS} flags per call")));
        }
        let mut given: Vec<String> = Vec::with_capacity(flags.len());
        for f in flags {
            let f = canonical_flag(f)?;
            // One spelling of each flag, as the SQL of a STORE expects.
            if !has(&given, &f) {
                given.push(f);
            }
        }
        let unchanged_since = i64::try_from(unchanged_since).unwrap_or(i64::MAX);
        let has_star = uids.is_some_and(|s| s.ranges.iter().any(|r| r.first == 0 || r.last == 0));
        let addr = crate::store::parse_address(account)?;
        let (account, mailbox) = (addr.full(), crate::mailboxes::canonical_name(mailbox));
        let (account, mailbox) = (account.as_str(), mailbox.as_str());
        if !has_star {
            // First from the listing kept in memory, when there is one: the
            // write checks that the mailbox is still as that listing has
            // it. A plan that changes nothing proves nothing about a
            // listing, so it is made again from Postgres.
            // The listing itself is let go before the write, so that the
            // cache can move it along in place.
            let kept = self.mailbox_cache.peek(account, mailbox).map(|listing| {
                let rows = cached_rows(&listing, uids);
                (listing.mailbox_id, listing.highestmodseq, rows)
            });
            if let Some((mailbox_id, highest, rows)) = kept {
                let plan = FlagPlan::new(rows, mode, &given, unchanged_since, highest + 1);
                if !plan.updated.is_empty() {
                    let mut conn = self.pool.acquire().await?;
                    if write_flags(&mut conn, (mailbox_id, mailbox), Some(highest), &plan).await? {
                        return Ok(self.flags_written(account, mailbox, mailbox_id, highest, plan));
                    }
                }
            }
            // Otherwise read and written in one statement, which gives up
            // (None) only when another writer got in between.
            if let Some((mailbox_id, highest, plan)) = self
                .store_at_once((account, mailbox), uids, mode, &given, unchanged_since)
                .await?
            {
                if plan.updated.is_empty() {
                    return Ok(plan.response(highest));
                }
                return Ok(self.flags_written(account, mailbox, mailbox_id, highest, plan));
            }
        }
        // `*`, or a mailbox other writers keep changing: under the row lock.
        let mut tx = self.pool.begin().await?;
        let (mailbox_id, highest) = self.lock_mailbox(&mut tx, account, mailbox).await?;
        let max_uid = Self::star_uid(&mut tx, mailbox_id, uids).await?;
        let (lo, hi) = uid_ranges(uids, max_uid)?;
        let rows: Vec<(i64, i64, Vec<String>)> = sqlx::query_as(
            "SELECT DISTINCT ON (m.uid) m.uid, m.modseq, m.flags \
             FROM UNNEST($2::int8[], $3::int8[]) AS r(lo, hi) \
             JOIN messages m ON m.mailbox_id = $1 AND m.uid BETWEEN r.lo AND r.hi \
               AND m.uid BETWEEN (SELECT min(v) FROM UNNEST($2::int8[]) v) AND (SELECT max(v) FROM UNNEST($3::int8[]) v) \
             WHERE m.expunged_modseq IS NULL ORDER BY m.uid",
        )
        .bind(mailbox_id)
        .bind(&lo)
        .bind(&hi)
        .fetch_all(&mut *tx)
        .await?;
        let plan = FlagPlan::new(rows, mode, &given, unchanged_since, highest + 1);
        if plan.updated.is_empty() {
            return Ok(plan.response(highest));
        }
        write_flags(&mut tx, (mailbox_id, mailbox), None, &plan).await?;
        tx.commit().await?;
        Ok(self.flags_written(account, mailbox, mailbox_id, highest, plan))
    }

    /// After a STORE took mailbox `mailbox_id` from `highest` to
    /// `highest + 1`: tells the other sessions, moves the kept listing
    /// along, and answers.
    fn flags_written(
        &self,
        account: &str,
        mailbox: &str,
        mailbox_id: i64,
        highest: i64,
        plan: FlagPlan,
    ) -> StoreFlagsResponse {
        let after = highest + 1;
        self.events.changed_at(mailbox_id, after);
        self.mailbox_cache
            .advance(account, mailbox, mailbox_id, (highest, after), |listing| {
                plan.updated
                    .iter()
                    .filter_map(|u| {
                        let uid = i64::from(u.uid);
                        let i = listing
                            .messages
                            .binary_search_by_key(&uid, |m| m.uid)
                            .ok()?;
                        let mut m = listing.messages[i].clone();
                        m.flags = u.flags.clone().into();
                        m.modseq = after;
                        Some((m, false))
                    })
                    .collect()
            });
        plan.response(after)
    }

    /// A STORE of a `*`-free UID set in one statement: the mailbox row is
    /// locked, and the plan made from the messages as the statement's
    /// snapshot has them, then written, only if the locked row's
    /// highestmodseq is the snapshot's. Every writer of a message raises it
    /// under that lock, so then no write came between the snapshot and the
    /// lock, and the snapshot's flags are the current ones. Otherwise
    /// `None`: the caller retries under an explicit transaction. The new
    /// flags are worked out in SQL as [`apply`] does (keywords compare
    /// case-insensitively; `given` holds no two spellings of one flag).
    /// Returns (mailbox id, highestmodseq before, what changed).
    async fn store_at_once(
        &self,
        (account, mailbox): (&str, &str),
        uids: Option<&UidSet>,
        mode: FlagsMode,
        given: &[String],
        unchanged_since: i64,
    ) -> Result<Option<(i64, i64, FlagPlan)>> {
        let (lo, hi) = uid_ranges(uids, 0)?;
        let mode_code: i32 = match mode {
            FlagsMode::FlagsAdd => 1,
            FlagsMode::FlagsRemove => 2,
            _ => 3,
        };
        type Row = (
            i64,
            Option<i64>,
            Option<i64>,
            Vec<i64>,
            Vec<String>,
            Vec<i64>,
        );
        let (found, mailbox_id, highest, uid_col, flags_col, refused): Row = sqlx::query_as(
            "WITH mb AS (SELECT b.id, b.highestmodseq FROM mailboxes b JOIN accounts a ON a.id = b.account_id \
                   WHERE a.address = $1 AND b.name = $2 FOR UPDATE OF b), \
               ok AS (SELECT mb.id, mb.highestmodseq + 1 AS new FROM mb \
                   WHERE mb.highestmodseq = (SELECT s.highestmodseq FROM mailboxes s WHERE s.id = mb.id)), \
               old AS MATERIALIZED (SELECT DISTINCT ON (x.uid) x.uid, x.modseq, x.flags \
                   FROM ok, UNNEST((SELECT $3::int8[]), (SELECT $4::int8[])) AS r(lo, hi) \
                   JOIN messages x ON x.uid BETWEEN r.lo AND r.hi \
                   WHERE x.mailbox_id = ok.id AND x.expunged_modseq IS NULL \
                     AND x.uid BETWEEN (SELECT min(v) FROM UNNEST($3::int8[]) v) \
                                   AND (SELECT max(v) FROM UNNEST($4::int8[]) v) \
                   ORDER BY x.uid), \
               plan AS (SELECT o.uid, o.flags AS oldf, \
                   CASE $6::int4 \
                     WHEN 1 THEN o.flags || ARRAY(SELECT g.f FROM UNNEST($5::text[]) WITH ORDINALITY g(f, i) \
                         WHERE lower(g.f) <> ALL (SELECT lower(e) FROM UNNEST(o.flags) e) ORDER BY g.i) \
                     WHEN 2 THEN ARRAY(SELECT e.f FROM UNNEST(o.flags) WITH ORDINALITY e(f, i) \
                         WHERE lower(e.f) <> ALL (SELECT lower(g) FROM UNNEST($5::text[]) g) ORDER BY e.i) \
                     ELSE $5::text[] END AS newf, \
                   ($7::int8 > 0 AND o.modseq > $7::int8) AS refused \
                   FROM old o), \
               ch AS MATERIALIZED (SELECT p.uid, p.newf, $8 = ANY(p.oldf) AS was_seen, $8 = ANY(p.newf) AS is_seen \
                   FROM plan p WHERE NOT p.refused \
                     AND (SELECT array_agg(lower(x) ORDER BY lower(x)) FROM UNNEST(p.newf) x) \
                         IS DISTINCT FROM (SELECT array_agg(lower(x) ORDER BY lower(x)) FROM UNNEST(p.oldf) x)), \
               u AS (UPDATE messages m SET flags = ch.newf, modseq = ok.new FROM ok, ch \
                   WHERE m.mailbox_id = ok.id AND m.uid = ch.uid RETURNING 1), \
               box AS (UPDATE mailboxes b SET highestmodseq = ok.new, unseen_count = b.unseen_count \
                     + (SELECT count(*) FILTER (WHERE was_seen AND NOT is_seen) \
                             - count(*) FILTER (WHERE is_seen AND NOT was_seen) FROM ch) \
                   FROM ok WHERE b.id = ok.id AND EXISTS (SELECT 1 FROM ch) RETURNING 1) \
             SELECT (SELECT count(*) FROM mb), (SELECT id FROM ok), (SELECT highestmodseq FROM mb), \
                 ARRAY(SELECT uid FROM ch ORDER BY uid), \
                 ARRAY(SELECT array_to_string(newf, ' ') FROM ch ORDER BY uid), \
                 ARRAY(SELECT uid FROM plan WHERE refused ORDER BY uid)",
        )
        .bind(account)
        .bind(mailbox)
        .bind(&lo)
        .bind(&hi)
        .bind(given)
        .bind(mode_code)
        .bind(unchanged_since)
        .bind(SEEN)
        .fetch_one(&self.pool)
        .await?;
        if found == 0 {
            return Err(StoreError::NotFound(format!(
                "no mailbox {mailbox:?} for {account}"
            )));
        }
        let (Some(mailbox_id), Some(highest)) = (mailbox_id, highest) else {
            return Ok(None);
        };
        let new_modseq = highest + 1;
        let updated = uid_col
            .iter()
            .zip(&flags_col)
            .map(|(&uid, f)| FlagUpdate {
                uid: u32::try_from(uid).unwrap_or(u32::MAX),
                // Flags are atoms, so a space cannot occur inside one.
                flags: f
                    .split(' ')
                    .filter(|x| !x.is_empty())
                    .map(str::to_owned)
                    .collect(),
                modseq: u64::try_from(new_modseq).unwrap_or(0),
            })
            .collect();
        let plan = FlagPlan {
            updated,
            modified: refused
                .into_iter()
                .map(|u| u32::try_from(u).unwrap_or(u32::MAX))
                .collect(),
            uid_col: Vec::new(),
            flags_col: Vec::new(),
            unseen_delta: 0,
            new_modseq,
        };
        Ok(Some((mailbox_id, highest, plan)))
    }
}

/// The live messages of a `*`-free UID set as (uid, modseq, flags), from a
/// kept listing.
fn cached_rows(
    listing: &crate::mailbox_cache::Listing,
    uids: Option<&UidSet>,
) -> Vec<(i64, i64, Vec<String>)> {
    let messages = &listing.messages;
    let mut rows = Vec::new();
    for r in uids.map(|s| s.ranges.as_slice()).unwrap_or_default() {
        let (lo, hi) = (r.first.min(r.last), r.first.max(r.last));
        let start = messages.partition_point(|m| m.uid < i64::from(lo));
        let end = messages.partition_point(|m| m.uid <= i64::from(hi));
        for m in messages.get(start..end).unwrap_or_default() {
            rows.push((m.uid, m.modseq, m.flags.to_vec()));
        }
    }
    rows.sort_unstable_by_key(|r| r.0);
    rows.dedup_by_key(|r| r.0);
    rows
}

/// What a STORE changes, worked out from the messages' current flags.
struct FlagPlan {
    updated: Vec<FlagUpdate>,
    /// UIDs refused by UNCHANGEDSINCE.
    modified: Vec<u32>,
    uid_col: Vec<i64>,
    /// The new flags of each row of `uid_col`, space-separated.
    flags_col: Vec<String>,
    unseen_delta: i64,
    new_modseq: i64,
}

impl FlagPlan {
    fn new(
        rows: Vec<(i64, i64, Vec<String>)>,
        mode: FlagsMode,
        given: &[String],
        unchanged_since: i64,
        new_modseq: i64,
    ) -> FlagPlan {
        let mut plan = FlagPlan {
            updated: Vec::new(),
            modified: Vec::new(),
            uid_col: Vec::new(),
            flags_col: Vec::new(),
            unseen_delta: 0,
            new_modseq,
        };
        for (uid, modseq, old) in rows {
            let uid32 = u32::try_from(uid).unwrap_or(u32::MAX);
            if unchanged_since > 0 && modseq > unchanged_since {
                plan.modified.push(uid32);
                continue;
            }
            let new = apply(mode, &old, given);
            if same_set(&old, &new) {
                continue;
            }
            match (has(&old, SEEN), has(&new, SEEN)) {
                (false, true) => plan.unseen_delta -= 1,
                (true, false) => plan.unseen_delta += 1,
                _ => {}
            }
            plan.uid_col.push(uid);
            // Flags are atoms, so a space cannot occur inside one.
            plan.flags_col.push(new.join(" "));
            plan.updated.push(FlagUpdate {
                uid: uid32,
                flags: new,
                modseq: u64::try_from(new_modseq).unwrap_or(0),
            });
        }
        plan
    }

    fn response(self, highestmodseq: i64) -> StoreFlagsResponse {
        StoreFlagsResponse {
            updated: self.updated,
            modified: self.modified,
            highestmodseq: u64::try_from(highestmodseq).unwrap_or(0),
        }
    }
}

/// Writes a plan: the messages and the mailbox in one statement. The arrays
/// are read through subqueries so that no plan knows their length: with
/// it, custom plans look cheaper than the generic one and Postgres plans
/// the statement anew at every call (0.3 to 0.5 ms each). With
/// `expected`, only while the mailbox's highestmodseq is still that (every
/// writer of a message raises it, so nothing changed since the read), and
/// only while the mailbox still has its (canonical) name: a RENAME keeps
/// the id and the highestmodseq a kept listing has. Returns whether it
/// wrote.
async fn write_flags(
    conn: &mut sqlx::PgConnection,
    (mailbox_id, mailbox): (i64, &str),
    expected: Option<i64>,
    plan: &FlagPlan,
) -> Result<bool> {
    let (written,): (i64,) = sqlx::query_as(
        "WITH mb AS (UPDATE mailboxes SET highestmodseq = $2, unseen_count = unseen_count + $5 \
                 WHERE id = $1 AND ($6::int8 IS NULL OR highestmodseq = $6) AND name = $7 RETURNING id), \
             u AS (UPDATE messages m SET modseq = $2, \
                 flags = CASE WHEN v.f = '' THEN '{}'::text[] ELSE string_to_array(v.f, ' ') END \
                 FROM mb, UNNEST((SELECT $3::int8[]), (SELECT $4::text[])) AS v(uid, f) \
                 WHERE m.mailbox_id = mb.id AND m.uid = v.uid RETURNING 1) \
         SELECT count(*) FROM mb",
    )
    .bind(mailbox_id)
    .bind(plan.new_modseq)
    .bind(&plan.uid_col)
    .bind(&plan.flags_col)
    .bind(plan.unseen_delta)
    .bind(expected)
    .bind(mailbox)
    .fetch_one(conn)
    .await?;
    Ok(written > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailfleet_proto::v1::UidRange;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn canonical_flags() {
        assert_eq!(canonical_flag("\\SEEN").unwrap(), "\\Seen");
        assert_eq!(canonical_flag("$Junk").unwrap(), "$Junk");
        assert!(canonical_flag("\\Recent").is_err());
        assert!(canonical_flag("\\Foo").is_err());
        assert!(canonical_flag("a b").is_err());
        assert!(canonical_flag("").is_err());
        assert!(canonical_flag("x]").is_err());
    }

    #[test]
    fn modes() {
        let old = s(&["\\Seen", "foo"]);
        assert_eq!(
            apply(FlagsMode::FlagsAdd, &old, &s(&["FOO", "\\Deleted"])),
            s(&["\\Seen", "foo", "\\Deleted"])
        );
        assert_eq!(
            apply(FlagsMode::FlagsRemove, &old, &s(&["Foo"])),
            s(&["\\Seen"])
        );
        assert_eq!(
            apply(FlagsMode::FlagsReplace, &old, &s(&["bar"])),
            s(&["bar"])
        );
        assert!(same_set(&s(&["a", "B"]), &s(&["b", "A"])));
        assert!(!same_set(&s(&["a"]), &s(&["a", "b"])));
    }

    #[test]
    fn star_bounds() {
        let set = UidSet {
            ranges: vec![
                UidRange { first: 5, last: 0 },
                UidRange { first: 2, last: 1 },
                UidRange { first: 0, last: 0 },
            ],
        };
        let (lo, hi) = uid_ranges(Some(&set), 3).unwrap();
        assert_eq!(lo, [3, 1, 3]);
        assert_eq!(hi, [5, 2, 3]);
        assert_eq!(uid_ranges(None, 3).unwrap(), (vec![], vec![]));
    }
}
