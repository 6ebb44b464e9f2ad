//! A scripted OpenAI-style upstream for tests: a raw HTTP/1.1 server on 127.0.0.1:0 that records every
//! request, answers each with the next scripted reply (the last one repeats), and notices when the gateway
//! closes a connection in the middle of a reply. Raw TCP so a script can split bytes anywhere, stall, or reset.

// Test helpers: a failed set-up step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{tcp::OwnedReadHalf, TcpListener, TcpStream},
    sync::Notify,
};

#[derive(Clone, Debug)]
pub enum Part {
    Bytes(Vec<u8>),
    Delay(Duration),
    /// Holds the reply until the test opens the gate (`notify_one`), or the client goes away.
    Gate(Arc<Notify>),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum End {
    /// Finish the chunked body; the connection stays open for the next request.
    Finish,
    /// Send nothing more, until the client goes away.
    Hang,
    /// Reset the connection (RST).
    Reset,
}

#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Before the status line: a slow upstream.
    pub head_delay: Option<Duration>,
    pub parts: Vec<Part>,
    pub end: End,
}

impl Reply {
    pub fn json(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            head_delay: None,
            parts: vec![Part::Bytes(body.as_bytes().to_vec())],
            end: End::Finish,
        }
    }

    /// An SSE reply, each string one whole `data:` event.
    pub fn sse(events: &[String]) -> Reply {
        let body: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
        Reply::sse_raw(vec![Part::Bytes(body.into_bytes())])
    }

    /// Anthropic's event stream: each event as `event: <its type>` and `data: <json>`.
    pub fn anthropic_sse(events: &[serde_json::Value]) -> Reply {
        let body: String = events
            .iter()
            .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or("")))
            .collect();
        Reply::sse_raw(vec![Part::Bytes(body.into_bytes())])
    }

    pub fn sse_raw(parts: Vec<Part>) -> Reply {
        Reply {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            head_delay: None,
            parts,
            end: End::Finish,
        }
    }

    /// An upstream that takes the request and never answers.
    pub fn never() -> Reply {
        Reply::json(200, "{}").head_delay(Duration::from_secs(3600))
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn end(mut self, end: End) -> Reply {
        self.end = end;
        self
    }

    pub fn head_delay(mut self, d: Duration) -> Reply {
        self.head_delay = Some(d);
        self
    }
}

/// A request as the upstream saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// When the request arrived (for lower bounds on the waits between attempts).
    pub at: std::time::Instant,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
    /// The body as sent (for bodies that are not JSON).
    pub raw_body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    script: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Recorded>>,
    calls: AtomicUsize,
    /// Connections the client closed while a reply was still in progress.
    aborted: AtomicUsize,
    aborted_notify: Notify,
    /// What the real service checks of a request: a request it refuses gets this reply, not the script's.
    check: Option<fn(&Recorded) -> Option<Reply>>,
}

#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl Upstream {
    pub async fn start(script: Vec<Reply>) -> Upstream {
        Self::start_checked(script, None).await
    }

    /// An upstream that refuses, as the real service would, each request that `check` finds wrong (the refusal
    /// takes no reply from the script).
    pub async fn start_checked(
        script: Vec<Reply>,
        check: Option<fn(&Recorded) -> Option<Reply>>,
    ) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            script: Mutex::new(script.into()),
            check,
            ..State::default()
        });
        let s = state.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(serve(tcp, s.clone()));
            }
        });
        Upstream { addr, state }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn aborted(&self) -> usize {
        self.state.aborted.load(Ordering::SeqCst)
    }

    /// Waits until the gateway has closed `n` connections mid-reply. The bound only keeps a broken build from
    /// hanging the suite; a passing run returns as soon as the close is seen.
    pub async fn wait_aborted(&self, n: usize) {
        let wait = async {
            loop {
                let notified = self.state.aborted_notify.notified();
                if self.aborted() >= n {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), wait)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the upstream connection was never closed (aborted = {})",
                    self.aborted()
                )
            });
    }
}

