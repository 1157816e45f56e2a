//! `clicklake sql`: a Flight SQL client for analysts. With a statement it
//! prints the result as a table; without one it reads statements ending in
//! `;` from standard input (a prompt on a terminal; `\q` quits).

use std::io::{BufRead, IsTerminal, Write};

use clicklake_query::client::SqlClient;

#[derive(Debug, Clone, clap::Args)]
pub struct SqlArgs {
    /// The statement to run; omit it for a prompt.
    pub query: Option<String>,

    /// Flight SQL endpoint.
    #[arg(
        long,
        env = "CLICKLAKE_ENDPOINT",
        default_value = "http://127.0.0.1:50051"
    )]
    pub endpoint: String,

    /// Bearer token, when the server requires authentication.
    #[arg(long, env = "CLICKLAKE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// User name to log in with (a Flight SQL handshake); see --password.
    #[arg(long, env = "CLICKLAKE_USER")]
    pub user: Option<String>,

    /// CA certificate (PEM) to verify an https:// endpoint with (a server
    /// started with --tls-cert using its own certificate authority).
    #[arg(long, env = "CLICKLAKE_TLS_CA")]
    pub tls_ca: Option<std::path::PathBuf>,

    /// Password for --user.
    #[arg(
        long,
        env = "CLICKLAKE_PASSWORD",
        hide_env_values = true,
        requires = "user"
    )]
    pub password: Option<String>,
}

pub async fn run(args: SqlArgs) -> anyhow::Result<()> {
    let ca = match &args.tls_ca {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("reading --tls-ca {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let mut client = SqlClient::connect_tls(&args.endpoint, ca.as_deref()).await?;
    if let Some(token) = &args.token {
        client.inner().set_token(token.clone());
    }
    if let Some(user) = &args.user {
        let password = args.password.as_deref().unwrap_or_default();
        client
            .inner()
            .handshake(user, password)
            .await
            .map_err(|e| anyhow::anyhow!("logging in as {user}: {e}"))?;
    }
    if let Some(q) = args.query {
        return print_query(&mut client, &q).await;
    }
    let interactive = std::io::stdin().is_terminal();
    let mut failed = 0usize;
    let mut pending = String::new();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            print!("clicklake> ");
            std::io::stdout().flush()?;
        }
        let Some(line) = lines.next() else { break };
        let line = line?;
        let trimmed = line.trim();
        if pending.is_empty()
            && (trimmed == "\\q"
                || trimmed.eq_ignore_ascii_case("quit")
                || trimmed.eq_ignore_ascii_case("exit"))
        {
            break;
        }
        if trimmed.is_empty() && pending.is_empty() {
            continue;
        }
        // A statement ends with `;` (it may span lines).
        pending.push_str(&line);
        pending.push('\n');
        if !trimmed.ends_with(';') {
            if interactive {
                print!("      -> ");
                std::io::stdout().flush()?;
            }
            continue;
        }
        let statement = std::mem::take(&mut pending);
        if let Err(e) = print_query(&mut client, statement.trim().trim_end_matches(';')).await {
            eprintln!("error: {e:#}");
            failed += 1;
        }
    }
    let rest = pending.trim().trim_end_matches(';');
    if !rest.is_empty()
        && let Err(e) = print_query(&mut client, rest).await
    {
        eprintln!("error: {e:#}");
        failed += 1;
    }
    if failed > 0 && !interactive {
        anyhow::bail!("{failed} statement(s) failed");
    }
    Ok(())
}

async fn print_query(client: &mut SqlClient, q: &str) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let result = client.query(q).await.map_err(|e| match e {
        arrow_flight::error::FlightError::Tonic(s) if s.code() == tonic::Code::Unimplemented => anyhow::anyhow!(
            "this server does not answer Flight SQL (an ingest-only node? `clicklake query` listens on 127.0.0.1:50052, `clicklake serve` on 127.0.0.1:50051)"
        ),
        arrow_flight::error::FlightError::Tonic(s) => anyhow::anyhow!("{}", s.message()),
        other => other.into(),
    })?;
    let rows: usize = result.batches.iter().map(|b| b.num_rows()).sum();
    if result.batches.is_empty() {
        let empty = arrow::array::RecordBatch::new_empty(result.schema.clone());
        println!("{}", arrow::util::pretty::pretty_format_batches(&[empty])?);
    } else {
        println!(
            "{}",
            arrow::util::pretty::pretty_format_batches(&result.batches)?
        );
    }
    eprintln!("{rows} row(s) in {:.3}s", started.elapsed().as_secs_f64());
    Ok(())
}
