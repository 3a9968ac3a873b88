//! [`ResponseFuture`]: the future a [`TenantService`](super::TenantService) service returns.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;

type Running<B, E> = Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>>;

/// The response of a [`TenantService`](super::TenantService) service: a refusal ready at once, or the
/// catalog lookup followed by the inner service's response.
pub struct ResponseFuture<B, E> {
    state: State<B, E>,
}

enum State<B, E> {
    Rejected(Option<Response<B>>),
    Running(Running<B, E>),
}

impl<B, E> ResponseFuture<B, E> {
    pub(super) fn rejected(response: Response<B>) -> Self {
        ResponseFuture {
            state: State::Rejected(Some(response)),
        }
    }

    pub(super) fn running(
        future: impl Future<Output = Result<Response<B>, E>> + Send + 'static,
    ) -> Self {
        ResponseFuture {
            state: State::Running(Box::pin(future)),
        }
    }
}

// The ready response is only ever moved out, never pinned in place.
impl<B, E> Unpin for ResponseFuture<B, E> {}

impl<B, E> Future for ResponseFuture<B, E> {
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().state {
            State::Rejected(response) => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
            State::Running(future) => future.as_mut().poll(cx),
        }
    }
}

impl<B, E> fmt::Debug for ResponseFuture<B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Rejected(_) => "rejected",
            State::Running(_) => "running",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
