//! The server's errors, and how each maps to an HTTP status and a gRPC code.

use std::path::PathBuf;

use kiln_batch::BatchError;
use thiserror::Error;

/// Why a request (or a model load) failed. The message says what to do.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ServeError {
    /// Unknown model or version, or a model that is not loaded (404 / NOT_FOUND).
    #[error("{0}")]
    NotFound(String),
    /// The request does not fit the model: input names, datatypes, shapes, data (400 /
    /// INVALID_ARGUMENT).
    #[error("{0}")]
    InvalidArgument(String),
    /// Overload, shutdown or a queue timeout: retry later (503 / UNAVAILABLE).
    #[error("{0}")]
    Unavailable(String),
    /// The request body is above the server's limit (413 / RESOURCE_EXHAUSTED).
    #[error("{0}")]
    TooLarge(String),
    /// A model's `config.json` is invalid (400 on load requests / INVALID_ARGUMENT).
    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    /// A model could not be loaded: file, engine build, executor (500 / INTERNAL).
    #[error("{0}")]
    Load(String),
    /// The backend failed while running the request's batch (500 / INTERNAL).
    #[error("{0}")]
    Internal(String),
}

impl ServeError {
    /// The HTTP status of this error.
    pub fn http_status(&self) -> u16 {
        match self {
            ServeError::NotFound(_) => 404,
            ServeError::InvalidArgument(_) | ServeError::Config { .. } => 400,
            ServeError::Unavailable(_) => 503,
            ServeError::TooLarge(_) => 413,
            ServeError::Load(_) | ServeError::Internal(_) => 500,
        }
    }

    /// The gRPC status code of this error.
    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            ServeError::NotFound(_) => tonic::Code::NotFound,
            ServeError::InvalidArgument(_) | ServeError::Config { .. } => {
                tonic::Code::InvalidArgument
            }
            ServeError::Unavailable(_) => tonic::Code::Unavailable,
            ServeError::TooLarge(_) => tonic::Code::ResourceExhausted,
            ServeError::Load(_) | ServeError::Internal(_) => tonic::Code::Internal,
        }
    }

    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ServeError::NotFound(_) => "not_found",
            ServeError::InvalidArgument(_) | ServeError::Config { .. } => "invalid_argument",
            ServeError::Unavailable(_) => "unavailable",
            ServeError::TooLarge(_) => "too_large",
            ServeError::Load(_) | ServeError::Internal(_) => "internal",
        }
    }

    /// The error a request of `model` got from the batching executor.
    pub fn from_batch(model: &str, e: BatchError) -> ServeError {
        let msg = format!("model '{model}': {e}");
        match e {
            BatchError::QueueFull { .. }
            | BatchError::ShuttingDown
            | BatchError::TimedOut { .. } => ServeError::Unavailable(msg),
            BatchError::TooLarge { .. } | BatchError::InvalidRequest { .. } => {
                ServeError::InvalidArgument(msg)
            }
            BatchError::Config { .. }
            | BatchError::Backend { .. }
            | BatchError::Split { .. }
            | BatchError::Gpu { .. }
            | BatchError::InstancePanicked { .. }
            | BatchError::Internal { .. } => ServeError::Internal(msg),
        }
    }
}

impl From<ServeError> for tonic::Status {
    fn from(e: ServeError) -> tonic::Status {
        tonic::Status::new(e.grpc_code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn batch_errors_map_to_the_protocol_codes() {
        let full = ServeError::from_batch("m", BatchError::QueueFull { capacity: 4 });
        assert_eq!(full.http_status(), 503);
        assert_eq!(full.grpc_code(), tonic::Code::Unavailable);
        assert!(full.to_string().contains("queue is full"), "{full}");
        let t = ServeError::from_batch(
            "m",
            BatchError::TimedOut {
                waited: Duration::from_millis(3),
                timeout: Duration::from_millis(2),
            },
        );
        assert_eq!(t.http_status(), 503);
        let big = ServeError::from_batch("m", BatchError::TooLarge { rows: 9, max: 8 });
        assert_eq!(big.http_status(), 400);
        assert_eq!(big.grpc_code(), tonic::Code::InvalidArgument);
        let nf = ServeError::NotFound("x".into());
        assert_eq!(
            (nf.http_status(), nf.grpc_code()),
            (404, tonic::Code::NotFound)
        );
        let status: tonic::Status = ServeError::TooLarge("big".into()).into();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    }
}
