//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// An MCP server secured by authentication, rate limits, CORS and Origin
/// checks, request validation and security headers.
///
/// Every setting is an environment variable (`MCP_BIND`, `DATABASE_URL`, ...)
/// or a key in the TOML file given with `--config`; the environment wins.
/// See docs/configuration.md for the list.
#[derive(Debug, Parser)]
#[command(name = "mcp-server", version, about, long_about)]
pub struct Cli {
    /// A TOML file of settings (keys are the setting names without `MCP_`,
    /// lower-cased: `bind = "0.0.0.0:8080"`).
    #[arg(long, global = true, value_name = "FILE", env = "MCP_CONFIG")]
    pub config: Option<PathBuf>,

    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default): open the database (SQLite file
    /// `mcp-server.db` unless DATABASE_URL says otherwise), apply migrations,
    /// listen on MCP_BIND (127.0.0.1:8080) until SIGINT or SIGTERM.
    Serve,
    /// Apply pending database migrations and exit; safe to run while other
    /// replicas are up.
    Migrate,
}
