//! One module per subcommand.

pub mod bench;
pub mod build;
pub mod compare;
pub mod feeds;
pub mod inspect;
pub mod inspect_engine;
pub mod run;
pub mod serve;
