//! The tickless loop (slumber's and yazi's shape): wait for whichever comes first — a key, a
//! service's new state, log lines, a finished job, the timer the app asked for, a signal —
//! turn it into an [`Action`], let the app update, and draw only when something changed, at
//! most once per [`MIN_FRAME`] while log lines pour in.

use std::future::Future;
use std::time::Duration;

use crossterm::event::Event;
use futures_util::FutureExt;
use ratatui::Frame;
use tokio::time::Instant;

use super::action::{Action, Effect, JobResult};
use super::app::App;
use super::services::Services;
use super::services::log_feed::Feed;

/// The shortest time between two frames (50 frames a second at most).
pub(crate) const MIN_FRAME: Duration = Duration::from_millis(20);
/// Log events taken in one go before the screen gets a chance to draw.
const LOG_BATCH: usize = 20_000;

/// The terminal side of the loop: the real terminal, or a test's screen and scripted keys.
pub trait Host {
    /// Draws one frame.
    fn draw(&mut self, render: &mut dyn FnMut(&mut Frame)) -> std::io::Result<()>;
    /// The next input event; None when input has ended.
    fn next_event(&mut self) -> impl Future<Output = Option<std::io::Result<Event>>>;
    fn set_mouse(&mut self, on: bool) -> std::io::Result<()>;
    /// Gives the terminal back to the shell until the user resumes us (Ctrl-Z).
    fn suspend(&mut self) -> std::io::Result<()>;
    /// Runs `command` on the terminal (btcli asks for a password) and takes the screen back.
    fn hand_over(
        &mut self,
        command: &mut std::process::Command,
    ) -> std::io::Result<std::process::ExitStatus>;
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Waits for a change; a sender that is gone never wakes us again.
async fn changed<T>(rx: &mut tokio::sync::watch::Receiver<T>) {
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(unix)]
async fn terminated(
    signals: &mut Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
) {
    match signals {
        Some((term, hup)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = hup.recv() => {}
            }
        }
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn terminated(_signals: &mut Option<()>) {
    std::future::pending().await
}

/// Runs the app until it quits.
pub(crate) async fn run<H: Host>(
    host: &mut H,
    app: &mut App,
    services: &mut Services,
) -> anyhow::Result<()> {
    #[cfg(unix)]
    let mut signals = {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::terminate())
            .ok()
            .zip(signal(SignalKind::hangup()).ok())
    };
    #[cfg(not(unix))]
    let mut signals: Option<()> = None;
    let first = app.start();
    perform(host, services, first);
    let mut last_draw: Option<Instant> = None;
    let mut pending_draw = true;
    let mut next_tick = app.next_tick().map(|d| Instant::now() + d);
    loop {
        if app.quit {
            return Ok(());
        }
        pending_draw |= app.take_dirty();
        let now = Instant::now();
        let draw_due = last_draw.is_none_or(|at| now >= at + MIN_FRAME);
        if pending_draw && draw_due {
            host.draw(&mut |frame| app.draw(frame))?;
            last_draw = Some(now);
            pending_draw = false;
        }
        let frame_at = pending_draw.then(|| last_draw.map_or(now, |at| at + MIN_FRAME));
        if next_tick.is_none() {
            next_tick = app.next_tick().map(|d| now + d);
        }
        let action = tokio::select! {
            biased;
            event = host.next_event() => match event {
                Some(Ok(Event::Key(key))) => Action::Key(key),
                Some(Ok(Event::Mouse(mouse))) => Action::Mouse(mouse),
                Some(Ok(Event::Resize(..))) => Action::Resize,
                Some(Ok(_)) => continue,
                Some(Err(err)) => {
                    tracing::warn!(error = %err, "cannot read the terminal");
                    Action::Quit
                }
                None => Action::Quit,
            },
            () = terminated(&mut signals) => Action::Quit,
            Some(result) = services.jobs.recv() => Action::Job(result),
            () = changed(&mut services.agent) => Action::Agent(services.agent.borrow_and_update().clone()),
            () = changed(&mut services.coordinator) => Action::Coordinator(Box::new(services.coordinator.borrow_and_update().clone())),
            () = changed(&mut services.usage) => Action::Usage(Box::new(services.usage.borrow_and_update().clone())),
            Some(first) = services.logs.recv() => Action::Logs(drain(first, &mut services.logs)),
            () = sleep_until(frame_at) => continue,
            () = sleep_until(next_tick) => {
                next_tick = None;
                Action::Tick
            }
        };
        let effects = app.update(action);
        perform(host, services, effects);
    }
}

/// The first log event and whatever else is queued, up to [`LOG_BATCH`].
fn drain(first: Feed, rx: &mut tokio::sync::mpsc::Receiver<Feed>) -> Vec<Feed> {
    let mut batch = vec![first];
    while batch.len() < LOG_BATCH {
        match rx.recv().now_or_never() {
            Some(Some(feed)) => batch.push(feed),
            _ => break,
        }
    }
    batch
}

fn perform<H: Host>(host: &mut H, services: &mut Services, effects: Vec<Effect>) {
    for effect in effects {
        match effect {
            Effect::Spawn(job) => services.spawn(job),
            Effect::FollowLogs { source, generation } => services.follow_logs(source, generation),
            Effect::PokeAgent => services.poke_agent(),
            Effect::PokeCoordinator => services.poke_coordinator(),
            Effect::Measure(interest) => services.measure(interest),
            Effect::SetMouse(on) => {
                if let Err(err) = host.set_mouse(on) {
                    tracing::warn!(error = %err, "cannot switch the mouse");
                }
            }
            Effect::Suspend => {
                if let Err(err) = host.suspend() {
                    tracing::warn!(error = %err, "cannot suspend");
                }
            }
            Effect::HandOver(mut command) => {
                let outcome = host
                    .hand_over(&mut command)
                    .map(|status| status.success())
                    .map_err(|e| {
                        format!(
                            "cannot run {}: {e}",
                            command.get_program().to_string_lossy()
                        )
                    });
                let _ = services.results().send(JobResult::HandedBack(outcome));
            }
        }
    }
}
