//! Trailers the gateway adds to gRPC responses: `aigw-overhead-us`, the time the gateway itself added
//! (end-to-end minus upstream minus waiting for the client), `aigw-cost-usd` when the model has a price, and
//! the caller's rate-limit standing (`x-ratelimit-*`, as OpenAI's headers) once the call was admitted.
//! Trailers, because for a stream the first two are only known at its end.
//!
//! A tower layer around the routes puts a [`TrailerSlot`] in each request's extensions (tonic hands them to
//! the handler); the RPC's record fills it when the RPC ends, and the response body merges it into the
//! trailers frame as it passes. Responses that end in headers only (early errors) carry none.

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use http::{HeaderMap, HeaderValue};

use crate::transport::standing::{Standing, Style};
use http_body::{Body, Frame, SizeHint};

/// What the RPC's record leaves for the trailers.
#[derive(Debug, Default)]
pub(crate) struct TrailerSlot {
    values: Mutex<Option<(Option<Duration>, Option<f64>)>>,
    standing: Mutex<Option<Standing>>,
}

impl TrailerSlot {
    /// Where the caller stood once the call was admitted.
    pub(crate) fn set_standing(&self, standing: Standing) {
        *self.standing.lock().unwrap_or_else(|p| p.into_inner()) = Some(standing);
    }

    /// Adds the values to `headers` as a REST answer carries them: the rate-limit standing in `style`'s names.
    pub(crate) fn apply_as(&self, headers: &mut HeaderMap, style: Style) {
        self.apply_values(headers);
        if let Some(standing) = *self.standing.lock().unwrap_or_else(|p| p.into_inner()) {
            standing.write(headers, style);
        }
    }

    pub(crate) fn set(&self, overhead: Option<Duration>, cost: Option<f64>) {
        *self.values.lock().unwrap_or_else(|p| p.into_inner()) = Some((overhead, cost));
    }

    /// Adds the values, once set, to gRPC's `trailers`.
    pub(crate) fn apply(&self, trailers: &mut HeaderMap) {
        self.apply_as(trailers, Style::OpenAi);
    }

    fn apply_values(&self, trailers: &mut HeaderMap) {
        let Some((overhead, cost)) = *self.values.lock().unwrap_or_else(|p| p.into_inner()) else {
            return;
        };
        if let Some(overhead) = overhead {
            trailers.insert(
                "aigw-overhead-us",
                HeaderValue::from(u64::try_from(overhead.as_micros()).unwrap_or(u64::MAX)),
            );
        }
        if let Some(cost) = cost.and_then(|c| HeaderValue::try_from(format!("{c:.6}")).ok()) {
            trailers.insert("aigw-cost-usd", cost);
        }
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct TrailersLayer;

impl<S> tower::Layer<S> for TrailersLayer {
    type Service = Trailers<S>;
    fn layer(&self, inner: S) -> Trailers<S> {
        Trailers { inner }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Trailers<S> {
    inner: S,
}

impl<S, B, RB> tower::Service<http::Request<B>> for Trailers<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
{
    type Response = http::Response<TrailerBody<RB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let slot = Arc::new(TrailerSlot::default());
        req.extensions_mut().insert(slot.clone());
        ResponseFuture {
            inner: self.inner.call(req),
            slot: Some(slot),
        }
    }
}

pin_project_lite::pin_project! {
    pub(crate) struct ResponseFuture<F> {
        #[pin]
        inner: F,
        slot: Option<Arc<TrailerSlot>>,
    }
}

impl<F, RB, E> std::future::Future for ResponseFuture<F>
where
    F: std::future::Future<Output = Result<http::Response<RB>, E>>,
{
    type Output = Result<http::Response<TrailerBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let resp = std::task::ready!(this.inner.poll(cx))?;
        let slot = this.slot.take().unwrap_or_default();
        Poll::Ready(Ok(resp.map(|inner| TrailerBody { inner, slot })))
    }
}

pin_project_lite::pin_project! {
    pub(crate) struct TrailerBody<B> {
        #[pin]
        inner: B,
        slot: Arc<TrailerSlot>,
    }
}

impl<B: Body> Body for TrailerBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        Poll::Ready(frame.map(|f| {
            f.map(|frame| match frame.into_trailers() {
                Ok(mut trailers) => {
                    this.slot.apply(&mut trailers);
                    Frame::trailers(trailers)
                }
                Err(frame) => frame,
            })
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
