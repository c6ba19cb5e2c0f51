//! Requests, responses and the future `submit` returns.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use kiln_core::HostTensor;
use tokio::sync::oneshot;

use crate::config::TimeoutAction;
use crate::error::BatchError;
use crate::executor::Shared;

/// One inference request: a value for every engine input, all with the same batch dim (dim 0),
/// from 1 to the executor's `max_batch`.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub inputs: Vec<HostTensor>,
    /// Priority level (0 is the highest); `None` takes the executor's default.
    pub priority: Option<usize>,
    /// Queue timeout; `None` takes the executor's default.
    pub timeout: Option<Duration>,
    /// What happens past the timeout; `None` takes the executor's default.
    pub timeout_action: Option<TimeoutAction>,
}

impl Request {
    pub fn new(inputs: Vec<HostTensor>) -> Request {
        Request {
            inputs,
            priority: None,
            timeout: None,
            timeout_action: None,
        }
    }

    pub fn with_priority(mut self, level: usize) -> Request {
        self.priority = Some(level);
        self
    }

    pub fn with_timeout(mut self, timeout: Duration, action: TimeoutAction) -> Request {
        self.timeout = Some(timeout);
        self.timeout_action = Some(action);
        self
    }
}

/// What one request measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestMetrics {
    /// From acceptance to the start of its batch.
    pub queue_time: Duration,
    /// The run of its batch (staging, copies and compute on GPUs; split included).
    pub compute_time: Duration,
    /// Rows of the batch it ran in.
    pub batch_size: usize,
    /// Requests in that batch.
    pub batch_requests: usize,
    /// The instance that ran it.
    pub instance: usize,
    /// Whether it had timed out and was delayed (timeout action `Delay`).
    pub delayed: bool,
}

/// The outputs of one request (the engine's outputs, in its order, with the request's batch
/// dim) and what it measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub outputs: Vec<HostTensor>,
    pub metrics: RequestMetrics,
}

pub(crate) type Outcome = Result<Response, BatchError>;
pub(crate) type Responder = oneshot::Sender<Outcome>;

enum State {
    Ready(Option<Outcome>),
    Waiting {
        rx: oneshot::Receiver<Outcome>,
        seq: u64,
        shared: Weak<Shared>,
    },
    Done,
}

/// The answer to a submitted request. Dropping it before it resolves cancels the request: a
/// request still queued is removed (counted as cancelled) and never runs.
#[must_use = "dropping the future cancels the request"]
pub struct ResponseFuture {
    state: State,
}

fn lost() -> BatchError {
    BatchError::Internal {
        message: "the executor dropped a request without answering it".into(),
    }
}

impl ResponseFuture {
    pub(crate) fn ready(outcome: Outcome) -> ResponseFuture {
        ResponseFuture {
            state: State::Ready(Some(outcome)),
        }
    }

    pub(crate) fn waiting(
        rx: oneshot::Receiver<Outcome>,
        seq: u64,
        shared: &Arc<Shared>,
    ) -> ResponseFuture {
        ResponseFuture {
            state: State::Waiting {
                rx,
                seq,
                shared: Arc::downgrade(shared),
            },
        }
    }

    /// The sequence number the executor gave the request (`None` when it was rejected at
    /// submission).
    pub fn seq(&self) -> Option<u64> {
        match &self.state {
            State::Waiting { seq, .. } => Some(*seq),
            _ => None,
        }
    }

    /// The answer if it has come, without waiting (then the future is spent: polling it
    /// again gives an internal error). `None` while the request is queued or running.
    pub fn try_take(&mut self) -> Option<Outcome> {
        let out = match &mut self.state {
            State::Ready(o) => o.take().unwrap_or_else(|| Err(lost())),
            State::Waiting { rx, .. } => match rx.try_recv() {
                Ok(o) => o,
                Err(oneshot::error::TryRecvError::Empty) => return None,
                Err(oneshot::error::TryRecvError::Closed) => Err(lost()),
            },
            State::Done => return None,
        };
        self.state = State::Done;
        Some(out)
    }

    /// Blocks the thread until the answer comes. Must not be called from inside an async
    /// runtime (await the future there).
    pub fn wait(mut self) -> Outcome {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Ready(o) => o.unwrap_or_else(|| Err(lost())),
            State::Waiting { mut rx, .. } => {
                // Poll briefly before sleeping: an answer due within microseconds then costs no
                // thread wake-up (tens of µs on an idle virtual CPU).
                let start = std::time::Instant::now();
                loop {
                    match rx.try_recv() {
                        Ok(o) => return o,
                        Err(oneshot::error::TryRecvError::Closed) => return Err(lost()),
                        Err(oneshot::error::TryRecvError::Empty) => {}
                    }
                    if start.elapsed() >= WAIT_SPIN {
                        break;
                    }
                    std::hint::spin_loop();
                }
                rx.blocking_recv().unwrap_or_else(|_| Err(lost()))
            }
            State::Done => Err(lost()),
        }
    }
}

/// How long [`ResponseFuture::wait`] polls for the answer before it blocks.
const WAIT_SPIN: std::time::Duration = std::time::Duration::from_micros(50);

impl Future for ResponseFuture {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let out = match &mut self.state {
            State::Ready(o) => o.take().unwrap_or_else(|| Err(lost())),
            State::Waiting { rx, .. } => match Pin::new(rx).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(r) => r.unwrap_or_else(|_| Err(lost())),
            },
            State::Done => Err(lost()),
        };
        self.state = State::Done;
        Poll::Ready(out)
    }
}

impl Drop for ResponseFuture {
    fn drop(&mut self) {
        if let State::Waiting { rx, seq, shared } = &mut self.state
            && let Some(shared) = shared.upgrade()
        {
            // Closing first makes any later send fail (counted as undelivered by the
            // executor); an answer that came before is counted here. Otherwise the request
            // is still queued (removed now) or running (its answer will find no caller).
            rx.close();
            if rx.try_recv().is_ok() {
                shared.discarded();
            } else {
                shared.cancel(*seq);
            }
        }
    }
}
