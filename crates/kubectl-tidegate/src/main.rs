//! The `kubectl-tidegate` binary: `kubectl tidegate …` when it is on `PATH`.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use kubectl_tidegate::{Cli, render, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(output) => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`… | head`) is not an error worth reporting.
            let _ = stdout.write_all(output.as_bytes());
            let _ = stdout.flush();
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {}", render::error_line(&error));
            ExitCode::FAILURE
        }
    }
}
