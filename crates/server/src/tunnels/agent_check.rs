//! Asking the agent, before a tunnel is created, whether its own configuration allows the
//! target and (with `check_port`) whether the target accepts connections.

use std::time::Duration;

use bytes::Bytes;
use rport_protocol::tunnel_spec::Endpoint;
use rport_protocol::{CheckAnswer, CheckOutcome, CheckRequest, OpenRequest, StreamProtocol};

use crate::domain::registry::LiveSession;

/// Time for the agent to answer on top of its own dial timeout.
const ANSWER_MARGIN: Duration = Duration::from_secs(5);

/// Largest answer read from an agent.
const MAX_ANSWER: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("Tunnel destination is not allowed by client configuration: {0}")]
    NotAllowed(String),
    #[error("{0}")]
    RemotePortNotOpen(String),
    #[error("the client did not answer the tunnel check: {0}")]
    NoAnswer(String),
}

pub(super) async fn check(
    session: &LiveSession,
    target: &Endpoint,
    dial_timeout: Option<Duration>,
) -> Result<(), CheckError> {
    let request = OpenRequest {
        tunnel_id: String::new(),
        host: target.host.clone(),
        port: target.port,
        protocol: StreamProtocol::Tcp,
        check: Some(CheckRequest {
            dial_timeout_ms: dial_timeout.map(|t| t.as_millis() as u64),
        }),
    };
    let stream = session
        .handle
        .open_stream(Bytes::from(request.to_json()))
        .map_err(|err| CheckError::NoAnswer(err.to_string()))?;
    let (mut reader, mut writer) = stream.split();
    let _ = writer.finish().await;
    let read_answer = async {
        let mut answer = Vec::new();
        while let Some(chunk) = reader
            .recv()
            .await
            .map_err(|err| CheckError::NoAnswer(err.to_string()))?
        {
            answer.extend_from_slice(&chunk);
            if answer.len() > MAX_ANSWER {
                return Err(CheckError::NoAnswer("answer too large".into()));
            }
        }
        CheckAnswer::from_json(&answer).map_err(|err| CheckError::NoAnswer(err.to_string()))
    };
    let wait = dial_timeout.unwrap_or_default() + ANSWER_MARGIN;
    let answer = tokio::time::timeout(wait, read_answer)
        .await
        .map_err(|_| CheckError::NoAnswer(format!("no answer within {wait:?}")))??;
    match answer.outcome {
        CheckOutcome::Ok => Ok(()),
        // The agent's message is left out: an agent of an earlier version says there
        // which addresses the name resolved to, and the caller must not learn that.
        CheckOutcome::NotAllowed => Err(CheckError::NotAllowed(format!(
            "{target} is not allowed by the device's tunnel_allowed: allow it in [client] tunnel_allowed of the device's rport.conf (the device's log says what it checked)"
        ))),
        CheckOutcome::NotReachable => Err(CheckError::RemotePortNotOpen(format!(
            "{target} is not reachable from the client: {}",
            answer.message
        ))),
    }
}
