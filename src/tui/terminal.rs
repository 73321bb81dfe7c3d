//! The real terminal: raw mode and the alternate screen while the dashboard runs, restored on
//! every way out — a normal quit, an error returned with `?` (the guard's `Drop`), a panic (the
//! hook restores first, then says where the log is), SIGTERM/SIGHUP (the loop quits). Ctrl-Z
//! suspends and `fg` resumes; btcli and comx get the terminal to themselves and give it back.

use std::io::{Stdout, Write};
use std::path::PathBuf;

use crossterm::event::{DisableMouseCapture, EnableMouseCapture, Event, EventStream};
use crossterm::terminal::{
    BeginSynchronizedUpdate, EndSynchronizedUpdate, EnterAlternateScreen, LeaveAlternateScreen,
    disable_raw_mode, enable_raw_mode,
};
use crossterm::{cursor, execute};
use futures_util::StreamExt;
use ratatui::Frame;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use super::event_loop::Host;

/// Puts the terminal back as the shell expects it. Every step runs even if one before failed.
pub(crate) fn restore() {
    let _ = disable_raw_mode();
    let mut out = std::io::stdout();
    let _ = execute!(out, DisableMouseCapture);
    let _ = execute!(out, LeaveAlternateScreen);
    let _ = execute!(out, cursor::Show);
    let _ = out.flush();
}

fn enter(mouse: bool) -> std::io::Result<()> {
    enable_raw_mode()?;
    let mut out = std::io::stdout();
    execute!(out, EnterAlternateScreen, cursor::Hide)?;
    if mouse {
        execute!(out, EnableMouseCapture)?;
    }
    Ok(())
}

/// Restores the terminal before the panic message, which then names the log file (a panic
/// printed into the alternate screen would vanish with it).
pub(crate) fn install_panic_hook(log: PathBuf) {
    let ui_thread = std::thread::current().id();
    std::panic::set_hook(Box::new(move |info| {
        // A panic elsewhere (a job, a probe, the sampler) ends only that thread or task: the
        // dashboard goes on drawing, so the screen must stay as it is; the log keeps the news.
        if std::thread::current().id() != ui_thread {
            tracing::error!(panic = %info, "a background task of the dashboard panicked");
            return;
        }
        restore();
        tracing::error!(panic = %info, "the dashboard crashed");
        eprintln!(
            "polaris: the dashboard crashed: {info}\nDetails are in {} (the agent and compute_subnet keep running).",
            log.display()
        );
    }));
}

pub(crate) struct CrosstermHost {
    terminal: Terminal<CrosstermBackend<Stdout>>,
    /// Dropped while another program has the terminal, so nothing here reads its keys.
    events: Option<EventStream>,
    mouse: bool,
}

impl CrosstermHost {
    pub(crate) fn new() -> std::io::Result<Self> {
        enter(false)?;
        let terminal = match Terminal::new(CrosstermBackend::new(std::io::stdout())) {
            Ok(terminal) => terminal,
            Err(err) => {
                restore();
                return Err(err);
            }
        };
        Ok(Self {
            terminal,
            events: Some(EventStream::new()),
            mouse: false,
        })
    }

    /// Leaves the screen to someone else, runs `during`, and takes the screen back.
    fn away<T>(&mut self, during: impl FnOnce() -> T) -> std::io::Result<T> {
        self.events = None;
        restore();
        let result = during();
        // Keys are read again even if the screen cannot be taken back, so q still quits.
        self.events = Some(EventStream::new());
        enter(self.mouse)?;
        // The other program drew over everything: repaint all of it.
        self.terminal.clear()?;
        Ok(result)
    }
}

impl Drop for CrosstermHost {
    fn drop(&mut self) {
        restore();
    }
}

impl Host for CrosstermHost {
    fn draw(&mut self, render: &mut dyn FnMut(&mut Frame)) -> std::io::Result<()> {
        // One synchronized update per frame: no tearing over SSH or in tmux.
        let _ = execute!(self.terminal.backend_mut(), BeginSynchronizedUpdate);
        let drawn = self.terminal.draw(|frame| render(frame)).map(|_| ());
        let _ = execute!(self.terminal.backend_mut(), EndSynchronizedUpdate);
        drawn
    }

    async fn next_event(&mut self) -> Option<std::io::Result<Event>> {
        match self.events.as_mut() {
            Some(events) => events.next().await,
            None => std::future::pending().await,
        }
    }

    fn set_mouse(&mut self, on: bool) -> std::io::Result<()> {
        self.mouse = on;
        if on {
            execute!(self.terminal.backend_mut(), EnableMouseCapture)
        } else {
            execute!(self.terminal.backend_mut(), DisableMouseCapture)
        }
    }

    fn suspend(&mut self) -> std::io::Result<()> {
        #[cfg(unix)]
        {
            // SIGTSTP stops us here; the call returns once the shell's `fg` sends SIGCONT.
            self.away(|| {
                rustix::process::kill_process(
                    rustix::process::getpid(),
                    rustix::process::Signal::TSTP,
                )
            })?
            .map_err(std::io::Error::from)
        }
        #[cfg(not(unix))]
        {
            Ok(())
        }
    }

    fn hand_over(
        &mut self,
        command: &mut std::process::Command,
    ) -> std::io::Result<std::process::ExitStatus> {
        self.away(|| {
            println!(
                "Running {} (the dashboard comes back when it ends)…",
                command.get_program().to_string_lossy()
            );
            command.status()
        })?
    }
}
