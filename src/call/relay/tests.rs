//! The relay's own tests: back-pressure, keep-alives, stalls, a key that stops holding.
use super::*;

/// A relay's limits for tests: the idle and keep-alive given, ten hours for the rest.
fn limits<'a>(
    stop: &'a CancellationToken,
    idle: Duration,
    keepalive: Duration,
    key: Option<KeyStanding<'a>>,
) -> Limits<'a> {
    Limits {
        deadline: Deadline::new(Instant::now(), None, Duration::from_secs(36_000)),
        stream: StreamLimits {
            first_event: idle,
            idle,
            total: Duration::from_secs(36_000),
            keepalive,
        },
        started: Instant::now(),
        upstream: "scripted",
        stop,
        cancel: None,
        key,
    }
}

#[tokio::test]
async fn a_stream_task_that_panics_ends_its_stream_with_internal() {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<u32, GatewayError>>(4);
    let sender = tx.clone();
    spawn_guarded(tx, async move {
        let _ = sender.send(Ok(1)).await;
        panic!("a bug mid-stream");
    });
    assert_eq!(rx.recv().await.unwrap().unwrap(), 1);
    let last = rx.recv().await.unwrap().unwrap_err();
    assert!(matches!(last, GatewayError::Internal(_)), "{last}");
    assert!(rx.recv().await.is_none());
    assert!(tasks::panicked_in("stream") >= 1);
}

/// A reader that does not read holds the relay at the channel's size: the relay stops pulling from the
/// upstream (whose own flow control then holds the provider), and pulls one more event per message read.
#[tokio::test(start_paused = true)]
async fn a_slow_reader_holds_the_upstream_read_at_the_channel_size() {
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };

    use crate::{observe::timing::Timing, upstream::scripted::ScriptedStream};

    let taken = Arc::new(AtomicUsize::new(0));
    let mut upstream = ChunkStream::Scripted(ScriptedStream::deltas(1_000, taken.clone()));
    let first = match upstream.next().await {
        Some(Ok(event)) => event,
        _ => panic!("the script starts with a delta"),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<String, GatewayError>>(STREAM_BUFFER);
    let stop = CancellationToken::new();
    #[allow(clippy::disallowed_methods)] // a test's own task
    let relay = tokio::spawn(async move {
        let limits = limits(
            &stop,
            Duration::from_secs(60),
            Duration::from_secs(3_600),
            None,
        );
        let mut timing = Timing::default();
        let text = |r| match r {
            Relayed::Text(t) => t,
            other => panic!("only text in this script: {other:?}"),
        };
        pump(first, &mut upstream, &tx, text, &limits, &mut timing).await
    });
    let settle = || async {
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
    };
    settle().await;
    // The channel is full and one more delta waits to be sent; nothing else was read upstream.
    assert_eq!(rx.len(), STREAM_BUFFER);
    assert_eq!(taken.load(Ordering::SeqCst), STREAM_BUFFER + 1);
    // Still held a minute later: waiting for room is not an upstream stall.
    tokio::time::sleep(Duration::from_secs(59)).await;
    settle().await;
    assert_eq!(taken.load(Ordering::SeqCst), STREAM_BUFFER + 1);
    // Each message read lets exactly one more event through.
    for read in 1..=3 {
        assert_eq!(rx.recv().await.unwrap().unwrap(), format!("t{} ", read - 1));
        settle().await;
        assert_eq!(taken.load(Ordering::SeqCst), STREAM_BUFFER + 1 + read);
    }
    // A reader that leaves ends the relay at once, the rest of the upstream unread.
    drop(rx);
    let ended = relay.await.unwrap();
    assert!(matches!(ended, Err(GatewayError::Cancelled(_))));
    assert_eq!(taken.load(Ordering::SeqCst), STREAM_BUFFER + 4);
}

