//! What a session sends: its channel, a turn's event, a turn's in-band error.

use tokio::sync::mpsc;
use tonic::Status;

use crate::{
    error::GatewayError,
    proto::{interactive_response::Event, InteractiveResponse, TurnError},
};

pub(super) type Tx = mpsc::Sender<Result<InteractiveResponse, Status>>;

pub(super) fn response(turn: u32, event: Event) -> InteractiveResponse {
    InteractiveResponse {
        turn,
        event: Some(event),
    }
}

pub(super) fn turn_error(turn: u32, err: &GatewayError) -> InteractiveResponse {
    response(
        turn,
        Event::Error(TurnError {
            code: err.code() as i32,
            message: err.to_string(),
        }),
    )
}
