//! One module per subcommand.

pub mod bench;
pub mod build;
pub mod compare;
pub mod feeds;
pub mod inspect;
pub mod inspect_engine;
pub mod run;

/// Arguments of a subcommand that is not implemented yet: taken as they come, so that any
/// command line reaches the "not implemented yet" message rather than a usage error.
#[derive(Debug, clap::Args)]
pub struct PendingArgs {
    /// Arguments for the future implementation (ignored for now).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<String>,
}
