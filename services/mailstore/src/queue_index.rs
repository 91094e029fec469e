//! The operators' index of deferred delivery jobs (`deferred_jobs`) and the
//! `mailfleet.v1.Outbound` service delivery-worker calls.
//!
//! The queue itself is RabbitMQ: a deferred job waits in a retry queue. This
//! index lets an operator list and inspect deferred jobs, retry one now and
//! delete one, which AMQP alone cannot do. The rules that keep one live copy
//! per job:
//! - the worker indexes a retry copy (attempt n+1) *before* publishing it, so
//!   every copy in a retry queue has a row;
//! - a copy that surfaces is processed only if its row exists, is not
//!   cancelled, its `retry_generation` is not below the row's and its attempt
//!   is the row's or the one before (a crash between indexing and acking
//!   leaves the previous copy live);
//! - "retry now" marks the row; a worker publishes the stored job with the
//!   next generation to the work queue and then commits that generation, which
//!   makes the copy still waiting in the retry queue stale. Were the worker to
//!   die between the two, the old copy stays valid: nothing is lost.

use mailfleet_proto::v1 as pb;
use mailfleet_proto::v1::outbound_server::Outbound;
use mailfleet_runtime::grpc::check_bearer;
use prost::Message;
use tonic::{Request, Response, Status};

use crate::error::{Result, StoreError};
use crate::store::Store;
use crate::tokens::Tokens;

type Row = (
    String,
    String,
    Vec<String>,
    i32,
    Option<chrono::DateTime<chrono::Utc>>,
    Option<chrono::DateTime<chrono::Utc>>,
    String,
    bool,
    bool,
    i64,
    String,
);

/// The columns of [`Row`], as a literal so queries stay static strings.
macro_rules! columns {
    () => {
        "job_id, return_path, recipients, attempts, next_attempt, first_attempt, \
         last_error, cancelled, retry_requested, size, blob_id"
    };
}

fn entry(r: Row) -> pb::QueueEntry {
    let (
        job_id,
        return_path,
        recipients,
        attempts,
        next,
        first,
        last_error,
        cancelled,
        retry_requested,
        size,
        blob_id,
    ) = r;
    pb::QueueEntry {
        job_id,
        return_path,
        recipients,
        attempts: u32::try_from(attempts.max(0)).unwrap_or(0),
        next_attempt_ms: next.map_or(0, |t| t.timestamp_millis()),
        first_attempt_ms: first.map_or(0, |t| t.timestamp_millis()),
        last_error,
        cancelled,
        retry_requested,
        size: u64::try_from(size).unwrap_or(0),
        blob_id,
    }
}

fn time_of(ms: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    (ms > 0)
        .then(|| chrono::DateTime::from_timestamp_millis(ms))
        .flatten()
}

/// Whether a surfaced retry copy is live (see the module notes).
pub fn copy_is_live(
    row: Option<(i32, bool, i32)>,
    attempt: u32,
    generation: u32,
) -> (bool, &'static str) {
    let Some((attempts, cancelled, row_generation)) = row else {
        return (false, "finished");
    };
    let attempts = i64::from(attempts);
    if cancelled {
        (false, "cancelled")
    } else if i64::from(generation) < i64::from(row_generation) {
        (false, "superseded")
    } else if i64::from(attempt) + 1 < attempts {
        (false, "stale")
    } else {
        (true, "")
    }
}

