//! One request to the mock: its chaos fate first (a status, a reset, a stall), then the chat completion or
//! embeddings answer, whole or as a paced SSE stream.

use super::*;

/// One step of a streamed body.
enum Step {
    /// Token `i`'s event, sent when the pacing says.
    Token(usize),
    /// Bytes sent at once.
    Raw(String),
    Sleep(Duration),
    /// Cut the connection.
    Fail,
}

pub(super) async fn handle(
    state: Arc<(MockServerConfig, Chaos, Vec<Bytes>)>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (cfg, chaos) = (&state.0, &state.1);
    if req.method() == Method::GET && req.uri().path() == "/stats" {
        let json = serde_json::to_vec(&chaos.stats()).unwrap_or_default();
        return Ok(full(StatusCode::OK, "application/json", json));
    }
    if cfg.dialect != MockDialect::Openai && req.method() == Method::POST {
        // Another API's stream, whatever was asked: the request is read and the canned events sent.
        if let Err(e) = Limited::new(req.into_body(), BODY_LIMIT).collect().await {
            return Ok(error(StatusCode::PAYLOAD_TOO_LARGE, &e.to_string()));
        }
        let frames = state.2.clone().into_iter().map(|b| Ok(Frame::data(b)));
        let mut resp = Response::new(BodyExt::boxed(StreamBody::new(futures_util::stream::iter(
            frames,
        ))));
        if let Ok(v) = http::HeaderValue::from_str(cfg.dialect.content_type()) {
            resp.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        return Ok(resp);
    }
    let embeddings = req.uri().path().ends_with("/embeddings");
    if req.method() != Method::POST
        || !(embeddings || req.uri().path().ends_with("/chat/completions"))
    {
        return Ok(error(
            StatusCode::NOT_FOUND,
            "only POST …/chat/completions and …/embeddings are served",
        ));
    }
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = match Limited::new(req.into_body(), BODY_LIMIT).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ok(error(StatusCode::PAYLOAD_TOO_LARGE, &e.to_string())),
    };
    if embeddings {
        return Ok(embed(&bytes));
    }
    let incoming: IncomingRequest = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => return Ok(error(StatusCode::BAD_REQUEST, &e.to_string())),
    };
    let mut reply = answer(&incoming, cfg.tokens);
    let fate = chaos.fate(request_id.as_deref(), incoming.stream, reply.tokens.len());
    if let Fate::Error(status) = fate {
        return Ok(injected(status, chaos.config.retry_after));
    }
    if chaos.config.split_surrogates && !reply.tokens.is_empty() {
        let n = reply.tokens.len();
        if incoming.stream && n >= 2 {
            reply.tokens[n - 2].push(HIGH);
            reply.tokens[n - 1].insert(0, LOW);
        } else {
            reply.tokens[n - 1].push('😀');
        }
    }
    let pacing = Pacing::new(cfg.first_token_latency, cfg.tokens_per_second);
    let start = Instant::now();
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if !incoming.stream {
        pacing
            .token(start, reply.tokens.len().saturating_sub(1))
            .await;
        let text = reply.tokens.concat();
        let body = Completion {
            id: &reply.id,
            object: "chat.completion",
            created,
            model: &reply.model,
            choices: [CompletionChoice {
                index: 0,
                message: OutMessage {
                    role: "assistant",
                    content: reply.tool_calls.is_empty().then_some(text.as_str()),
                    tool_calls: reply.tool_calls.iter().map(call_json).collect(),
                },
                finish_reason: reply.finish_reason,
            }],
            usage: reply.usage.into(),
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        return Ok(full(StatusCode::OK, "application/json", json));
    }
    let include_usage = incoming.stream_options.is_some_and(|o| o.include_usage);
    let reply = Arc::new(reply);
    let line = |chunk: &Chunk<'_>| {
        let json = serde_json::to_string(chunk).unwrap_or_default();
        format!("data: {}\n\n", with_surrogate_escapes(json))
    };
    let chunk = |choices, usage| Chunk {
        id: &reply.id,
        object: "chat.completion.chunk",
        created,
        model: &reply.model,
        choices,
        usage,
    };
    // The body as steps: the tokens, the finish chunk, the usage chunk, [DONE]; a fault cuts in at its token.
    let n = reply.tokens.len();
    let mut steps = Vec::with_capacity(n + 4);
    let mut cut = false;
    for i in 0..=n {
        if let Fate::Break(fault, at) = fate {
            if at == i {
                match fault {
                    StreamFault::Disconnect => steps.push(Step::Fail),
                    StreamFault::Truncate => {}
                    StreamFault::Stall => steps.push(Step::Sleep(chaos.config.stall)),
                    StreamFault::Malformed => steps.push(Step::Raw(
                        "data: {\"id\":\"x\",\"choices\":[{\"delta\":{\"content\":\"oo\n\n".into(),
                    )),
                }
                cut = matches!(fault, StreamFault::Disconnect | StreamFault::Truncate);
                if cut {
                    break;
                }
            }
        }
        if i < n {
            steps.push(Step::Token(i));
        }
    }
    if !cut {
        // A call instead of text: its id and name, then its arguments in pieces.
        for piece in call_pieces(&reply.tool_calls) {
            let choice = ChunkChoice {
                index: 0,
                delta: OutDelta {
                    content: None,
                    reasoning_content: None,
                    tool_calls: Some([piece]),
                },
                finish_reason: None,
            };
            steps.push(Step::Raw(line(&chunk(vec![choice], None))));
        }
        let finish = ChunkChoice {
            index: 0,
            delta: OutDelta {
                content: None,
                reasoning_content: None,
                tool_calls: None,
            },
            finish_reason: Some(reply.finish_reason),
        };
        steps.push(Step::Raw(line(&chunk(vec![finish], None))));
        if include_usage {
            steps.push(Step::Raw(line(&chunk(vec![], Some(reply.usage.into())))));
        }
        steps.push(Step::Raw("data: [DONE]\n\n".into()));
    }
    let shape = cfg.shape;
    let token_line = move |i: usize| {
        let token = reply.tokens[i].as_str();
        let delta = match shape {
            StreamShape::Text => OutDelta {
                content: Some(token),
                reasoning_content: None,
                tool_calls: None,
            },
            StreamShape::Reasoning if i < n * 3 / 4 => OutDelta {
                content: None,
                reasoning_content: Some(token),
                tool_calls: None,
            },
            StreamShape::Reasoning => OutDelta {
                content: Some(token),
                reasoning_content: None,
                tool_calls: None,
            },
            StreamShape::Tools => OutDelta {
                content: None,
                reasoning_content: None,
                tool_calls: Some([OutCallPiece {
                    index: 0,
                    id: (i == 0).then_some("call_mock"),
                    kind: (i == 0).then_some("function"),
                    function: OutFunctionPiece {
                        name: (i == 0).then_some("mock_tool"),
                        arguments: token,
                    },
                }]),
            },
        };
        let choice = ChunkChoice {
            index: 0,
            delta,
            finish_reason: None,
        };
        line(&Chunk {
            id: &reply.id,
            object: "chat.completion.chunk",
            created,
            model: &reply.model,
            choices: vec![choice],
            usage: None,
        })
    };
    let events = futures_util::stream::unfold(
        (steps.into_iter(), Duration::ZERO),
        move |(mut steps, mut stalled)| {
            let token_line = token_line.clone();
            async move {
                loop {
                    let text = match steps.next()? {
                        Step::Token(i) => {
                            pacing.token(start + stalled, i).await;
                            token_line(i)
                        }
                        Step::Raw(text) => text,
                        Step::Sleep(d) => {
                            tokio::time::sleep(d).await;
                            stalled += d;
                            continue;
                        }
                        Step::Fail => {
                            let cut = std::io::Error::other("injected disconnect");
                            return Some((Err(cut), (steps, stalled)));
                        }
                    };
                    return Some((Ok(Frame::data(Bytes::from(text))), (steps, stalled)));
                }
            }
        },
    );
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(events)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    Ok(resp)
}