/// A key revoked while every piece of its stream is already buffered (the relay never waits on the upstream,
/// so only its check of the keys' version between pieces can see the change) still ends the stream, with
/// UNAUTHENTICATED, within a channel's worth of pieces, the rest of the upstream unread.
#[tokio::test]
async fn a_revoked_key_ends_a_stream_that_never_waits() {
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };

    use crate::{
        admission::registry::NewKey, config::Config, observe::timing::Timing,
        upstream::scripted::ScriptedStream,
    };

    let cfg = Config::parse(
        "[server]\nlisten = \"127.0.0.1:0\"\n[[upstreams]]\nname = \"u\"\nkind = \"mock\"\n\
         [[models]]\nname = \"m\"\nmax_output_tokens = 10\nroutes = [{ upstream = \"u\", model = \"x\" }]\n",
        |_| None,
    )
    .unwrap();
    let gw = Gateway::new(&cfg).unwrap();
    let new = || NewKey {
        name: "k".into(),
        models: None,
        limits: Default::default(),
        group: None,
        expires_at: None,
        metadata: None,
    };
    let (_, secret) = gw.change_keys(|r| r.create(new(), false)).await.unwrap();
    let who = gw
        .authenticate(Some(format!("Bearer {secret}").as_bytes()))
        .unwrap();

    let taken = Arc::new(AtomicUsize::new(0));
    let mut upstream = ChunkStream::Scripted(ScriptedStream::deltas(1_000, taken.clone()));
    let first = upstream.next().await.unwrap().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Relayed, GatewayError>>(STREAM_BUFFER);
    let stop = CancellationToken::new();
    let limits = limits(
        &stop,
        Duration::from_secs(60),
        Duration::from_secs(3_600),
        Some(KeyStanding::new(&gw, &who, "m")),
    );
    let relay = async move {
        let mut timing = Timing::default();
        let ended = pump(first, &mut upstream, &tx, |r| r, &limits, &mut timing).await;
        drop(tx);
        ended
    };
    let reader = async {
        let mut read = 0;
        while let Some(piece) = rx.recv().await {
            assert!(matches!(piece, Ok(Relayed::Text(_))), "{piece:?}");
            read += 1;
            if read == 3 {
                gw.change_keys(|r| r.delete("k")).await.unwrap();
            }
        }
        read
    };
    let (ended, read) = tokio::join!(relay, reader);
    let e = ended.unwrap_err();
    assert!(matches!(e, GatewayError::Unauthenticated(_)), "{e}");
    assert!(read <= 3 + STREAM_BUFFER + 1, "{read} pieces read");
    assert!(taken.load(Ordering::SeqCst) <= 3 + STREAM_BUFFER + 2);
}

/// Pumps a timed script with the given idle and keep-alive limits; returns what the client got, each with the
/// (paused) time it was sent at, and how the relay ended.
async fn pumped(
    script: Vec<(Duration, Result<StreamEvent, GatewayError>)>,
    idle: Duration,
    keepalive: Duration,
) -> (Vec<(Duration, Relayed)>, Result<StreamEnd, GatewayError>) {
    use crate::{observe::timing::Timing, upstream::scripted::ScriptedStream};
    let t0 = Instant::now();
    let mut upstream = ChunkStream::Scripted(ScriptedStream::timed(script));
    let first = upstream.next().await.unwrap().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<_, GatewayError>>(STREAM_BUFFER);
    let stop = CancellationToken::new();
    let limits = limits(&stop, idle, keepalive, None);
    let mut timing = Timing::default();
    let wrap = |r: Relayed| (t0.elapsed(), r);
    let ended = pump(first, &mut upstream, &tx, wrap, &limits, &mut timing).await;
    drop(tx);
    let mut got = Vec::new();
    while let Some(Ok(m)) = rx.recv().await {
        got.push(m);
    }
    (got, ended)
}

fn thought(text: &str) -> Result<StreamEvent, GatewayError> {
    Ok(StreamEvent::Reasoning(crate::proto::ReasoningDelta {
        text: text.into(),
        ..Default::default()
    }))
}

/// A 45 s silence with a 15 s keep-alive: heartbeats at 15, 30 and 45 s after the last thing sent, and none
/// while pieces keep coming.
#[tokio::test(start_paused = true)]
async fn silences_are_filled_with_heartbeats_at_the_keepalive_interval() {
    let s = Duration::from_secs;
    let script = vec![
        (s(0), thought("a")),
        (s(10), thought("b")),
        (s(46), Ok(StreamEvent::Delta("c".into()))),
        (s(1), Ok(StreamEvent::End(StreamEnd::default()))),
    ];
    let (got, ended) = pumped(script, s(300), s(15)).await;
    assert!(ended.is_ok());
    let beats: Vec<Duration> = got
        .iter()
        .filter(|(_, r)| *r == Relayed::Heartbeat)
        .map(|(at, _)| *at)
        .collect();
    assert_eq!(beats, [s(25), s(40), s(55)]);
    assert_eq!(got.len(), 6);
    assert_eq!(got[5], (s(56), Relayed::Text("c".into())));
}

/// Reasoning that goes on past the idle limit after the first text is alive as long as pieces come: only a
/// silence longer than `idle` is a stall.
#[tokio::test(start_paused = true)]
async fn reasoning_after_text_keeps_the_stream_alive_past_the_idle_limit() {
    let s = Duration::from_secs;
    let mut script = vec![(s(0), Ok(StreamEvent::Delta("first".into())))];
    script.extend((0..5).map(|_| (s(40), thought("still thinking"))));
    script.push((s(59), Ok(StreamEvent::Progress)));
    script.push((s(59), Ok(StreamEvent::End(StreamEnd::default()))));
    let (got, ended) = pumped(script.clone(), s(60), s(3_600)).await;
    assert!(ended.is_ok(), "{ended:?}");
    assert_eq!(got.len(), 6);
    // The same with one silence of 61 s: stalled, and said so.
    script[3].0 = s(61);
    let (got, ended) = pumped(script, s(60), s(3_600)).await;
    assert_eq!(got.len(), 3);
    let e = ended.unwrap_err();
    assert!(
        e.to_string().contains("nothing from the upstream for 1m"),
        "{e}"
    );
}
