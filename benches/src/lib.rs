//! Criterion suites of kiln live in `benches/`.
