//! Errors of the batching executor. Every rejection says why and what to do.

use std::time::Duration;

use kiln_core::BackendError;
use thiserror::Error;

/// Why a request was not answered with outputs, or why an executor could not be built.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum BatchError {
    /// The bounded queue was full when the request came (it was never accepted).
    #[error(
        "the queue is full ({capacity} requests waiting); retry later, add instances or raise queue_capacity"
    )]
    QueueFull { capacity: usize },
    /// The executor is shutting down (or shut down) and accepts nothing new.
    #[error("the executor is shutting down and accepts no new requests")]
    ShuttingDown,
    /// The request waited in the queue past its timeout (timeout action `Reject`).
    #[error(
        "the request waited {waited:?} in the queue, past its timeout of {timeout:?}; raise the timeout or lower the load"
    )]
    TimedOut { waited: Duration, timeout: Duration },
    /// The request's batch dimension is larger than the executor's maximum batch.
    #[error(
        "the request has batch size {rows}, above the executor's max_batch of {max}; split it or raise max_batch"
    )]
    TooLarge { rows: usize, max: usize },
    /// The request does not fit the engine (names, types, ranks, dims).
    #[error("invalid request: {reason}")]
    InvalidRequest { reason: String },
    /// The executor's configuration does not fit the engine, or is inconsistent.
    #[error("invalid executor configuration: {reason}")]
    Config { reason: String },
    /// The backend failed on the batch this request was part of.
    #[error("the backend failed on a batch of {batch} rows: {source}")]
    Backend {
        batch: usize,
        #[source]
        source: BackendError,
    },
    /// The outputs of a batch could not be split back into requests.
    #[error("cannot split output '{output}' of a batch of {batch} rows: {reason}")]
    Split {
        output: String,
        batch: usize,
        reason: String,
    },
    /// The GPU pipeline (pinned staging, streams, copies) failed.
    #[error("GPU pipeline on device {device}: {message}")]
    Gpu { device: usize, message: String },
    /// The instance running the batch panicked; the batch's requests are answered with this.
    #[error("instance {instance} panicked while running a batch: {message}")]
    InstancePanicked { instance: usize, message: String },
    /// A bug: the executor dropped a request's answer without sending one.
    #[error("internal error: {message}")]
    Internal { message: String },
}

impl BatchError {
    /// True for the rejections that happen at submission: the request was never accepted.
    pub fn is_submit_rejection(&self) -> bool {
        matches!(
            self,
            BatchError::QueueFull { .. }
                | BatchError::ShuttingDown
                | BatchError::TooLarge { .. }
                | BatchError::InvalidRequest { .. }
        )
    }
}
