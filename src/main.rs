use heffl_api::config::{Cli, Command};
use std::process::ExitCode;

// Requests allocate many small, short-lived objects; mimalloc serves them with less lock
// traffic than glibc's allocator (measured in docs/dev/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // A missing .env is normal; settings then come from the environment and flags.
    let _ = dotenvy::dotenv();
    let cli = Cli::parse_args();
    // `serve --log-format json` sets it on serve's own copy of the settings.
    let log_format = match &cli.command {
        Some(Command::Serve(config)) => config.log_format,
        _ => cli.config.log_format,
    };
    heffl_api::telemetry::init(log_format);
    heffl_api::cli::run(cli).await
}
