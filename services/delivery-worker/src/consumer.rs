//! The consumer: a supervisor that (re)connects to RabbitMQ and a session
//! that consumes one channel, groups jobs into batches and settles them.
//!
//! A session ends when the connection or channel fails or when the broker
//! cancels the consumer (the queue was deleted, a node went away); lapin
//! then ends the consumer stream. The supervisor marks the worker not ready,
//! waits (exponential backoff, 100 ms to 5 s), reconnects, redeclares the
//! topology and subscribes again. Jobs a dead session held unacked go back
//! to the queue on their own; delivery is idempotent, so that is safe.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::{BoxStream, FuturesUnordered};
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer, Event};
use mailfleet_runtime::CancellationToken;
use mailfleet_runtime::http::HealthFlag;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tracing::{Instrument, debug, info, warn};

use crate::acks::AckTracker;
use crate::backoff::Backoff;
use crate::batch::{BatchContext, BatchReport, Handoff, PendingJob, plan};
use crate::finish::Finished;
use crate::store::Store;

/// Batches handed to mailstore at once: one being stored while the next fills.
const MAX_IN_FLIGHT: usize = 2;
/// Pause before requeueing a job that failed temporarily, doubled while
/// failures continue, so a failing job never spins hot.
const REQUEUE_MIN: Duration = Duration::from_millis(250);
const REQUEUE_MAX: Duration = Duration::from_secs(5);
/// Longest wait for the broker to confirm a channel or connection close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for declaring the topology and subscribing.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of the consumer.
#[derive(Clone, Debug)]
pub struct ConsumerSettings {
    pub amqp_url: String,
    pub queue_prefix: String,
    pub prefetch: u16,
    pub batch_size: usize,
    pub batch_wait: Duration,
    pub shutdown_grace: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
}

/// Why a session ended.
#[derive(Debug)]
enum SessionEnd {
    Shutdown,
    /// The broker cancelled the consumer (queue deleted, node restarted).
    Cancelled,
    Failed(String),
}

type BatchFuture = Pin<Box<dyn Future<Output = BatchReport> + Send>>;
type ParkedFuture = Pin<Box<dyn Future<Output = Vec<u64>> + Send>>;
type FinishFuture = Pin<Box<dyn Future<Output = (u64, Finished)> + Send>>;

