//! BDAT (RFC 3030 CHUNKING): the gate's decision on each chunk. The octets
//! of a chunk always follow the command, so even a refused chunk is read
//! (and dropped) by the connection before the reply, keeping the stream in
//! step.

use super::{Outcome, Session, State, data};
use crate::codec::reply::{self, Reply};

/// What the connection does with the octets of a chunk.
#[derive(Debug)]
pub enum ChunkStep {
    /// The first chunk: open the body of this transaction.
    Start(Box<super::Transaction>),
    /// A further chunk of the open body.
    Continue,
    /// Read and drop the octets, then answer this.
    Discard(Reply),
}

pub(super) fn bdat(session: &mut Session, size: u64, last: bool) -> Outcome {
    let step = match &session.state {
        State::Mail { envelope, .. } if envelope.recipients.is_empty() => {
            ChunkStep::Discard(reply::bad_sequence("Need RCPT before BDAT"))
        }
        State::Mail { .. } => match data::begin_transaction(session) {
            Some(tx) => ChunkStep::Start(Box::new(tx)),
            None => ChunkStep::Discard(reply::bad_sequence("Need MAIL and RCPT before BDAT")),
        },
        State::Chunking { .. } => ChunkStep::Continue,
        State::Fresh | State::Ready { .. } => {
            ChunkStep::Discard(reply::bad_sequence("Need MAIL and RCPT before BDAT"))
        }
    };
    match (&step, &session.state) {
        // Opening: the session now waits for further chunks, unless this is
        // the only one.
        (ChunkStep::Start(tx), _) => {
            session.state = if last {
                State::Ready {
                    client: tx.client.clone(),
                }
            } else {
                State::Chunking {
                    client: tx.client.clone(),
                }
            };
        }
        (ChunkStep::Continue, State::Chunking { client }) if last => {
            session.state = State::Ready {
                client: client.clone(),
            };
        }
        _ => {}
    }
    Outcome::Chunk { size, last, step }
}
