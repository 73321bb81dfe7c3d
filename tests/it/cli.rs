//! The command line of the real binary: help, completions, exit codes and setting errors.

use std::path::Path;
use std::process::Output;

use crate::common;

fn polaris(home: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = common::polaris(home);
    command.args(args);
    for (name, value) in envs {
        command.env(name, value);
    }
    command.output().expect("the polaris binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_lists_every_command_with_a_description() {
    let home = tempfile::tempdir().expect("temp dir");
    let out = polaris(home.path(), &["--help"], &[]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for command in [
        "check-main",
        "logs",
        "register",
        "start",
        "status",
        "stop",
        "update",
        "view-compute",
        "inventory",
        "server",
        "completions",
    ] {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{command} ")))
            .unwrap_or_else(|| panic!("{command} missing from --help:\n{help}"));
        assert!(
            line.split_whitespace().count() > 2,
            "{command} has no description: {line:?}"
        );
    }
}

#[test]
fn no_command_without_a_terminal_prints_help_and_exits_2() {
    let home = tempfile::tempdir().expect("temp dir");
    let out = polaris(home.path(), &[], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stdout).contains("Usage: polaris"));
}

#[test]
fn unknown_flags_are_usage_errors() {
    let home = tempfile::tempdir().expect("temp dir");
    let out = polaris(home.path(), &["server", "--no-such-flag"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--no-such-flag"));
}

#[test]
fn completions_are_printed_for_each_shell() {
    let home = tempfile::tempdir().expect("temp dir");
    for (shell, marker) in [
        ("bash", "_polaris"),
        ("zsh", "#compdef polaris"),
        ("fish", "complete -c polaris"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = polaris(home.path(), &["completions", shell], &[]);
        assert!(out.status.success(), "{shell}");
        let script = text(&out.stdout);
        assert!(
            script.contains(marker),
            "{shell} completions lack {marker:?}"
        );
        assert!(
            script.contains("view-compute"),
            "{shell} completions lack the commands"
        );
    }
}

#[test]
fn a_bad_setting_names_itself_its_value_and_its_source() {
    let home = tempfile::tempdir().expect("temp dir");
    let out = polaris(
        home.path(),
        &["server"],
        &[("POLARIS_OFFLINE_AFTER", "soon")],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(
        err.lines().count(),
        1,
        "one short line, no backtrace: {err}"
    );
    for part in [
        "POLARIS_OFFLINE_AFTER",
        "\"soon\"",
        "environment",
        "duration",
    ] {
        assert!(err.contains(part), "{err:?} lacks {part:?}");
    }
    assert!(
        !home.path().join("polaris.db").exists(),
        "nothing is created on a bad setting"
    );
}

#[test]
fn a_bad_dotenv_value_names_the_file() {
    let home = tempfile::tempdir().expect("temp dir");
    std::fs::write(home.path().join(".env"), "POLARIS_LISTEN=localhost\n").expect("write .env");
    let out = polaris(home.path(), &["server"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("POLARIS_LISTEN") && err.contains(".env"),
        "{err}"
    );
}

#[test]
fn a_misspelt_toml_key_is_refused() {
    let home = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        home.path().join("polaris.toml"),
        "[server]\nofline_after = \"5s\"\n",
    )
    .expect("write");
    let out = polaris(home.path(), &["server"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("server.ofline_after"));
}

#[test]
fn flags_beat_the_environment() {
    let home = tempfile::tempdir().expect("temp dir");
    // The flag is invalid and the environment valid: the flag wins, so the run fails on it.
    let out = polaris(
        home.path(),
        &["server", "--offline-after", "never"],
        &[("POLARIS_OFFLINE_AFTER", "5s")],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "a flag's bad value is a usage error"
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("\"never\"") && err.contains("command-line flag"),
        "{err}"
    );
}

#[test]
fn a_busy_port_is_a_clear_error() {
    let home = tempfile::tempdir().expect("temp dir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = polaris(home.path(), &["server", "--listen", &addr], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot listen on") && err.contains(&addr),
        "{err}"
    );
}

#[test]
fn update_subnet_without_a_repository_is_a_usage_error() {
    let home = tempfile::tempdir().expect("temp dir");
    let out = polaris(home.path(), &["update", "subnet"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("POLARIS_COMPUTE_REPO"));
}

#[test]
fn inventory_output_into_a_missing_directory_is_refused_and_creates_nothing() {
    let home = tempfile::tempdir().expect("temp dir");
    let missing = home.path().join("no-such-dir");
    let target = missing.join("inventory.json");
    let out = polaris(
        home.path(),
        &["inventory", "--output", &target.to_string_lossy()],
        &[],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no directory"), "{stderr}");
    assert!(stderr.contains(&*missing.to_string_lossy()), "{stderr}");
    assert!(!missing.exists(), "the missing directory was created");
}

#[test]
fn an_inert_firestore_project_is_refused_not_ignored() {
    let home = tempfile::tempdir().expect("temp dir");
    let out = polaris(
        home.path(),
        &["server", "--listen", "127.0.0.1:0"],
        &[("POLARIS_FIRESTORE_PROJECT", "my-project")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("POLARIS_FIRESTORE_PROJECT"));
    assert!(
        !home.path().join("polaris.db").exists(),
        "nothing is created"
    );
}

#[test]
fn the_systemd_unit_runs_the_daemon_and_restarts_it() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/polaris.service"),
    )
    .expect("assets/polaris.service");
    let line = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::to_owned)
    };
    assert_eq!(
        line("ExecStart=").as_deref(),
        Some("/usr/local/bin/polaris --daemon")
    );
    assert_eq!(line("Restart=").as_deref(), Some("on-failure"));
    assert!(line("Environment=POLARIS_HOME=").is_some());
    assert_eq!(
        line("ExecReload=").as_deref(),
        Some("/bin/kill -HUP $MAINPID")
    );
}

/// Settings the probe found taken quietly or said badly (issue 11, finding 7): an empty flag
/// value and an empty POLARIS_HOME are refused, not replaced by the defaults; a flag's bad value
/// is a usage error (exit 2) whose examples are values the setting accepts; another program's
/// database and a file that is no database are named in one short line.
#[test]
fn empty_and_foreign_settings_are_refused_in_one_clear_line() {
    let home = tempfile::tempdir().expect("temp dir");
    let one_line = |out: &Output| {
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        err
    };

    let out = polaris(home.path(), &["server", "--listen", ""], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(one_line(&out).contains("POLARIS_LISTEN=\"\" (from command-line flag)"));
    assert!(!home.path().join("polaris.db").exists(), "nothing started");

    let out = polaris(home.path(), &["status"], &[("POLARIS_HOME", "")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line(&out).contains("POLARIS_HOME=\"\" (from environment)"));

    let out = polaris(home.path(), &["server", "--offline-after", "500ms"], &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a flag's bad value is a usage error"
    );
    let err = one_line(&out);
    assert!(
        err.contains("from 1s to 1day, like 2s, 10s or 45s"),
        "{err}"
    );
    let out = polaris(
        home.path(),
        &["server"],
        &[("POLARIS_OFFLINE_AFTER", "500ms")],
    );
    assert_eq!(out.status.code(), Some(1), "the environment's is a failure");

    let foreign = tempfile::tempdir().expect("temp dir");
    let db = foreign.path().join("polaris.db");
    rusqlite::Connection::open(&db)
        .and_then(|c| c.execute_batch("CREATE TABLE miners (x); CREATE TABLE other (y);"))
        .expect("another program's database");
    let listen = ["server", "--listen", "127.0.0.1:0"];
    let out = polaris(foreign.path(), &listen, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = one_line(&out);
    assert!(
        err.contains("is not a polaris database (it holds the tables miners, other)"),
        "{err}"
    );

    std::fs::write(&db, "plain text, not a database").expect("write");
    let out = polaris(foreign.path(), &listen, &[]);
    let err = one_line(&out);
    assert!(err.contains("file is not a database (code 26)"), "{err}");
    assert_eq!(err.matches("not a database").count(), 1, "said once: {err}");
}
