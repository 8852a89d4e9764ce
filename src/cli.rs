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
  statussentry sign [--secret-file F | --secret S] [--timestamp T]
                                           print an X-StatusSentry-Signature value for the body on stdin
  statussentry verify [--secret-file F | --secret S] --header H [--tolerance SECS] [--body-file F]
                                           check a received request's signature (body on stdin by default)
  statussentry --help | --version

The signing secret of sign and verify: --secret-file F reads it from a file (surrounding
whitespace ignored); without either flag it comes from the environment variable
STATUSSENTRY_SECRET; --secret S puts it on the command line, where every local user can read
it (ps) while the command runs.

The tools (backup, admin-token) open only an existing database: a relative storage.path is
taken inside $STATE_DIRECTORY when set (systemd sets it for the service), else the working
directory; give the service's state directory (STATE_DIRECTORY=/var/lib/statussentry) or an
absolute storage.path.

Environment: STATUSSENTRY_LISTEN, STATUSSENTRY_ADMIN_TOKEN and STATUSSENTRY_DB override the
configuration file; STATUSSENTRY_SECRET is the secret of sign and verify; RUST_LOG sets the
log level (default info).";

/// A flag: its name, whether it takes a value, and the commands that take it. The one list
/// every flag is defined in; the parser reads nothing else.
struct Flag {
    name: &'static str,
    takes_value: bool,
    commands: &'static [&'static str],
}

const FLAGS: [Flag; 9] = [
    Flag {
        name: "--config",
        takes_value: true,
        commands: &["serve", "check-config", "backup", "admin-token"],
    },
    Flag {
        name: "--reset",
        takes_value: false,
        commands: &["admin-token"],
    },
    Flag {
        name: "--secret",
        takes_value: true,
        commands: &["sign", "verify"],
    },
    Flag {
        name: "--secret-file",
        takes_value: true,
        commands: &["sign", "verify"],
    },
    Flag {
        name: "--timestamp",
        takes_value: true,
        commands: &["sign"],
    },
    Flag {
        name: "--header",
        takes_value: true,
        commands: &["verify"],
    },
    Flag {
        name: "--tolerance",
        takes_value: true,
        commands: &["verify"],
    },
    Flag {
        name: "--body-file",
        takes_value: true,
        commands: &["verify"],
    },
    // The hidden `generate-fixture`'s (not in `COMMANDS`, so never in the help).
    Flag {
        name: "--scale",
        takes_value: true,
        commands: &["generate-fixture"],
    },
];

/// The commands, as typed.
const COMMANDS: [&str; 6] = [
    "serve",
    "check-config",
    "backup",
    "admin-token",
    "sign",
    "verify",
];

fn flag(name: &str) -> Option<&'static Flag> {
    FLAGS.iter().find(|f| f.name == name)
}

/// The environment variable `sign` and `verify` read the secret from when no flag gives it.
pub const SECRET_ENV: &str = "STATUSSENTRY_SECRET";

/// Where `sign` and `verify` take the signing secret from.
#[derive(Debug, PartialEq, Eq)]
pub enum Secret {
    /// Given on the command line (`--secret`) or in `STATUSSENTRY_SECRET`.
    Value(String),
    /// `--secret-file`: read when the command runs.
    File(PathBuf),
}

impl Secret {
    /// The secret itself; the error is a usage error naming the file.
    pub fn read(self) -> Result<String, String> {
        match self {
            Secret::Value(s) => Ok(s),
            Secret::File(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read --secret-file {}: {e}", path.display()))?;
                let secret = text.trim();
                if secret.is_empty() {
                    return Err(format!("--secret-file {} is empty", path.display()));
                }
                Ok(secret.to_string())
            }
        }
    }
}

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
        secret: Secret,
        timestamp: Option<i64>,
    },
    Verify {
        secret: Secret,
        header: String,
        tolerance: i64,
        body_file: Option<PathBuf>,
    },
    /// Hidden (not in `USAGE`): writes a generated database of a long-lived install's size
    /// into a new file, for the full-size benchmark (`store::fixture`).
    GenerateFixture {
        fixture: crate::store::fixture::Fixture,
        dest: PathBuf,
        /// The size as a fraction of the full one, in millionths (1,000,000 is full size).
        scale_ppm: u32,
    },
    Help,
    Version,
}

/// Parses the arguments after the program name; the error is a one-line reason.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let secret_env = std::env::var(SECRET_ENV).ok().filter(|s| !s.is_empty());
    parse_with(args, secret_env)
}

