use tonic::Code;

use super::{replies::response, session::settle, turn};
use crate::{
    observe::tasks,
    proto::{interactive_response::Event, TurnError},
};

#[tokio::test]
async fn a_turn_whose_task_panicked_is_answered_in_band() {
    let task = tasks::spawn("turn", async {
        if true {
            panic!("a bug in the turn");
        }
        turn::Outcome {
            answer: None,
            usage: None,
            last: response(1, Event::Error(TurnError::default())),
        }
    });
    let ended = settle(3, task.await);
    assert!(ended.answer.is_none() && ended.usage.is_none());
    assert_eq!(ended.last.turn, 3);
    let Some(Event::Error(e)) = ended.last.event else {
        panic!("no TurnError: {:?}", ended.last)
    };
    assert_eq!(e.code, Code::Internal as i32);
    assert!(tasks::panicked_in("turn") >= 1);
}
