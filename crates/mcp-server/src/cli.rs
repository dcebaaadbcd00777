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
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Read the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
}

/// `mcp-server audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print audit events as JSON lines, oldest first.
    List {
        /// Only events of this type (`auth.login`, `key.created`, ...).
        #[arg(long = "type")]
        kind: Option<String>,
        /// Only events whose actor is this subject (a user id).
        #[arg(long)]
        subject: Option<String>,
        /// At or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Before this RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        /// At most this many events (default: all).
        #[arg(long)]
        limit: Option<u64>,
    },
}

/// Runs `mcp-server audit ...`.
pub async fn audit(
    config: crate::config::Config,
    command: AuditCommand,
) -> Result<(), crate::StartError> {
    use crate::StartError;
    let AuditCommand::List {
        kind,
        subject,
        since,
        until,
        limit,
    } = command;
    let query = crate::audit::AuditQuery::new(kind, subject, since, until);
    let (filter, _, _) = query
        .checked()
        .map_err(|problem| invalid("filter", &problem))?;
    let db = crate::open_database(&config).await?;
    let mut left = limit.unwrap_or(u64::MAX);
    let mut cursor = None;
    while left > 0 {
        let page = crate::audit::list(&db, &filter, 200, cursor)
            .await
            .map_err(|e| StartError::Command(e.to_string()))?;
        for event in page
            .items
            .iter()
            .take(usize::try_from(left).unwrap_or(usize::MAX))
        {
            println!("{}", serde_json::to_string(event).unwrap_or_default());
            left -= 1;
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    db.close().await;
    Ok(())
}

/// `mcp-server keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key for a user and print it (with its record) as JSON on
    /// stdout. The key is shown this once.
    Create {
        /// The owner's e-mail address.
        #[arg(long)]
        email: String,
        /// A name unique among the owner's keys.
        #[arg(long)]
        name: String,
        /// Comma-separated scopes; omit for an unrestricted key.
        #[arg(long, value_delimiter = ',')]
        scopes: Option<Vec<String>>,
        /// Expire after this many days; omit for never.
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List a user's keys (never the secrets) as JSON lines.
    List {
        /// The owner's e-mail address.
        #[arg(long)]
        email: String,
    },
    /// Delete a key: it stops working at once (within the cache TTL on other
    /// running replicas without PostgreSQL notifications).
    Revoke {
        /// The key's id.
        #[arg(long)]
        id: String,
    },
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
    /// Set a user's password (read like `create` reads it).
    SetPassword {
        /// The user's e-mail address.
        #[arg(long)]
        email: String,
    },
}

fn read_password() -> Result<mcp_validate::Secret, crate::StartError> {
    use std::io::{BufRead, IsTerminal};
    let fail =
        |e: std::io::Error| crate::StartError::Command(format!("cannot read the password: {e}"));
    if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Password: ")
            .map(mcp_validate::Secret::from)
            .map_err(fail)
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(fail)?;
        // Cut in place: a trimmed copy would leave the original unwiped.
        let len = line.trim_end_matches(['\r', '\n']).len();
        line.truncate(len);
        Ok(mcp_validate::Secret::from(line))
    }
}

/// A refused command-line body, with every failing field on one line.
fn invalid(what: &str, problem: &mcp_core::Problem) -> crate::StartError {
    let fields: Vec<String> = problem
        .errors()
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect();
    crate::StartError::Command(format!("invalid {what}: {}", fields.join("; ")))
}

/// Runs `mcp-server users ...`.
pub async fn users(
    config: crate::config::Config,
    command: UsersCommand,
) -> Result<(), crate::StartError> {
    use crate::StartError;
    use crate::users::{self, NewUser, Passwords, Role};

    let db = crate::open_database(&config).await?;
    let fail = |message: String| StartError::Command(message);
    match command {
        UsersCommand::Create { email, name, role } => {
            let password = read_password()?;
            let body = serde_json::json!({"email": email, "name": name, "password": password.expose(), "role": role});
            let body: crate::schemas::UserCreate =
                crate::extract::parse(body.to_string().as_bytes())
                    .map_err(|problem| invalid("user", &problem))?;
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
        UsersCommand::SetPassword { email } => {
            let email = email.trim().to_lowercase();
            let (user, _) = users::find_by_email(&db, &email)
                .await
                .map_err(|e| fail(e.to_string()))?
                .ok_or_else(|| fail(format!("no user {email}")))?;
            let password = read_password()?;
            let chars = password.expose().chars().count();
            if !(8..=1024).contains(&chars) {
                return Err(fail("the password must be 8 to 1024 characters".to_owned()));
            }
            let passwords = tokio::task::spawn_blocking(Passwords::new)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let hash = passwords
                .hash(password)
                .await
                .map_err(|_| fail("cannot hash the password".to_owned()))?;
            let changes = users::UserChanges {
                password_hash: Some(hash),
                ..Default::default()
            };
            users::update(&db, user.id, changes, users::now(&mcp_core::SystemClock))
                .await
                .map_err(|e| fail(e.to_string()))?;
            eprintln!("password changed for {email}");
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

/// Runs `mcp-server keys ...`.
pub async fn keys(
    config: crate::config::Config,
    command: KeysCommand,
) -> Result<(), crate::StartError> {
    use crate::StartError;
    use crate::users;

    let fail = |message: String| StartError::Command(message);
    let db = crate::open_database(&config).await?;
    let service = crate::keys::service(&config, &db, mcp_core::SystemClock::shared()).await?;
    let owner = |email: String| {
        let db = db.clone();
        async move {
            let email = email.trim().to_lowercase();
            users::find_by_email(&db, &email)
                .await
                .map_err(|e| StartError::Command(e.to_string()))?
                .map(|(user, _)| user)
                .ok_or_else(|| StartError::Command(format!("no user {email}")))
        }
    };
    match command {
        KeysCommand::Create {
            email,
            name,
            scopes,
            expires_in_days,
        } => {
            let user = owner(email).await?;
            let body = serde_json::json!({"name": name, "scopes": scopes, "expiresInDays": expires_in_days});
            let body: crate::schemas::KeyCreate =
                crate::extract::parse(body.to_string().as_bytes())
                    .map_err(|problem| invalid("key", &problem))?;
            if body
                .scopes
                .iter()
                .flatten()
                .any(|s| s == "admin" || s == "metrics")
                && user.role != crate::users::Role::Admin
            {
                return Err(fail(
                    "the admin and metrics scopes need the admin role".to_owned(),
                ));
            }
            let (record, secret) = service
                .create(
                    &user.id.to_string(),
                    &body.name,
                    body.scopes,
                    body.expires_in_days,
                )
                .await
                .map_err(|e| fail(e.to_string()))?;
            let mut json = serde_json::to_value(&record).unwrap_or_default();
            json["key"] = serde_json::Value::from(secret.expose());
            println!("{json}");
        }
        KeysCommand::List { email } => {
            let user = owner(email).await?;
            let mut cursor = None;
            loop {
                let page = service
                    .list(&user.id.to_string(), 200, cursor)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                for record in &page.items {
                    println!("{}", serde_json::to_string(record).unwrap_or_default());
                }
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        KeysCommand::Revoke { id } => {
            let id = uuid::Uuid::parse_str(&id).map_err(|_| fail(format!("no key {id}")))?;
            service.delete(id).await.map_err(|e| match e {
                mcp_apikeys::ApiKeyError::NotFound => fail(format!("no key {id}")),
                other => fail(other.to_string()),
            })?;
            eprintln!("key {id} revoked");
        }
    }
    db.close().await;
    Ok(())
}