impl Store {
    pub async fn index_deferred(
        &self,
        job: &pb::DeliveryJob,
        next_attempt_ms: i64,
        last_error: &str,
    ) -> Result<()> {
        if job.job_id.is_empty() {
            return Err(StoreError::InvalidArgument("job without id".into()));
        }
        let recipients: Vec<String> = job.recipients.iter().map(|r| r.address.clone()).collect();
        sqlx::query(
            "INSERT INTO deferred_jobs (job_id, recipients, attempts, next_attempt, last_error, job, \
                 return_path, blob_id, size, first_attempt, retry_generation, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, now()) \
             ON CONFLICT (job_id) DO UPDATE SET recipients = EXCLUDED.recipients, \
                 attempts = EXCLUDED.attempts, next_attempt = EXCLUDED.next_attempt, \
                 last_error = EXCLUDED.last_error, job = EXCLUDED.job, \
                 retry_generation = GREATEST(deferred_jobs.retry_generation, EXCLUDED.retry_generation), \
                 updated_at = now()",
        )
        .bind(&job.job_id)
        .bind(&recipients)
        .bind(i32::try_from(job.attempt).unwrap_or(i32::MAX))
        .bind(time_of(next_attempt_ms))
        .bind(last_error)
        .bind(job.encode_to_vec())
        .bind(&job.return_path)
        .bind(&job.blob_id)
        .bind(i64::try_from(job.blob_size).unwrap_or(i64::MAX))
        .bind(time_of(job.first_attempt_ms))
        .bind(i32::try_from(job.retry_generation).unwrap_or(i32::MAX))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn check_deferred(
        &self,
        job_id: &str,
        attempt: u32,
        generation: u32,
    ) -> Result<(bool, &'static str)> {
        let row: Option<(i32, bool, i32)> = sqlx::query_as(
            "SELECT attempts, cancelled, retry_generation FROM deferred_jobs WHERE job_id = $1",
        )
        .bind(job_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(copy_is_live(row, attempt, generation))
    }

    pub async fn finish_deferred(&self, job_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM deferred_jobs WHERE job_id = $1 AND NOT cancelled")
            .bind(job_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Jobs an operator asked to retry, re-encoded with the next generation.
    pub async fn pending_retries(&self, limit: u32) -> Result<Vec<Vec<u8>>> {
        let rows: Vec<(Vec<u8>, i32)> = sqlx::query_as(
            "SELECT job, retry_generation FROM deferred_jobs \
             WHERE retry_requested AND NOT cancelled AND job IS NOT NULL \
             ORDER BY updated_at LIMIT $1",
        )
        .bind(i64::from(limit.clamp(1, 1000)))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(bytes, generation)| {
                let mut job = pb::DeliveryJob::decode(bytes.as_slice()).ok()?;
                job.retry_generation = u32::try_from(generation).unwrap_or(0).saturating_add(1);
                Some(job.encode_to_vec())
            })
            .collect())
    }

    /// (deferred jobs not cancelled, the oldest one's first attempt in ms).
    pub async fn deferred_stats(&self) -> Result<(u64, i64)> {
        let (count, oldest): (i64, Option<chrono::DateTime<chrono::Utc>>) = sqlx::query_as(
            "SELECT count(*), min(first_attempt) FROM deferred_jobs WHERE NOT cancelled",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((
            u64::try_from(count).unwrap_or(0),
            oldest.map_or(0, |t| t.timestamp_millis()),
        ))
    }

    pub async fn commit_retry(&self, job_id: &str, generation: u32) -> Result<()> {
        sqlx::query(
            "UPDATE deferred_jobs SET retry_generation = GREATEST(retry_generation, $2), \
             retry_requested = false, updated_at = now() WHERE job_id = $1",
        )
        .bind(job_id)
        .bind(i32::try_from(generation).unwrap_or(i32::MAX))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn list_queue(&self, limit: u32) -> Result<Vec<pb::QueueEntry>> {
        let limit = if limit == 0 { 1000 } else { limit.min(10_000) };
        let rows: Vec<Row> = sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM deferred_jobs ORDER BY next_attempt NULLS LAST, job_id LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(entry).collect())
    }

    pub async fn show_queue(&self, job_id: &str) -> Result<pb::QueueEntry> {
        let row: Option<Row> = sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM deferred_jobs WHERE job_id = $1"
        ))
        .bind(job_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(entry)
            .ok_or_else(|| StoreError::NotFound(format!("no deferred job {job_id}")))
    }

    /// Marks the job for an immediate attempt; false when there is no such
    /// live job.
    pub async fn request_retry(&self, job_id: &str) -> Result<()> {
        let done = sqlx::query(
            "UPDATE deferred_jobs SET retry_requested = true, updated_at = now() \
             WHERE job_id = $1 AND NOT cancelled",
        )
        .bind(job_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("no deferred job {job_id}")));
        }
        Ok(())
    }

    pub async fn cancel_deferred(&self, job_id: &str) -> Result<()> {
        let done = sqlx::query(
            "UPDATE deferred_jobs SET cancelled = true, retry_requested = false, updated_at = now() \
             WHERE job_id = $1",
        )
        .bind(job_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("no deferred job {job_id}")));
        }
        Ok(())
    }
}

/// The Outbound service (service credential).
#[derive(Clone)]
pub struct OutboundService {
    pub store: Store,
    pub tokens: Tokens,
}

impl OutboundService {
    fn authorize<T>(&self, req: &Request<T>) -> std::result::Result<(), Status> {
        check_bearer(req, &[self.tokens.service.expose()])
    }
}

#[tonic::async_trait]
impl Outbound for OutboundService {
    async fn get_dkim_key(
        &self,
        request: Request<pb::GetDkimKeyRequest>,
    ) -> std::result::Result<Response<pb::GetDkimKeyResponse>, Status> {
        self.authorize(&request)?;
        let key = self.store.dkim_key(&request.into_inner().domain).await?;
        Ok(Response::new(match key {
            Some(k) => pb::GetDkimKeyResponse {
                found: true,
                selector: k.selector,
                algorithm: k.algorithm,
                private_key: k.private_key,
            },
            None => pb::GetDkimKeyResponse::default(),
        }))
    }

