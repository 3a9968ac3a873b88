//! [`ResponseBody`]: the body of a response that went through a
//! [`ResponseCache`](super::ResponseCache).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// The body of a response from a [`ResponseCache`](super::ResponseCache): the inner
    /// service's own body when the response was not cached, or the buffered bytes of a
    /// response read from the cache (or just stored in it).
    pub struct ResponseBody<B>
    where
        B: Body,
    {
        #[pin]
        state: State<B, B::Error>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<B, E> {
        Inner { #[pin] body: B },
        Buffered { data: Option<Bytes>, trailers: Option<HeaderMap> },
        Failed { error: Option<E> },
    }
}

impl<B: Body> ResponseBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        ResponseBody {
            state: State::Inner { body },
        }
    }

    pub(crate) fn buffered(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        ResponseBody {
            state: State::Buffered {
                data: (!data.is_empty()).then_some(data),
                trailers,
            },
        }
    }

    pub(crate) fn failed(error: B::Error) -> Self {
        ResponseBody {
            state: State::Failed { error: Some(error) },
        }
    }
}

/// A body of text: what a layer outside the cache (`TenantLayer`'s refusals) answers with.
impl<B: Body> From<String> for ResponseBody<B> {
    fn from(text: String) -> Self {
        ResponseBody::buffered(Bytes::from(text), None)
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().state.project() {
            StateProj::Inner { body } => body.poll_frame(cx),
            StateProj::Buffered { data, trailers } => {
                if let Some(data) = data.take() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(
                    trailers
                        .take()
                        .map(|trailers| Ok(Frame::trailers(trailers))),
                )
            }
            StateProj::Failed { error } => Poll::Ready(error.take().map(Err)),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            State::Inner { body } => body.is_end_stream(),
            State::Buffered { data, trailers } => data.is_none() && trailers.is_none(),
            State::Failed { error } => error.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Inner { body } => body.size_hint(),
            State::Buffered { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |data| data.len() as u64))
            }
            State::Failed { .. } => SizeHint::default(),
        }
    }
}

impl<B: Body> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Inner { .. } => "inner",
            State::Buffered { .. } => "buffered",
            State::Failed { .. } => "failed",
        };
        f.debug_struct("ResponseBody")
            .field("state", &state)
            .finish()
    }
}
