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
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCommand),
}

/// `mcp-server users ...`.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user. The password is read from the terminal without echo,
    /// or from the first line of stdin when stdin is not a terminal; never
    /// from the command line, where other users could read it.
    Create {
        /// E-mail address (stored lower-cased).
        #[arg(long)]
        email: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// `user` or `admin`.
        #[arg(long, default_value = "user", value_parser = ["user", "admin"])]
        role: String,
    },
    /// List users as JSON lines.
    List,
}

/// Runs `mcp-server users ...`.
pub async fn users(
    config: crate::config::Config,
    command: UsersCommand,
) -> Result<(), crate::StartError> {
    use crate::StartError;
    use crate::users::{self, NewUser, Passwords, Role};
    use std::io::{BufRead, IsTerminal};

    let db = crate::open_database(&config).await?;
    let fail = |message: String| StartError::Command(message);
    match command {
        UsersCommand::Create { email, name, role } => {
            let password = if std::io::stdin().is_terminal() {
                rpassword::prompt_password("Password: ")
                    .map_err(|e| fail(format!("cannot read the password: {e}")))?
            } else {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .map_err(|e| fail(format!("cannot read the password: {e}")))?;
                line.trim_end_matches(['\r', '\n']).to_owned()
            };
            let body = serde_json::json!({"email": email, "name": name, "password": password, "role": role});
            let body: crate::schemas::UserCreate =
                crate::extract::parse(body.to_string().as_bytes()).map_err(|problem| {
                    let fields: Vec<String> = problem
                        .errors()
                        .iter()
                        .map(|e| format!("{}: {}", e.field, e.message))
                        .collect();
                    fail(format!("invalid user: {}", fields.join("; ")))
                })?;
            let passwords = tokio::task::spawn_blocking(Passwords::new)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let password_hash = passwords
                .hash(body.password)
                .await
                .map_err(|_| fail("cannot hash the password".to_owned()))?;
            let new = NewUser {
                email: body.email,
                name: body.name,
                role: body.role.unwrap_or(Role::User),
                password_hash,
            };
            let user = users::create(&db, new, users::now(&mcp_core::SystemClock))
                .await
                .map_err(|e| match e {
                    crate::db::DbError::Conflict(_) => {
                        fail("a user with this e-mail address exists".to_owned())
                    }
                    other => fail(other.to_string()),
                })?;
            println!("{}", serde_json::to_string(&user).unwrap_or_default());
        }
        UsersCommand::List => {
            let mut cursor = None;
            loop {
                let page = users::list(&db, 200, cursor)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                for user in &page.items {
                    println!("{}", serde_json::to_string(user).unwrap_or_default());
                }
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
    }
    db.close().await;
    Ok(())
}