    async fn index_deferred(
        &self,
        request: Request<pb::IndexDeferredRequest>,
    ) -> std::result::Result<Response<pb::IndexDeferredResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        let job = pb::DeliveryJob::decode(r.job.as_slice())
            .map_err(|_| Status::invalid_argument("undecodable job"))?;
        self.store
            .index_deferred(&job, r.next_attempt_ms, &r.last_error)
            .await?;
        Ok(Response::new(pb::IndexDeferredResponse {}))
    }

    async fn check_deferred(
        &self,
        request: Request<pb::CheckDeferredRequest>,
    ) -> std::result::Result<Response<pb::CheckDeferredResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        let (proceed, reason) = self
            .store
            .check_deferred(&r.job_id, r.attempt, r.retry_generation)
            .await?;
        Ok(Response::new(pb::CheckDeferredResponse {
            proceed,
            reason: reason.into(),
        }))
    }

    async fn finish_deferred(
        &self,
        request: Request<pb::FinishDeferredRequest>,
    ) -> std::result::Result<Response<pb::FinishDeferredResponse>, Status> {
        self.authorize(&request)?;
        self.store
            .finish_deferred(&request.into_inner().job_id)
            .await?;
        Ok(Response::new(pb::FinishDeferredResponse {}))
    }

    async fn pending_retries(
        &self,
        request: Request<pb::PendingRetriesRequest>,
    ) -> std::result::Result<Response<pb::PendingRetriesResponse>, Status> {
        self.authorize(&request)?;
        let jobs = self
            .store
            .pending_retries(request.into_inner().limit)
            .await?;
        let (deferred, oldest_first_attempt_ms) = self.store.deferred_stats().await?;
        Ok(Response::new(pb::PendingRetriesResponse {
            jobs,
            deferred,
            oldest_first_attempt_ms,
        }))
    }

    async fn commit_retry(
        &self,
        request: Request<pb::CommitRetryRequest>,
    ) -> std::result::Result<Response<pb::CommitRetryResponse>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        self.store
            .commit_retry(&r.job_id, r.retry_generation)
            .await?;
        Ok(Response::new(pb::CommitRetryResponse {}))
    }
}

/// The Admin handlers of the queue and DNS RPCs; `grpc.rs` calls these
/// after checking the admin credential.
pub mod admin {
    use super::*;

    pub async fn list(store: &Store, r: pb::ListQueueRequest) -> Result<pb::ListQueueResponse> {
        Ok(pb::ListQueueResponse {
            entries: store.list_queue(r.limit).await?,
        })
    }

    pub async fn show(store: &Store, r: pb::ShowQueueRequest) -> Result<pb::QueueEntry> {
        store.show_queue(&r.job_id).await
    }

    pub async fn retry(store: &Store, r: pb::RetryQueueRequest) -> Result<pb::RetryQueueResponse> {
        store.request_retry(&r.job_id).await?;
        Ok(pb::RetryQueueResponse {})
    }

    pub async fn delete(
        store: &Store,
        r: pb::DeleteQueueRequest,
    ) -> Result<pb::DeleteQueueResponse> {
        store.cancel_deferred(&r.job_id).await?;
        Ok(pb::DeleteQueueResponse {})
    }

    pub async fn domain_dns(
        store: &Store,
        r: pb::DomainDnsRequest,
    ) -> Result<pb::DomainDnsResponse> {
        let records = store.domain_dns(&r.domain, &r.mx_host).await?;
        Ok(pb::DomainDnsResponse {
            records: records
                .into_iter()
                .map(|d| pb::DnsRecord {
                    name: d.name,
                    kind: d.kind.into(),
                    value: d.value,
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_current_copy_is_live() {
        assert_eq!(copy_is_live(None, 1, 0), (false, "finished"));
        assert_eq!(copy_is_live(Some((2, true, 0)), 2, 0), (false, "cancelled"));
        assert_eq!(
            copy_is_live(Some((2, false, 1)), 2, 0),
            (false, "superseded")
        );
        assert!(copy_is_live(Some((2, false, 1)), 2, 1).0);
        // The copy before the indexed one stays live (crash before its ack).
        assert!(copy_is_live(Some((3, false, 0)), 2, 0).0);
        assert_eq!(copy_is_live(Some((4, false, 0)), 2, 0), (false, "stale"));
    }
}
