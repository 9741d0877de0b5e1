//! The `consentry` binary: parse the command line, set up logging, run the command,
//! print errors with their whole cause chain, and exit 0 (success), 1 (completed
//! with rejected input) or 2 (failure).

use clap::Parser;
use consentry::cli::{run, Cli};

// Import batches allocate and free many small buffers across threads; glibc's
// allocator fragmented badly under that pattern (peak RSS), mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            std::process::exit(2);
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    };
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    std::process::exit(code);
}

fn init_logging(format: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("CONSENTRY_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