/// [`parse`], given the value of `STATUSSENTRY_SECRET`.
fn parse_with(args: &[String], secret_env: Option<String>) -> Result<Command, String> {
    let mut positional: Vec<&str> = Vec::new();
    let mut flags: Vec<(&str, Option<&str>)> = Vec::new();
    let takes_value = |name: &str| flag(name).is_some_and(|f| f.takes_value);
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--help" || a == "-h" {
            return Ok(Command::Help);
        }
        if a == "--version" || a == "-V" {
            return Ok(Command::Version);
        }
        if let Some((name, value)) = a.split_once('=').filter(|(n, _)| takes_value(n)) {
            flags.push((name, Some(value)));
        } else if takes_value(a) {
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
        ["generate-fixture", kind, file] => {
            return generate_fixture(kind, file, &flags);
        }
        [_, extra, ..] => return Err(format!("unexpected argument {extra:?}")),
    };
    if sub == "help" {
        return Ok(Command::Help);
    }
    if !COMMANDS.contains(&sub) {
        return Err(format!("unknown command {sub:?}"));
    }
    let mut seen: Vec<&str> = Vec::new();
    for (name, _) in &flags {
        if !flag(name).is_some_and(|f| f.commands.contains(&sub)) {
            return Err(format!("{sub} does not take {name}"));
        }
        if seen.contains(name) {
            return Err(format!("{name} given twice"));
        }
        seen.push(name);
    }
    let value = |name: &str| flags.iter().find(|(n, _)| *n == name).and_then(|(_, v)| *v);
    let required = |name: &str| value(name).ok_or_else(|| format!("{sub} needs {name}"));
    let secret = || match (value("--secret"), value("--secret-file")) {
        (Some(_), Some(_)) => Err("give the secret once: --secret or --secret-file".to_string()),
        (Some(s), None) => Ok(Secret::Value(s.to_string())),
        (None, Some(f)) => Ok(Secret::File(PathBuf::from(f))),
        (None, None) => secret_env.clone().map(Secret::Value).ok_or_else(|| {
            format!("{sub} needs --secret-file F, {SECRET_ENV} in the environment, or --secret S")
        }),
    };
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
            secret: secret()?,
            timestamp: match value("--timestamp") {
                None => None,
                Some(t) => Some(
                    t.parse()
                        .map_err(|_| format!("--timestamp must be Unix seconds, not {t:?}"))?,
                ),
            },
        },
        "verify" => Command::Verify {
            secret: secret()?,
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
        other => unreachable!("{other} is in COMMANDS but not parsed"),
    })
}

/// `generate-fixture month|fleet FILE [--scale F]`, F in (0, 1] (default 1).
fn generate_fixture(
    kind: &str,
    file: &str,
    flags: &[(&str, Option<&str>)],
) -> Result<Command, String> {
    let fixture = crate::store::fixture::Fixture::parse(kind)
        .ok_or_else(|| format!("generate-fixture makes month or fleet, not {kind:?}"))?;
    let mut scale = 1.0;
    for (name, value) in flags {
        match (*name, value) {
            ("--scale", Some(v)) => {
                scale = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| *s > 0.0 && *s <= 1.0)
                    .ok_or_else(|| format!("--scale must be above 0 and at most 1, not {v:?}"))?;
            }
            (other, _) => return Err(format!("generate-fixture does not take {other}")),
        }
    }
    Ok(Command::GenerateFixture {
        fixture,
        dest: PathBuf::from(file),
        scale_ppm: ((scale * 1e6).round() as u32).max(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<Command, String> {
        let args: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        parse_with(&args, None)
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
                    secret: Secret::Value("whsec_x".into()),
                    timestamp: Some(5),
                }),
            ),
            (
                "sign --secret-file /run/s",
                Ok(Command::Sign {
                    secret: Secret::File("/run/s".into()),
                    timestamp: None,
                }),
            ),
            (
                "verify --secret-file=s.txt --header h",
                Ok(Command::Verify {
                    secret: Secret::File("s.txt".into()),
                    header: "h".into(),
                    tolerance: 300,
                    body_file: None,
                }),
            ),
        ];
        for (line, want) in rows {
            assert_eq!(p(line), want, "{line:?}");
        }
    }

    #[test]
    fn the_usage_names_every_command_with_its_flags() {
        // Each command's lines of USAGE (a command's usage may wrap onto an indented line).
        let lines: Vec<&str> = USAGE.lines().collect();
        for command in COMMANDS {
            let head = format!("statussentry {command}");
            let start = lines
                .iter()
                .position(|l| l.contains(&head) || (command == "serve" && l.contains("[serve]")))
                .unwrap_or_else(|| panic!("USAGE has no line for {command}"));
            // Its line, and the next when that continues it rather than starting another.
            let mut text = lines[start].to_string();
            if let Some(next) = lines.get(start + 1).filter(|l| !l.contains("statussentry")) {
                text.push_str(next);
            }
            for f in FLAGS.iter().filter(|f| f.commands.contains(&command)) {
                assert!(text.contains(f.name), "USAGE of {command} lacks {}", f.name);
            }
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
            "sign --secret s --secret-file f",
            "verify --header h",
        ] {
            assert!(p(line).is_err(), "{line:?} parsed");
        }
    }

    #[test]
    fn the_secret_may_come_from_the_environment() {
        let args =
            |line: &str| -> Vec<String> { line.split_whitespace().map(str::to_string).collect() };
        let env = || Some("whsec_from_env".to_string());
        assert_eq!(
            parse_with(&args("sign"), env()),
            Ok(Command::Sign {
                secret: Secret::Value("whsec_from_env".into()),
                timestamp: None,
            })
        );
        // A flag wins over the environment.
        assert_eq!(
            parse_with(&args("sign --secret whsec_flag"), env()),
            Ok(Command::Sign {
                secret: Secret::Value("whsec_flag".into()),
                timestamp: None,
            })
        );
    }

    #[test]
    fn the_hidden_fixture_command() {
        use crate::store::fixture::Fixture;
        assert_eq!(
            p("generate-fixture month m.db --scale 0.01"),
            Ok(Command::GenerateFixture {
                fixture: Fixture::Month,
                dest: "m.db".into(),
                scale_ppm: 10_000,
            })
        );
        assert_eq!(
            p("generate-fixture fleet f.db"),
            Ok(Command::GenerateFixture {
                fixture: Fixture::Fleet,
                dest: "f.db".into(),
                scale_ppm: 1_000_000,
            })
        );
        for line in [
            "generate-fixture year y.db",
            "generate-fixture month m.db --scale 0",
            "generate-fixture month m.db --scale 2",
            "generate-fixture month m.db --config c.toml",
            "generate-fixture month",
        ] {
            assert!(p(line).is_err(), "{line:?} parsed");
        }
    }
}