/// Consumes until `shutdown`, reconnecting as often as needed. `first` is
/// the connection `run` opened to check the broker at start-up.
pub async fn supervise<S: Store>(
    settings: ConsumerSettings,
    ctx: BatchContext<S>,
    consuming: HealthFlag,
    first: Connection,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(settings.reconnect_min, settings.reconnect_max);
    let mut connection = Some(first);
    while !shutdown.is_cancelled() {
        let conn = match connection.take() {
            Some(c) => Ok(c),
            None => mailfleet_queue::connect(&settings.amqp_url)
                .await
                .map_err(|e| e.to_string()),
        };
        let end = match conn {
            Ok(conn) => {
                let subscribed = timeout(SUBSCRIBE_TIMEOUT, subscribe(&conn, &settings))
                    .await
                    .unwrap_or_else(|_| Err("the broker did not answer".into()));
                let end = match subscribed {
                    Ok((channel, consumer)) => {
                        info!(queue = %consumer.queue(), consumer_tag = %consumer.tag(), "Consuming delivery jobs.");
                        consuming.set(true);
                        ctx.metrics.consuming.set(1);
                        let mut session = Session::new(
                            &settings,
                            ctx.clone(),
                            channel.clone(),
                            consumer,
                            Box::pin(conn.events_listener()),
                            shutdown.clone(),
                        );
                        let end = session.run().await;
                        consuming.set(false);
                        ctx.metrics.consuming.set(0);
                        if session.received > 0 {
                            backoff.reset();
                        }
                        // Bounded: a half-open connection never answers close-ok.
                        let _ = timeout(CLOSE_TIMEOUT, channel.close(200, "bye".into())).await;
                        end
                    }
                    Err(e) => SessionEnd::Failed(format!("cannot subscribe: {e}")),
                };
                let _ = timeout(CLOSE_TIMEOUT, conn.close(200, "bye".into())).await;
                end
            }
            Err(e) => SessionEnd::Failed(e),
        };
        match end {
            SessionEnd::Shutdown => break,
            SessionEnd::Cancelled => {
                warn!("The broker cancelled the consumer; subscribing again.");
                ctx.metrics.consumer_restarts.inc();
                // Re-subscribe promptly: the broker is up, only the queue changed.
                backoff.reset();
            }
            SessionEnd::Failed(error) => {
                warn!(%error, "Lost the RabbitMQ consumer; reconnecting.");
                ctx.metrics.consumer_restarts.inc();
            }
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = sleep(delay) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    info!("Stopped consuming.");
}

async fn subscribe(
    conn: &Connection,
    settings: &ConsumerSettings,
) -> Result<(Channel, Consumer), String> {
    let channel = conn.create_channel().await.map_err(|e| e.to_string())?;
    mailfleet_queue::declare_topology(&channel, &settings.queue_prefix)
        .await
        .map_err(|e| e.to_string())?;
    channel
        .basic_qos(settings.prefetch, BasicQosOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let queue = mailfleet_queue::names(&settings.queue_prefix).work;
    let consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok((channel, consumer))
}

/// One channel's worth of consuming.
struct Session<S: Store> {
    ctx: Arc<BatchContext<S>>,
    channel: Channel,
    consumer: Consumer,
    /// Connection errors, seen even while the consumer is not polled (the
    /// batch is full and mailstore is slow).
    events: Option<BoxStream<'static, Event>>,
    shutdown: CancellationToken,
    batch_size: usize,
    batch_wait: Duration,
    grace: Duration,
    tracker: AckTracker,
    /// The batch being filled, its delivery count and when it must go.
    filling: Vec<PendingJob>,
    filling_deliveries: usize,
    deadline: Option<Instant>,
    in_flight: FuturesUnordered<BatchFuture>,
    /// Jobs that failed temporarily, waiting out their pause before a nack.
    parked: FuturesUnordered<ParkedFuture>,
    /// Jobs being relayed, scheduled for retry or bounced; not limited by
    /// `MAX_IN_FLIGHT`, so a slow remote host never stalls local delivery
    /// (the prefetch bounds them).
    finishing: FuturesUnordered<FinishFuture>,
    requeue_backoff: Backoff,
    received: u64,
    /// The span of the batch being filled: it continues the first job's
    /// trace (from its AMQP headers) and links the others'.
    batch_span: Option<tracing::Span>,
}

impl<S: Store> Session<S> {
    fn new(
        settings: &ConsumerSettings,
        ctx: BatchContext<S>,
        channel: Channel,
        consumer: Consumer,
        events: BoxStream<'static, Event>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            ctx: Arc::new(ctx),
            channel,
            consumer,
            events: Some(events),
            shutdown,
            batch_size: settings.batch_size.max(1),
            batch_wait: settings.batch_wait,
            grace: settings.shutdown_grace,
            tracker: AckTracker::new(),
            filling: Vec::new(),
            filling_deliveries: 0,
            deadline: None,
            in_flight: FuturesUnordered::new(),
            parked: FuturesUnordered::new(),
            finishing: FuturesUnordered::new(),
            requeue_backoff: Backoff::new(REQUEUE_MIN, REQUEUE_MAX),
            received: 0,
            batch_span: None,
        }
    }

    async fn run(&mut self) -> SessionEnd {
        let end = match self.consume().await {
            Ok(()) => SessionEnd::Shutdown,
            Err(end) => end,
        };
        if matches!(end, SessionEnd::Shutdown) {
            self.drain().await;
        }
        // Otherwise the batches in flight are dropped: their jobs are
        // unacked and return to the queue with the channel.
        end
    }

    /// The main loop; `Ok` at shutdown.
    async fn consume(&mut self) -> Result<(), SessionEnd> {
        loop {
            let room = self.filling_deliveries < self.batch_size;
            let can_send = self.in_flight.len() < MAX_IN_FLIGHT;
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Ok(()),
                Some(report) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.settle(report).await?;
                }
                Some(tags) = self.parked.next(), if !self.parked.is_empty() => {
                    self.requeue(tags).await?;
                }
                Some((tag, finished)) = self.finishing.next(), if !self.finishing.is_empty() => {
                    self.finished(tag, finished).await?;
                }
                event = next_event(&mut self.events), if self.events.is_some() => match event {
                    Some(Event::Error(e)) => return Err(SessionEnd::Failed(e.to_string())),
                    Some(_) => {}
                    None => self.events = None,
                },
                _ = sleep_until(self.deadline.unwrap_or_else(Instant::now)), if self.deadline.is_some() && can_send => {
                    self.send_batch();
                }
                next = self.consumer.next(), if room => match next {
                    Some(Ok(delivery)) => self.accept(delivery).await?,
                    Some(Err(e)) => return Err(SessionEnd::Failed(e.to_string())),
                    None => {
                        return Err(if self.channel.status().connected() {
                            SessionEnd::Cancelled
                        } else {
                            SessionEnd::Failed("the channel closed".into())
                        });
                    }
                },
            }
            let due = self.deadline.is_some_and(|d| d <= Instant::now());
            if !self.filling.is_empty()
                && self.in_flight.len() < MAX_IN_FLIGHT
                && (self.filling_deliveries >= self.batch_size || due)
            {
                self.send_batch();
            }
        }
    }

    /// Takes one delivery from the queue into the batch being filled.
    async fn accept(&mut self, delivery: lapin::message::Delivery) -> Result<(), SessionEnd> {
        let tag = delivery.delivery_tag;
        self.received += 1;
        self.tracker.received(tag);
        self.ctx.metrics.jobs_consumed.inc();
        let job = match mailfleet_queue::decode_job(&delivery.data) {
            Ok(job) => job,
            Err(error) => {
                warn!(%error, tag, bytes = delivery.data.len(), "Undecodable delivery job; dead-lettering it.");
                return self.dead_letter(tag, "undecodable").await;
            }
        };
        let deliveries = match plan(&job) {
            Ok(d) => d,
            Err(reason) => {
                warn!(job_id = %job.job_id, reason, "Invalid delivery job; dead-lettering it.");
                return self.dead_letter(tag, reason).await;
            }
        };
        debug!(job_id = %job.job_id, recipients = deliveries.len(), attempt = job.attempt, redelivered = delivery.redelivered, "Job received.");
        if let Some(finisher) = &self.ctx.finisher
            && !finisher.is_live(&job).await
        {
            return self
                .settle(BatchReport {
                    done: vec![tag],
                    ..BatchReport::default()
                })
                .await;
        }
        if deliveries.is_empty() {
            warn!(job_id = %job.job_id, "Job without recipients; acking it.");
            return self
                .settle(BatchReport {
                    done: vec![tag],
                    ..BatchReport::default()
                })
                .await;
        }
        let trace = mailfleet_queue::trace_headers(&delivery.properties);
        match &self.batch_span {
            Some(span) => {
                mailfleet_runtime::trace_context::add_link_from(span, trace);
            }
            None => {
                let span = tracing::info_span!("delivery.batch");
                mailfleet_runtime::trace_context::set_parent_from(&span, trace);
                self.batch_span = Some(span);
            }
        }
        self.filling_deliveries += deliveries.len();
        self.filling.push(PendingJob {
            tag,
            job_id: job.job_id.clone(),
            deliveries,
            job,
        });
        if self.deadline.is_none() {
            self.deadline = Some(Instant::now() + self.batch_wait);
        }
        Ok(())
    }

    async fn dead_letter(&mut self, tag: u64, reason: &'static str) -> Result<(), SessionEnd> {
        self.channel
            .basic_reject(tag, BasicRejectOptions { requeue: false })
            .await
            .map_err(|e| SessionEnd::Failed(e.to_string()))?;
        self.tracker.forget(tag);
        self.ctx.metrics.dead_letter(reason);
        Ok(())
    }

    fn send_batch(&mut self) {
        self.deadline = None;
        self.filling_deliveries = 0;
        let jobs = std::mem::take(&mut self.filling);
        if jobs.is_empty() {
            return;
        }
        let ctx = self.ctx.clone();
        // Deliver calls inside carry the batch's trace context to mailstore.
        let span = self.batch_span.take().unwrap_or_else(tracing::Span::none);
        self.in_flight.push(Box::pin(
            async move { ctx.process(jobs).await }.instrument(span),
        ));
    }

    /// Acks finished jobs and parks the ones to requeue.
    async fn settle(&mut self, report: BatchReport) -> Result<(), SessionEnd> {
        let plan = self.tracker.complete(&report.done);
        if let Some(tag) = plan.multiple {
            ack(&self.channel, tag, true).await?;
        }
        for tag in plan.single {
            ack(&self.channel, tag, false).await?;
        }
        for _ in &report.done {
            self.ctx.metrics.job("acked");
        }
        if report.requeue.is_empty() {
            if !report.done.is_empty() {
                self.requeue_backoff.reset();
            }
        } else {
            let delay = self.requeue_backoff.next_delay();
            let tags = report.requeue;
            debug!(jobs = tags.len(), ?delay, "Requeueing jobs after a pause.");
            self.parked.push(Box::pin(async move {
                sleep(delay).await;
                tags
            }));
        }
        for handoff in report.handoff {
            self.start_finishing(handoff);
        }
        // Abandoned jobs stay held: the channel returns them when it closes.
        Ok(())
    }

    fn start_finishing(&mut self, handoff: Handoff) {
        let Some(finisher) = self.ctx.finisher.clone() else {
            // Not reachable: the batch only hands off with a finisher. Leave
            // the job held; it returns to the queue with the channel.
            return;
        };
        self.finishing.push(Box::pin(async move {
            let Handoff {
                tag,
                job,
                recipients,
                outcomes,
                sieve,
            } = handoff;
            (
                tag,
                finisher.finish(&job, recipients, outcomes, sieve).await,
            )
        }));
    }

    async fn finished(&mut self, tag: u64, finished: Finished) -> Result<(), SessionEnd> {
        match finished {
            Finished::Done => {
                Box::pin(self.settle(BatchReport {
                    done: vec![tag],
                    ..BatchReport::default()
                }))
                .await
            }
            // Held until the channel closes; the broker then requeues it.
            Finished::Abandoned => Ok(()),
        }
    }

    async fn requeue(&mut self, tags: Vec<u64>) -> Result<(), SessionEnd> {
        for tag in tags {
            self.channel
                .basic_nack(
                    tag,
                    BasicNackOptions {
                        multiple: false,
                        requeue: true,
                    },
                )
                .await
                .map_err(|e| SessionEnd::Failed(format!("nack failed: {e}")))?;
            self.tracker.forget(tag);
            self.ctx.metrics.job("requeued");
        }
        Ok(())
    }

    /// At shutdown: stop the consumer, send what was collected, let the
    /// batches in flight finish within the grace period and ack them. What
    /// stays unacked returns to the queue when the channel closes.
    async fn drain(&mut self) {
        let tag = self.consumer.tag();
        if let Err(error) = self
            .channel
            .basic_cancel(tag, BasicCancelOptions::default())
            .await
        {
            debug!(%error, "Cancelling the consumer failed.");
        }
        self.send_batch();
        let deadline = Instant::now() + self.grace;
        while !self.in_flight.is_empty() || !self.finishing.is_empty() {
            tokio::select! {
                Some(report) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    if let Err(end) = self.settle(report).await {
                        warn!(?end, "Could not settle jobs at shutdown; they return to the queue.");
                        return;
                    }
                }
                Some((tag, finished)) = self.finishing.next(), if !self.finishing.is_empty() => {
                    if let Err(end) = self.finished(tag, finished).await {
                        warn!(?end, "Could not settle jobs at shutdown; they return to the queue.");
                        return;
                    }
                }
                _ = sleep_until(deadline) => {
                    warn!(batches = self.in_flight.len(), finishing = self.finishing.len(), "Shutdown grace period over; unfinished jobs return to the queue.");
                    return;
                }
            }
        }
        // Parked jobs are requeued by the broker when the channel closes.
        info!(
            held = self.tracker.held(),
            "Batches finished; closing the channel."
        );
    }
}

async fn ack(channel: &Channel, tag: u64, multiple: bool) -> Result<(), SessionEnd> {
    channel
        .basic_ack(tag, BasicAckOptions { multiple })
        .await
        .map_err(|e| SessionEnd::Failed(format!("ack failed: {e}")))
}

async fn next_event(events: &mut Option<BoxStream<'static, Event>>) -> Option<Event> {
    match events {
        Some(events) => events.next().await,
        None => std::future::pending().await,
    }
}
