//! The publisher against the real RabbitMQ, each test in its own vhost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use lapin::options::{BasicGetOptions, QueueDeleteOptions};
use mailfleet_proto::v1::DeliveryJob;
use mailfleet_queue::{Publisher, connect, decode_job, names, retry_queue};

struct Vhost(String);

impl Vhost {
    fn new(tag: &str) -> Self {
        let name = format!("mf_queue_{tag}_{}", std::process::id());
        let ok = |args: &[&str]| {
            let out = Command::new("rabbitmqctl")
                .args(args)
                .output()
                .expect("rabbitmqctl");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ok(&["add_vhost", &name]);
        ok(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        Vhost(name)
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.0)
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.0])
            .output();
    }
}

fn job(id: &str) -> DeliveryJob {
    DeliveryJob {
        job_id: id.into(),
        return_path: "a@remote.test".into(),
        blob_id: "ab".repeat(32),
        blob_size: 42,
        ..DeliveryJob::default()
    }
}

/// Takes every message from the work queue: (job id, persistent?).
async fn drain(url: &str) -> Vec<(String, bool)> {
    let conn = connect(url).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get(
            names("mailfleet").work.as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
    {
        let persistent = m.delivery.properties.delivery_mode() == &Some(2);
        out.push((decode_job(&m.delivery.data).unwrap().job_id, persistent));
    }
    out
}

#[tokio::test]
async fn confirmed_jobs_are_persistent_and_on_the_durable_queue() {
    let vhost = Vhost::new("confirm");
    let p = Publisher::new(&vhost.url(), "mailfleet");
    for i in 0..20 {
        p.publish_job(&job(&format!("j{i}")), Duration::from_secs(10))
            .await
            .unwrap();
    }
    let got = drain(&vhost.url()).await;
    assert_eq!(got.len(), 20);
    assert!(got.iter().all(|(_, persistent)| *persistent));
}

#[tokio::test]
async fn publishing_survives_the_broker_dropping_connections() {
    let vhost = Vhost::new("drop");
    let p = Publisher::new(&vhost.url(), "mailfleet");
    p.publish_job(&job("before"), Duration::from_secs(10))
        .await
        .unwrap();
    let out = Command::new("rabbitmqctl")
        .args(["close_all_connections", "-p", &vhost.0, "test"])
        .output()
        .unwrap();
    assert!(out.status.success());
    // The old link is dead; the publisher must notice and reconnect.
    p.publish_job(&job("after"), Duration::from_secs(10))
        .await
        .unwrap();
    let ids: Vec<String> = drain(&vhost.url())
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert!(
        ids.contains(&"before".to_string()) && ids.contains(&"after".to_string()),
        "{ids:?}"
    );
}

#[tokio::test]
async fn a_deleted_queue_is_declared_again_instead_of_losing_the_job() {
    let vhost = Vhost::new("deleted");
    let p = Publisher::new(&vhost.url(), "mailfleet");
    p.publish_job(&job("first"), Duration::from_secs(10))
        .await
        .unwrap();
    let conn = connect(&vhost.url()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.queue_delete(
        names("mailfleet").work.as_str().into(),
        QueueDeleteOptions::default(),
    )
    .await
    .unwrap();
    // The publish is mandatory: the broker returns it as unroutable, the
    // publisher redeclares the topology on a fresh link and publishes again.
    p.publish_job(&job("second"), Duration::from_secs(10))
        .await
        .unwrap();
    let ids: Vec<String> = drain(&vhost.url())
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, vec!["second".to_string()]);
}

#[tokio::test]
async fn an_unreachable_broker_is_a_transient_error() {
    let p = Publisher::new("amqp://guest:guest@127.0.0.1:1/%2f", "mailfleet");
    let err = p
        .publish_job(&job("x"), Duration::from_millis(800))
        .await
        .unwrap_err();
    assert!(err.is_transient());
}

#[tokio::test]
async fn a_retry_copy_waits_its_delay_then_returns_to_the_work_queue() {
    let vhost = Vhost::new("retry");
    let p = Publisher::new(&vhost.url(), "mailfleet");
    // Published first with a delay no test outlasts: when the copies
    // published after it with a short delay are back, it must still wait.
    let long = Duration::from_secs(3600);
    p.publish_retry(&job("patient"), long, Duration::from_secs(10))
        .await
        .unwrap();
    p.publish_retry(
        &job("late"),
        Duration::from_millis(800),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    // Declared twice (the second publish reuses the declared queue).
    p.publish_retry(
        &job("later"),
        Duration::from_millis(800),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    // The deadline only fails a hang.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while got.len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the retry copies never came back: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        got.extend(drain(&vhost.url()).await);
    }
    let ids: Vec<_> = got.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["late", "later"]);
    assert!(got.iter().all(|(_, persistent)| *persistent));
    let conn = connect(&vhost.url()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let waiting = ch
        .basic_get(
            retry_queue("mailfleet", long).as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("the long-delayed copy still waits in its retry queue");
    assert_eq!(
        decode_job(&waiting.delivery.data).unwrap().job_id,
        "patient"
    );
}
