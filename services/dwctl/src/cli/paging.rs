//! The page options every listing shares: a page size, one page by its token, or every page.

use clap::Args;

use crate::parse;

/// Which page of a listing to print. A listing that words an option its own way (what `--all`
/// prints, where a page token comes from) rewrites that option's help with `mut_arg`.
#[derive(Debug, Args)]
pub struct PageArgs {
    /// Page size (1-200; server default 50).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=200))]
    pub page_size: Option<i32>,
    /// Fetch the page with this token (from a previous list's output).
    #[arg(long, value_parser = parse::non_empty, conflicts_with = "all")]
    pub page_token: Option<String>,
    /// Follow every page and print all the results.
    #[arg(long)]
    pub all: bool,
}
