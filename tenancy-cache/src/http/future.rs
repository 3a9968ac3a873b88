//! [`ResponseFuture`]: the future a [`ResponseCache`](super::ResponseCache) service returns.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use http_body::Body;

use super::ResponseBody;

type Running<B, E> = Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B>>, E>> + Send>>;

/// The response of a [`ResponseCache`](super::ResponseCache) service: a refusal ready at
/// once, or the cache lookup followed (on a miss) by the inner service's response.
pub struct ResponseFuture<B: Body, E> {
    state: State<B, E>,
}

enum State<B: Body, E> {
    // Boxed: a refusal is rare, and the future stays small.
    Ready(Option<Box<Response<ResponseBody<B>>>>),
    Running(Running<B, E>),
}

impl<B: Body, E> ResponseFuture<B, E> {
    pub(super) fn ready(response: Response<ResponseBody<B>>) -> Self {
        ResponseFuture {
            state: State::Ready(Some(Box::new(response))),
        }
    }

    pub(super) fn running(
        future: impl Future<Output = Result<Response<ResponseBody<B>>, E>> + Send + 'static,
    ) -> Self {
        ResponseFuture {
            state: State::Running(Box::pin(future)),
        }
    }
}

// The ready response is only ever moved out, never pinned in place.
impl<B: Body, E> Unpin for ResponseFuture<B, E> {}

impl<B: Body, E> Future for ResponseFuture<B, E> {
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().state {
            State::Ready(response) => Poll::Ready(Ok(*response
                .take()
                .expect("ResponseFuture polled after completion"))),
            State::Running(future) => future.as_mut().poll(cx),
        }
    }
}

impl<B: Body, E> fmt::Debug for ResponseFuture<B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Ready(_) => "ready",
            State::Running(_) => "running",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
