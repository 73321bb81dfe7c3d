//! The dashboard: `polaris` on a terminal. A full-screen client of the agent (its control
//! socket) and of the coordinator (HTTP); it runs no service itself, so quitting it never stops
//! heartbeats or compute_subnet.
//!
//! # Layout
//! - [`event_loop`]: the tickless loop and the [`Host`] it draws on (the real terminal, or a
//!   test's screen); `terminal`: the real one, with its restore-on-every-exit rules.
//! - `app`: the state and [`App::update`](app::App), the one way it changes (`action`).
//! - `keymap`: the single table behind key dispatch, help and the hint bar; `theme`.
//! - `tabs/`: one file per tab; `wizard`: the Register tab's state over `register::engine`;
//!   `log_buffer`: the Logs tab's bounded ring; `widgets/`: popups and the text field.
//! - `services/`: what the loop listens to — the agent link, the coordinator poller, the
//!   load sampler, the log feed — and the one-shot jobs (start, stop, register, bench …).

mod action;
mod app;
pub mod event_loop;
mod keymap;
mod log_buffer;
mod services;
mod tabs;
mod terminal;
mod theme;
mod widgets;
mod wizard;

#[cfg(test)]
mod tests;

use std::process::ExitCode;

use anyhow::Context as _;

use crate::config::Settings;

pub use event_loop::Host;

fn setup(settings: &Settings, log_lines: usize) -> app::Setup {
    app::Setup {
        home: settings.home.clone(),
        standalone: !settings.server_url_set,
        server_url: settings
            .server_url
            .as_str()
            .trim_end_matches('/')
            .to_owned(),
        relay: settings.relay.url.clone(),
        compute_repo: settings.compute.repo.clone(),
        log_lines,
    }
}

/// Runs the dashboard on `host` until the user quits; returns the line to print afterwards
/// (whether the agent keeps running, and how to stop it).
pub async fn run_app<H: Host>(
    host: &mut H,
    settings: Settings,
    log_lines: usize,
) -> anyhow::Result<String> {
    let mut app = app::App::new(setup(&settings, log_lines), theme::Theme::from_env());
    let mut services =
        services::Services::start(settings).context("cannot start the dashboard's services")?;
    event_loop::run(host, &mut app, &mut services).await?;
    Ok(app.farewell())
}

/// `polaris` on a terminal.
pub fn run(settings: Settings, log_lines: usize) -> anyhow::Result<ExitCode> {
    let logs = settings.logs_dir();
    // tracing goes to a file: a line printed on the screen would tear the dashboard.
    let _guard = crate::telemetry::init_file_logging(&logs, "dashboard")?;
    terminal::install_panic_hook(logs.join("dashboard.log.*"));
    // One thread: the dashboard waits on the terminal and a few sockets; blocking work (NVML,
    // git, the disk benchmark) runs on blocking threads or the sampler's own thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = runtime.block_on(async {
        let mut host = terminal::CrosstermHost::new().context("cannot take over the terminal")?;
        let farewell = run_app(&mut host, settings, log_lines).await;
        drop(host);
        farewell
    });
    // A job stuck in the kernel (a hung disk) must not hold the exit.
    runtime.shutdown_background();
    terminal::restore();
    let farewell = outcome?;
    println!("{farewell}");
    Ok(ExitCode::SUCCESS)
}