async fn serve(tcp: TcpStream, state: Arc<State>) {
    let (mut rd, mut wr) = tcp.into_split();
    let mut buf = Vec::new();
    loop {
        let Some(req) = read_request(&mut rd, &mut buf).await else {
            return;
        };
        state.calls.fetch_add(1, Ordering::SeqCst);
        let refusal = state.check.and_then(|check| check(&req));
        state.requests.lock().unwrap().push(req);
        let reply = if refusal.is_some() {
            refusal
        } else {
            let mut script = state.script.lock().unwrap();
            if script.len() > 1 {
                script.pop_front()
            } else {
                script.front().cloned()
            }
        };
        let Some(reply) = reply else { return };
        let closed_early = || {
            state.aborted.fetch_add(1, Ordering::SeqCst);
            state.aborted_notify.notify_waiters();
        };
        if let Some(d) = reply.head_delay {
            if !pause(&mut rd, d).await {
                return closed_early();
            }
        }
        let mut head = format!(
            "HTTP/1.1 {} X\r\ntransfer-encoding: chunked\r\n",
            reply.status
        );
        for (k, v) in &reply.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        if wr.write_all(head.as_bytes()).await.is_err() {
            return closed_early();
        }
        for part in &reply.parts {
            match part {
                Part::Bytes(b) if !b.is_empty() => {
                    let chunk = [format!("{:x}\r\n", b.len()).as_bytes(), b, b"\r\n"].concat();
                    if wr.write_all(&chunk).await.is_err() {
                        return closed_early();
                    }
                }
                Part::Bytes(_) => {}
                Part::Delay(d) => {
                    if !pause(&mut rd, *d).await {
                        return closed_early();
                    }
                }
                Part::Gate(gate) => {
                    let mut byte = [0u8; 1];
                    let open = tokio::select! {
                        _ = gate.notified() => true,
                        n = rd.peek(&mut byte) => !matches!(n, Ok(0) | Err(_)),
                    };
                    if !open {
                        return closed_early();
                    }
                }
            }
        }
        match reply.end {
            End::Finish => {
                if wr.write_all(b"0\r\n\r\n").await.is_err() {
                    return;
                }
            }
            End::Hang => {
                let _ = rd.read(&mut [0u8; 1]).await; // returns when the client closes
                return closed_early();
            }
            End::Reset => {
                let tcp = rd.reunite(wr).unwrap();
                let _ = tcp.set_zero_linger();
                return;
            }
        }
    }
}

/// Waits `d`, or returns false as soon as the client closes the connection.
async fn pause(rd: &mut OwnedReadHalf, d: Duration) -> bool {
    let mut byte = [0u8; 1];
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        n = rd.peek(&mut byte) => !matches!(n, Ok(0) | Err(_)),
    }
}

async fn read_request(rd: &mut OwnedReadHalf, buf: &mut Vec<u8>) -> Option<Recorded> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 8192];
        let n = rd.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_owned(), first.next()?.to_owned());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let body_start = head_end + 4;
    while buf.len() < body_start + len {
        let mut chunk = [0u8; 8192];
        let n = rd.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let raw_body = buf[body_start..body_start + len].to_vec();
    let body = serde_json::from_slice(&raw_body).unwrap_or(serde_json::Value::Null);
    buf.drain(..body_start + len);
    Some(Recorded {
        at: std::time::Instant::now(),
        method,
        path,
        headers,
        body,
        raw_body,
    })
}

// ---- OpenAI payloads --------------------------------------------------------------------------------------

pub fn completion(content: &str, finish: &str, prompt: u32, completion: u32) -> String {
    serde_json::json!({
        "id": "chatcmpl-test", "object": "chat.completion", "model": "up-model-2025",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    })
    .to_string()
}

pub fn chunk(content: &str) -> String {
    serde_json::json!({
        "id": "chatcmpl-s", "object": "chat.completion.chunk", "model": "up-model-2025",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}], "usage": null
    })
    .to_string()
}

pub fn role_chunk() -> String {
    serde_json::json!({
        "id": "chatcmpl-s", "object": "chat.completion.chunk", "model": "up-model-2025",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]
    })
    .to_string()
}

pub fn finish_chunk(reason: &str) -> String {
    serde_json::json!({
        "id": "chatcmpl-s", "object": "chat.completion.chunk", "model": "up-model-2025",
        "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]
    })
    .to_string()
}

pub fn usage_chunk(prompt: u32, completion: u32) -> String {
    serde_json::json!({
        "id": "chatcmpl-s", "object": "chat.completion.chunk", "model": "up-model-2025", "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    })
    .to_string()
}

/// A complete, well-formed stream of `words`.
pub fn stream_of(words: &[&str]) -> Vec<String> {
    let mut events = vec![role_chunk()];
    events.extend(words.iter().map(|w| chunk(w)));
    events.push(finish_chunk("stop"));
    events.push(usage_chunk(7, words.len() as u32));
    events.push("[DONE]".into());
    events
}
