//! External data resolution. (Stub: being written.)
