//! The command line: subcommands and their flags, parsed by hand into a closed enum. Usage
//! errors say what was wrong and exit 2.

use std::path::PathBuf;

pub const USAGE: &str = "\
statussentry: signed, durable webhooks for incidents, monitors and SLAs

Usage:
  statussentry [serve] [--config FILE]     run the service (embedded defaults without --config)
  statussentry check-config --config FILE  validate a configuration and print the effective settings
  statussentry backup FILE [--config FILE]  write a consistent copy of the database, also while serving
  statussentry admin-token --reset [--config FILE]
                                           make a new admin token, print it once, store its hash
  statussentry sign --secret S [--timestamp T]
                                           print an X-StatusSentry-Signature value for the body on stdin
  statussentry verify --secret S --header H [--tolerance SECS] [--body-file F]
                                           check a received request's signature (body on stdin by default)
  statussentry --help | --version

Environment: STATUSSENTRY_LISTEN, STATUSSENTRY_ADMIN_TOKEN and STATUSSENTRY_DB override the
configuration file; RUST_LOG sets the log level (default info).";

/// A parsed command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Serve {
        config: Option<PathBuf>,
    },
    CheckConfig {
        config: PathBuf,
    },
    Backup {
        dest: PathBuf,
        config: Option<PathBuf>,
    },
    ResetAdminToken {
        config: Option<PathBuf>,
    },
    Sign {
        secret: String,
        timestamp: Option<i64>,
    },
    Verify {
        secret: String,
        header: String,
        tolerance: i64,
        body_file: Option<PathBuf>,
    },
    Help,
    Version,
}

/// Parses the arguments after the program name; the error is a one-line reason.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut positional: Vec<&str> = Vec::new();
    let mut flags: Vec<(&str, Option<&str>)> = Vec::new();
    let takes_value = [
        "--config",
        "--secret",
        "--timestamp",
        "--header",
        "--tolerance",
        "--body-file",
    ];
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--help" || a == "-h" {
            return Ok(Command::Help);
        }
        if a == "--version" || a == "-V" {
            return Ok(Command::Version);
        }
        if let Some((name, value)) = a.split_once('=').filter(|(n, _)| takes_value.contains(n)) {
            flags.push((name, Some(value)));
        } else if takes_value.contains(&a) {
            let value = args
                .get(i + 1)
                .ok_or_else(|| format!("{a} needs a value"))?;
            flags.push((a, Some(value.as_str())));
            i += 1;
        } else if a.starts_with('-') && a != "-" {
            flags.push((a, None));
        } else {
            positional.push(a);
        }
        i += 1;
    }
    let (sub, operand) = match positional.as_slice() {
        [] => ("serve", None),
        [one] => (*one, None),
        ["backup", file] => ("backup", Some(*file)),
        [_, extra, ..] => return Err(format!("unexpected argument {extra:?}")),
    };
    let allowed: &[&str] = match sub {
        "serve" => &["--config"],
        "check-config" => &["--config"],
        "backup" => &["--config"],
        "admin-token" => &["--reset", "--config"],
        "sign" => &["--secret", "--timestamp"],
        "verify" => &["--secret", "--header", "--tolerance", "--body-file"],
        "help" => return Ok(Command::Help),
        other => return Err(format!("unknown command {other:?}")),
    };
    let mut seen: Vec<&str> = Vec::new();
    for (name, _) in &flags {
        if !allowed.contains(name) {
            return Err(format!("{sub} does not take {name}"));
        }
        if seen.contains(name) {
            return Err(format!("{name} given twice"));
        }
        seen.push(name);
    }
    let value = |name: &str| flags.iter().find(|(n, _)| *n == name).and_then(|(_, v)| *v);
    let required = |name: &str| value(name).ok_or_else(|| format!("{sub} needs {name}"));
    Ok(match sub {
        "serve" => Command::Serve {
            config: value("--config").map(PathBuf::from),
        },
        "check-config" => Command::CheckConfig {
            config: PathBuf::from(required("--config")?),
        },
        "backup" => Command::Backup {
            dest: PathBuf::from(operand.ok_or("backup needs the file to write")?),
            config: value("--config").map(PathBuf::from),
        },
        "admin-token" => {
            if !seen.contains(&"--reset") {
                return Err("admin-token needs --reset".into());
            }
            Command::ResetAdminToken {
                config: value("--config").map(PathBuf::from),
            }
        }
        "sign" => Command::Sign {
            secret: required("--secret")?.to_string(),
            timestamp: match value("--timestamp") {
                None => None,
                Some(t) => Some(
                    t.parse()
                        .map_err(|_| format!("--timestamp must be Unix seconds, not {t:?}"))?,
                ),
            },
        },
        _ => Command::Verify {
            secret: required("--secret")?.to_string(),
            header: required("--header")?.to_string(),
            tolerance: match value("--tolerance") {
                None => 300,
                Some(t) => t
                    .parse()
                    .ok()
                    .filter(|t: &i64| *t >= 0)
                    .ok_or_else(|| format!("--tolerance must be whole seconds, not {t:?}"))?,
            },
            body_file: value("--body-file").map(PathBuf::from),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<Command, String> {
        let args: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        parse(&args)
    }

    #[test]
    fn commands() {
        let rows = [
            ("", Ok(Command::Serve { config: None })),
            ("serve", Ok(Command::Serve { config: None })),
            (
                "--config a.toml",
                Ok(Command::Serve {
                    config: Some("a.toml".into()),
                }),
            ),
            (
                "--config a.toml serve",
                Ok(Command::Serve {
                    config: Some("a.toml".into()),
                }),
            ),
            (
                "serve --config=a.toml",
                Ok(Command::Serve {
                    config: Some("a.toml".into()),
                }),
            ),
            (
                "check-config --config a.toml",
                Ok(Command::CheckConfig {
                    config: "a.toml".into(),
                }),
            ),
            (
                "admin-token --reset",
                Ok(Command::ResetAdminToken { config: None }),
            ),
            ("--version", Ok(Command::Version)),
            (
                "backup copy.db",
                Ok(Command::Backup {
                    dest: "copy.db".into(),
                    config: None,
                }),
            ),
            ("serve --help", Ok(Command::Help)),
            (
                "sign --secret whsec_x --timestamp 5",
                Ok(Command::Sign {
                    secret: "whsec_x".into(),
                    timestamp: Some(5),
                }),
            ),
        ];
        for (line, want) in rows {
            assert_eq!(p(line), want, "{line:?}");
        }
    }

    #[test]
    fn usage_errors() {
        for line in [
            "bogus",
            "serve --bogus",
            "serve extra",
            "check-config",
            "admin-token",
            "serve --config",
            "serve --config a --config b",
            "sign",
            "backup",
            "check-config extra",
            "sign --secret s --timestamp soon",
            "verify --secret s",
        ] {
            assert!(p(line).is_err(), "{line:?} parsed");
        }
    }
}
