//! GraphBuilder. (Stub: being written.)

pub struct GraphBuilder;
