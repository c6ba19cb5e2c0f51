//! cuBLASLt matrix multiplication (filled in by the libraries worker).
