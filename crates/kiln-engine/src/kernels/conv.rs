//! cuDNN convolutions (filled in by the libraries worker).
