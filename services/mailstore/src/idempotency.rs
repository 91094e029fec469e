//! Deliver's idempotency keys, recorded per group (migration 0017).
//!
//! A key's group is the key up to and including its first `/`, or the whole
//! key; its member is the rest. delivery-worker's keys are
//! `<job id>/<recipient>`, so a job's copies share one `delivery_groups` row
//! listing the members stored, where one row per copy used to be written.
//! [`claim`] runs first in the delivery transaction: it inserts the rows of
//! new groups and locks those that exist (in group order, so batches sharing
//! a group wait on each other), and says which keys are new. [`settle`] then
//! makes each row list exactly the members stored: only rows whose keys were
//! not all stored, or that gained members, are written again.

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::{Postgres, Transaction};

use crate::error::Result;

/// (group, member) of a key; `group + member == key`.
pub fn split(key: &str) -> (&str, &str) {
    match key.find('/') {
        Some(i) => key.split_at(i + 1),
        None => (key, ""),
    }
}

/// A group's row as this transaction found or wrote it.
enum Row<'a> {
    /// Inserted now, listing these members.
    Inserted(Vec<&'a str>),
    /// Stored before (a redelivered job), with these members; locked.
    Existing(Vec<String>),
}

/// The keys of a batch, claimed inside its transaction.
pub struct Claim<'a> {
    /// Per key given to [`claim`], in order: new (not stored before).
    pub fresh: Vec<bool>,
    rows: BTreeMap<&'a str, Row<'a>>,
    /// The new members of the groups stored before.
    added: HashMap<&'a str, Vec<&'a str>>,
}

/// Inserts or locks the groups of `keys` and tells which keys are new. A
/// key repeated among `keys` is new only the first time.
pub async fn claim<'a>(tx: &mut Transaction<'_, Postgres>, keys: &[&'a str]) -> Result<Claim<'a>> {
    // Group -> distinct members in the order first seen.
    let mut wanted: BTreeMap<&'a str, Vec<&'a str>> = BTreeMap::new();
    for &key in keys {
        let (g, m) = split(key);
        let members = wanted.entry(g).or_default();
        if !members.contains(&m) {
            members.push(m);
        }
    }
    let (mut group_col, mut member_col) = (Vec::new(), Vec::new());
    for (g, members) in &wanted {
        for m in members {
            group_col.push(*g);
            member_col.push(*m);
        }
    }
    // Groups in order: two batches sharing groups wait on each other
    // instead of deadlocking.
    let inserted: Vec<(String,)> = sqlx::query_as(
        "INSERT INTO delivery_groups (group_key, members) \
         SELECT g, array_agg(m ORDER BY i) FROM UNNEST($1::text[], $2::text[]) WITH ORDINALITY AS v(g, m, i) \
         GROUP BY g ORDER BY g ON CONFLICT (group_key) DO NOTHING RETURNING group_key",
    )
    .bind(&group_col)
    .bind(&member_col)
    .fetch_all(&mut **tx)
    .await?;
    let inserted: HashSet<String> = inserted.into_iter().map(|r| r.0).collect();
    let mut rows: BTreeMap<&'a str, Row<'a>> = BTreeMap::new();
    let mut existing: Vec<&'a str> = Vec::new();
    for (g, members) in wanted {
        if inserted.contains(g) {
            rows.insert(g, Row::Inserted(members));
        } else {
            existing.push(g);
        }
    }
    if !existing.is_empty() {
        let found: Vec<(String, Vec<String>)> = sqlx::query_as(
            "SELECT group_key, members FROM delivery_groups WHERE group_key = ANY($1) \
             ORDER BY group_key FOR UPDATE",
        )
        .bind(&existing)
        .fetch_all(&mut **tx)
        .await?;
        let mut found: HashMap<String, Vec<String>> = found.into_iter().collect();
        for g in existing {
            // A row gone in between (all its members released by a mailstore
            // of before migration 0017) is an empty one.
            let members = found.remove(g).unwrap_or_default();
            rows.insert(g, Row::Existing(members));
        }
    }
    let mut fresh = Vec::with_capacity(keys.len());
    let mut seen: HashSet<&str> = HashSet::with_capacity(keys.len());
    let mut added: HashMap<&'a str, Vec<&'a str>> = HashMap::new();
    for &key in keys {
        let (g, m) = split(key);
        let new = seen.insert(key)
            && match rows.get(g) {
                Some(Row::Inserted(_)) => true,
                Some(Row::Existing(members)) => !members.iter().any(|s| s == m),
                None => false,
            };
        if new && matches!(rows.get(g), Some(Row::Existing(_))) {
            added.entry(g).or_default().push(m);
        }
        fresh.push(new);
    }
    Ok(Claim { fresh, rows, added })
}

/// Makes each group's row list exactly the members stored, given the new
/// keys that were not stored after all (`released`: over quota, no
/// mailbox), so that a later attempt of those is not taken for a duplicate.
pub async fn settle(
    tx: &mut Transaction<'_, Postgres>,
    claim: &Claim<'_>,
    released: &[&str],
) -> Result<()> {
    let mut dropped: HashMap<&str, HashSet<&str>> = HashMap::new();
    for &key in released {
        let (g, m) = split(key);
        dropped.entry(g).or_default().insert(m);
    }
    let no_drop: HashSet<&str> = HashSet::new();
    for (g, row) in &claim.rows {
        let drop = dropped.get(g).unwrap_or(&no_drop);
        let members: Vec<&str> = match row {
            Row::Inserted(members) => {
                if drop.is_empty() {
                    continue;
                }
                members
                    .iter()
                    .copied()
                    .filter(|m| !drop.contains(m))
                    .collect()
            }
            Row::Existing(members) => {
                let new: Vec<&str> = claim
                    .added
                    .get(g)
                    .map(|a| a.iter().copied().filter(|m| !drop.contains(m)).collect())
                    .unwrap_or_default();
                if new.is_empty() {
                    continue;
                }
                members.iter().map(String::as_str).chain(new).collect()
            }
        };
        if members.is_empty() {
            sqlx::query("DELETE FROM delivery_groups WHERE group_key = $1")
                .bind(*g)
                .execute(&mut **tx)
                .await?;
        } else {
            // An existing row gone in between is inserted again.
            sqlx::query(
                "INSERT INTO delivery_groups (group_key, members) VALUES ($1, $2) \
                 ON CONFLICT (group_key) DO UPDATE SET members = EXCLUDED.members",
            )
            .bind(*g)
            .bind(&members)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn a_key_is_its_group_and_member_and_no_two_keys_share_both() {
        assert_eq!(
            split("job-1/alice@example.test"),
            ("job-1/", "alice@example.test")
        );
        assert_eq!(split("a/b/c"), ("a/", "b/c"));
        assert_eq!(split("plain"), ("plain", ""));
        // "x" and "x/" differ in their group, so neither reads as the other.
        assert_ne!(split("x"), split("x/"));
        for key in ["job-1/alice", "a/b/c", "plain", "x/", "/lead"] {
            let (g, m) = split(key);
            assert_eq!(format!("{g}{m}"), key);
        }
    }
}
