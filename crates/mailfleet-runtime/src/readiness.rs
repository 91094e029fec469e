//! Readiness of a service that depends on mailstore: a cheap authenticated
//! call every few seconds proves both that mailstore answers (its database
//! included) and that it accepts the service token.

use std::time::Duration;

use mailfleet_proto::v1::ListMailboxesRequest;
use tokio_util::sync::CancellationToken;

use crate::grpc::MailStore;
use crate::http::HealthFlag;
use tonic::Code;

const INTERVAL: Duration = Duration::from_secs(2);
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Keeps `flag` equal to whether mailstore answers, until `shutdown`.
pub async fn watch_mailstore(mut client: MailStore, flag: HealthFlag, shutdown: CancellationToken) {
    loop {
        let ok = probe(&mut client).await;
        if ok != flag.get() {
            if ok {
                tracing::info!("mailstore answers; ready.");
            } else {
                tracing::warn!("mailstore does not answer; not ready.");
            }
        }
        flag.set(ok);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(INTERVAL) => {}
        }
    }
}

async fn probe(client: &mut MailStore) -> bool {
    // An account that cannot exist: any answer about it (none, or not found)
    // shows mailstore is serving; transport and credential errors do not.
    let request = ListMailboxesRequest {
        account: "readiness-probe@invalid".into(),
    };
    match tokio::time::timeout(CALL_TIMEOUT, client.list_mailboxes(request)).await {
        Ok(Ok(_)) => true,
        Ok(Err(status)) => matches!(
            status.code(),
            Code::NotFound | Code::InvalidArgument | Code::FailedPrecondition
        ),
        Err(_) => false,
    }
}
