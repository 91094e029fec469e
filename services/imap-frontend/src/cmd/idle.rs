//! IDLE (RFC 2177), NOOP and CHECK: the commands that only report what
//! changed. NOOP and CHECK ask mailstore whatever the events said; IDLE
//! waits for change events (or a poll, should one be lost) until DONE.

use std::time::Duration;

use mailfleet_runtime::CancellationToken;
use tokio::io::AsyncBufReadExt;
use tokio::sync::broadcast;

use crate::session::{Reply, Session};

/// How often an IDLE session resynchronises even without events (a lost
/// event, or RabbitMQ down, costs at most this delay).
const IDLE_POLL: Duration = Duration::from_secs(60);
/// The same while the event feed is down.
const IDLE_POLL_WITHOUT_EVENTS: Duration = Duration::from_secs(10);

/// NOOP and CHECK: what other sessions did, now.
pub(crate) async fn noop(s: &mut Session) -> std::io::Result<Reply> {
    s.sync_inner(true, true).await?;
    Ok(Reply::Ok("NOOP completed".into()))
}

/// IDLE: pushes changes until DONE.
pub(crate) async fn idle(s: &mut Session, shutdown: &CancellationToken) -> std::io::Result<Reply> {
    s.out.extend_from_slice(b"+ idling\r\n");
    s.sync_inner(true, true).await?;
    s.flush().await?;
    s.shared.metrics.idle.inc();
    let result = idle_loop(s, shutdown).await;
    s.shared.metrics.idle.dec();
    // What changed after the last push is reported before the tagged OK.
    s.resynced = false;
    result
}

async fn idle_loop(s: &mut Session, shutdown: &CancellationToken) -> std::io::Result<Reply> {
    let deadline = tokio::time::Instant::now() + s.shared.idle_timeout;
    loop {
        let idle_poll = if s.shared.feed.epoch().is_some() {
            IDLE_POLL
        } else {
            IDLE_POLL_WITHOUT_EVENTS
        };
        let mut line = Vec::new();
        let event = tokio::select! {
            _ = shutdown.cancelled() => {
                s.untagged("BYE mailfleet IMAP shutting down");
                s.flush().await?;
                return Err(std::io::Error::other("shutdown"));
            }
            _ = tokio::time::sleep_until(deadline) => {
                s.untagged("BYE Autologout; idle for too long");
                s.flush().await?;
                return Err(std::io::Error::other("idle timeout"));
            }
            _ = tokio::time::sleep(idle_poll) => None,
            e = s.events.recv() => Some(e),
            r = s.io.fill_buf() => {
                let _ = r?;
                // The rest of the line (DONE) is due by the same deadline.
                let Ok(read) = tokio::time::timeout_at(deadline, s.read_line(&mut line)).await else {
                    s.untagged("BYE Autologout; idle for too long");
                    s.flush().await?;
                    return Err(std::io::Error::other("idle timeout"));
                };
                match read? {
                    Some(true) => {
                        let trimmed = line.trim_ascii();
                        if trimmed.eq_ignore_ascii_case(b"DONE") {
                            return Ok(Reply::Ok("IDLE terminated".into()));
                        }
                        return Ok(Reply::Bad("Expected DONE".into()));
                    }
                    Some(false) => return Err(std::io::Error::other("eof in IDLE")),
                    None => return Ok(Reply::Bad("Expected DONE".into())),
                }
            }
        };
        let mut force = event.is_none();
        if let Some(sel) = s.state.selected_mut() {
            match event {
                Some(Ok(e)) if e.mailbox_id == sel.id && e.highestmodseq > sel.modseq => {
                    sel.dirty = true
                }
                Some(Err(broadcast::error::RecvError::Lagged(_))) => force = true,
                _ => {}
            }
        }
        s.sync_inner(true, force).await?;
        s.flush().await?;
    }
}
