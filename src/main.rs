//! The `statussentry` binary: parses the command line and hands each subcommand to the module
//! that does it. No logic lives here.

#![forbid(unsafe_code)]

mod api;
mod cli;
mod config;
mod delivery;
mod endpoint;
mod event;
mod id;
mod incident;
mod intake;
mod metrics;
mod monitor;
mod net;
mod outbound;
mod retention;
mod secret;
mod serve;
mod signature;
mod sla;
mod store;
mod supervise;
mod systemd;
mod time;

#[cfg(test)]
mod proptests;

use std::io::Read;
use std::process::ExitCode;

use cli::Command;
use config::{Config, Env};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match cli::parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("statussentry: {e}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => {
            println!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("statussentry {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::CheckConfig { config } => {
            match Config::load(Some(&config), &Env::from_process()) {
                Ok(c) => {
                    for warning in &c.warnings {
                        eprintln!("warning: {warning}");
                    }
                    print!("{}", c.render());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e.to_string()),
            }
        }
        Command::Serve { config } => {
            env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
                .init();
            let result = Config::load(config.as_deref(), &Env::from_process())
                .map_err(|e| e.to_string())
                .and_then(serve::run);
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log::error!("{e}");
                    fail(&e)
                }
            }
        }
        Command::Backup { dest, config } => {
            let result = Config::load(config.as_deref(), &Env::from_process())
                .map_err(|e| e.to_string())
                .and_then(|c| serve::backup(&c, &dest));
            match result {
                Ok(events) => {
                    println!("backup written to {} ({events} events)", dest.display());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Command::GenerateFixture {
            fixture,
            dest,
            scale_ppm,
        } => {
            let started = std::time::Instant::now();
            let scale = f64::from(scale_ppm) / 1e6;
            match store::fixture::generate(&dest, fixture, scale, time::now_ms()) {
                Ok(made) => {
                    println!(
                        "{} written in {:.1} s: {made:?}",
                        dest.display(),
                        started.elapsed().as_secs_f64()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e.to_string()),
            }
        }
        Command::ResetAdminToken { config } => {
            let env = Env::from_process();
            match Config::load(config.as_deref(), &env)
                .map_err(|e| e.to_string())
                .and_then(|c| serve::reset_admin_token(&c, &env))
            {
                Ok(reset) => {
                    println!("{}", reset.token);
                    match reset.overridden_by {
                        None => eprintln!(
                            "new admin token stored; a running server takes it at its next start"
                        ),
                        Some(source) => eprintln!(
                            "warning: new admin token stored, but {source} is set and the service uses that token instead; this reset changes nothing until it is unset"
                        ),
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Command::Sign { secret, timestamp } => {
            let secret = match secret.read() {
                Ok(s) => s,
                Err(e) => return usage_error(&e),
            };
            let mut body = Vec::new();
            if let Err(e) = std::io::stdin().read_to_end(&mut body) {
                return fail(&format!("cannot read the body from stdin: {e}"));
            }
            let t = timestamp.unwrap_or_else(|| time::now_ms() / 1000);
            println!("{}", signature::header(&[&secret], t, &body));
            ExitCode::SUCCESS
        }
        Command::Verify {
            secret,
            header,
            tolerance,
            body_file,
        } => {
            let secret = match secret.read() {
                Ok(s) => s,
                Err(e) => return usage_error(&e),
            };
            let body = match &body_file {
                Some(path) => {
                    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
                }
                None => {
                    let mut b = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut b)
                        .map(|_| b)
                        .map_err(|e| format!("cannot read the body from stdin: {e}"))
                }
            };
            let body = match body {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("statussentry: {e}");
                    return ExitCode::from(2);
                }
            };
            match signature::verify(&secret, &header, &body, time::now_ms() / 1000, tolerance) {
                Ok(()) => {
                    println!("valid");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    println!("invalid: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// A usage error found after parsing (an unreadable secret file): exit 2, as `parse`'s.
fn usage_error(message: &str) -> ExitCode {
    eprintln!("statussentry: {message}");
    ExitCode::from(2)
}

fn fail(message: &str) -> ExitCode {
    eprintln!("statussentry: {message}");
    ExitCode::FAILURE
}
