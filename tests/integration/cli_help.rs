//! `--help` for operators: each subcommand shows its own arguments, each described; the
//! server's settings are listed by `serve --help`, with the log format and RUST_LOG explained.

use crate::process_harness::run_in;

/// The argument's line has a description after it, or (clap's long form) the next line does.
#[track_caller]
fn assert_described(help: &str, argument: &str) {
    let lines: Vec<&str> = help.lines().collect();
    let at = lines
        .iter()
        .position(|line| line.trim_start().starts_with(argument))
        .unwrap_or_else(|| panic!("{argument} not in:\n{help}"));
    let same_line = lines[at].trim_start()[argument.len()..].trim();
    let described = if same_line.is_empty() {
        lines.get(at + 1).map_or("", |next| next.trim())
    } else {
        same_line
    };
    assert!(
        described.split_whitespace().count() >= 3,
        "{argument} has no description:\n{help}"
    );
}

#[tokio::test]
async fn each_subcommand_shows_only_its_own_arguments() {
    let dir = tempfile::tempdir().expect("dir");
    let help = |args: &'static [&'static str]| {
        let dir = dir.path().to_owned();
        async move {
            let out = run_in(&dir, &[], args, None).await;
            out.assert_success();
            out.stdout
        }
    };
    let revoke = help(&["keys", "revoke", "--help"]).await;
    assert_described(&revoke, "[KEY_ID]");
    assert_described(&revoke, "--secret-stdin");
    assert_described(&revoke, "--reason <REASON>");
    assert!(
        !revoke.contains("--bind"),
        "server flags in keys revoke:\n{revoke}"
    );
    assert!(revoke.lines().count() < 20, "{revoke}");

    for (args, arguments) in [
        (
            &["bootstrap", "--help"][..],
            &[
                "--workspace <WORKSPACE>",
                "--email <EMAIL>",
                "--name <NAME>",
                "--password-stdin",
            ][..],
        ),
        (
            &["keys", "list", "--help"][..],
            &["--workspace <WORKSPACE>"][..],
        ),
        (
            &["members", "add", "--help"][..],
            &[
                "--workspace <WORKSPACE>",
                "--email <EMAIL>",
                "--role <ROLE>",
            ][..],
        ),
        (
            &["users", "set-password", "--help"][..],
            &["--email <EMAIL>", "--password-stdin"][..],
        ),
    ] {
        let out = run_in(dir.path(), &[], args, None).await;
        out.assert_success();
        for argument in arguments {
            assert_described(&out.stdout, argument);
        }
        assert!(!out.stdout.contains("--database-url"), "{}", out.stdout);
        assert!(
            out.stdout.contains("DATABASE_URL"),
            "where the settings come from: {}",
            out.stdout
        );
    }

    let serve = help(&["serve", "--help"]).await;
    for flag in ["--database-url", "--bind", "--metrics-bind", "--log-format"] {
        assert!(serve.contains(flag), "{flag} not in serve --help:\n{serve}");
    }
    assert!(
        serve.contains("RUST_LOG"),
        "RUST_LOG is not explained:\n{serve}"
    );
    assert_described(&serve, "--log-format <HEFFL_LOG_FORMAT>");
}

/// Flags after `serve` configure it: `heffl-api serve --bind …` is how people write it.
#[tokio::test]
async fn serve_takes_its_flags_after_the_subcommand() {
    let dir = tempfile::tempdir().expect("dir");
    let out = run_in(dir.path(), &[], &["serve", "--session-ttl", "12"], None).await;
    out.assert_failure();
    assert!(out.stderr.contains("HEFFL_SESSION_TTL"), "{}", out.stderr);
    assert!(out.stderr.contains("needs a unit"), "{}", out.stderr);
}

/// Settings' values come from the environment, and `DATABASE_URL`, `HEFFL_REDIS_URL` and
/// `HEFFL_SMTP_URL` hold passwords: no `--help` of any subcommand may print them.
#[tokio::test]
async fn no_help_prints_a_setting_s_value() {
    const PLANTED: &str = "pl4nted-Passw0rd";
    let dir = tempfile::tempdir().expect("dir");
    let env: Vec<(String, String)> = [
        (
            "DATABASE_URL",
            format!("postgres://u:{PLANTED}@db.example/heffl"),
        ),
        (
            "HEFFL_REDIS_URL",
            format!("redis://:{PLANTED}@cache.example:6379"),
        ),
        (
            "HEFFL_DASHBOARD_ORIGINS",
            format!("https://{PLANTED}.example"),
        ),
        (
            "HEFFL_SMTP_URL",
            format!("smtps://mailer:{PLANTED}@smtp.example:465"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut commands: Vec<Vec<&str>> = vec![vec!["--help"]];
    for command in [
        vec!["serve"],
        vec!["migrate"],
        vec!["bootstrap"],
        vec!["users"],
        vec!["users", "disable"],
        vec!["users", "enable"],
        vec!["users", "create"],
        vec!["users", "set-password"],
        vec!["users", "list"],
        vec!["workspaces"],
        vec!["workspaces", "list"],
        vec!["members"],
        vec!["members", "add"],
        vec!["members", "remove"],
        vec!["keys"],
        vec!["keys", "list"],
        vec!["keys", "revoke"],
    ] {
        let mut args = command;
        args.push("--help");
        commands.push(args);
    }
    let mut seen_env_names = false;
    for args in &commands {
        let out = run_in(dir.path(), &env, args, None).await;
        out.assert_success();
        assert!(
            !out.stdout.contains(PLANTED) && !out.stderr.contains(PLANTED),
            "{args:?} printed a setting's value:\n{}",
            out.stdout
        );
        seen_env_names |= out.stdout.contains("[env: DATABASE_URL");
    }
    assert!(seen_env_names, "the help still names the variables");
}
