//! The dashboard's one-shot work, each on its own task so the screen never waits: starting and
//! stopping the agent, control requests, `update subnet`, the disk benchmark, registration.
//! Every job ends in exactly one [`JobResult`]; the rules are the library's (the same the CLI
//! follows), this file only runs them and reports.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::sync::mpsc::UnboundedSender;

use crate::agent::control::{self, Request, Response};
use crate::agent::lifecycle;
use crate::config::Settings;
use crate::inventory::bench;
use crate::tui::action::{Job, JobResult};

pub(super) fn spawn(job: Job, settings: Arc<Settings>, tx: UnboundedSender<JobResult>) {
    let failed = failure_of(&job);
    tokio::spawn(async move {
        // A job that panics still answers, so no spinner waits for it forever.
        let result = std::panic::AssertUnwindSafe(run(job, &settings, &tx))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                failed("it stopped unexpectedly; see logs/dashboard.log.*".to_owned())
            });
        let _ = tx.send(result);
    });
}

/// The result a job gives when it cannot finish.
fn failure_of(job: &Job) -> fn(String) -> JobResult {
    match job {
        Job::StartAgent => |why| JobResult::AgentStarted(Err(why)),
        Job::StopAgent => |why| JobResult::AgentStopped(Err(why)),
        Job::StartCompute | Job::StopCompute | Job::RestartCompute => {
            |why| JobResult::Control(Err(why))
        }
        Job::UpdateSubnet => |why| JobResult::UpdateDone(Err(why)),
        Job::Bench => |why| JobResult::BenchDone(Err(why)),
        Job::Prepare => |why| JobResult::Prepared(Err(why)),
        Job::Submit(_) => |why| JobResult::Submitted(Err(why)),
        Job::Inventory => |why| JobResult::Inventory(Err(why)),
    }
}

async fn run(job: Job, settings: &Settings, tx: &UnboundedSender<JobResult>) -> JobResult {
    match job {
        Job::StartAgent => JobResult::AgentStarted(
            lifecycle::start(settings)
                .await
                .map(Box::new)
                .map_err(|e| e.to_string()),
        ),
        Job::StopAgent => JobResult::AgentStopped(
            lifecycle::stop(settings)
                .await
                .map_err(|e| format!("{e:#}")),
        ),
        Job::StartCompute => {
            JobResult::Control(control_request(settings, Request::StartCompute).await)
        }
        Job::StopCompute => {
            JobResult::Control(control_request(settings, Request::StopCompute).await)
        }
        Job::RestartCompute => {
            JobResult::Control(control_request(settings, Request::RestartCompute).await)
        }
        Job::UpdateSubnet => JobResult::UpdateDone(update_subnet(settings, tx).await),
        Job::Bench => JobResult::BenchDone(measure_disk(settings, tx).await),
        Job::Prepare => JobResult::Prepared(
            crate::register::session::prepare(settings)
                .await
                .map(Box::new)
                .map_err(|e| prepare_hint(settings, e.to_string())),
        ),
        Job::Submit(plan) => JobResult::Submitted(submit(settings, &plan).await),
        Job::Inventory => JobResult::Inventory(
            crate::inventory::collect(settings)
                .await
                .map(Box::new)
                .map_err(|e| format!("{e:#}")),
        ),
    }
}

/// With no SERVER_URL the coordinator lives inside the agent: say how to get it up.
fn prepare_hint(settings: &Settings, error: String) -> String {
    if !settings.server_url_set && error.starts_with("cannot reach the coordinator") {
        format!(
            "{error}\nThe local coordinator runs inside the agent: start it from the Overview (s)."
        )
    } else {
        error
    }
}

async fn control_request(settings: &Settings, request: Request) -> Result<String, String> {
    match control::ask(&control::socket_path(&settings.home), request).await {
        Ok(Response::Done { message }) => Ok(message),
        Ok(Response::Refused { message }) => Err(message),
        Ok(_) => Err("the agent gave an unexpected answer".to_owned()),
        Err(err) => Err(err.to_string()),
    }
}

async fn submit(
    settings: &Settings,
    plan: &crate::register::engine::Plan,
) -> Result<Box<crate::register::record::RegistrationRecord>, String> {
    let client = crate::api::client::CoordinatorClient::new(&settings.server_url)
        .map_err(|e| e.to_string())?;
    let record = crate::register::submit::submit(&client, plan, &settings.home)
        .await
        .map_err(|e| format!("{e:#}"))?;
    if let Err(why) = crate::register::submit::save_settings(plan, &settings.home) {
        tracing::warn!("{why}");
    }
    Ok(Box::new(record))
}

/// `update subnet`: git on a blocking thread, its lines sent as they come, then a restart of
/// compute_subnet if it runs.
async fn update_subnet(
    settings: &Settings,
    tx: &UnboundedSender<JobResult>,
) -> Result<String, String> {
    let (Some(repo), Some(dir)) = (settings.compute.repo.clone(), settings.compute.dir.clone())
    else {
        return Err(
            "set POLARIS_COMPUTE_REPO (the git URL) and POLARIS_COMPUTE_DIR (where it lives) first"
                .to_owned(),
        );
    };
    let lines = tx.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        crate::agent::subnet_update::update(&repo, &dir, &mut |line: &str| {
            let _ = lines.send(JobResult::UpdateLine(line.to_owned()));
        })
    })
    .await
    .map_err(|e| format!("the update stopped: {e}"))?
    .map_err(|e| format!("{e:#}"))?;
    let summary = match outcome {
        crate::agent::subnet_update::UpdateOutcome::Cloned { repo, dir } => {
            format!("Cloned {repo} into {}.", dir.display())
        }
        crate::agent::subnet_update::UpdateOutcome::AlreadyUpToDate { commit } => {
            format!(
                "Already up to date ({}).",
                commit.get(..10).unwrap_or(&commit)
            )
        }
        crate::agent::subnet_update::UpdateOutcome::Updated { from, to } => format!(
            "Updated {} → {}.",
            from.get(..10).unwrap_or(&from),
            to.get(..10).unwrap_or(&to)
        ),
    };
    let _ = tx.send(JobResult::UpdateLine(summary));
    let running = matches!(
        lifecycle::snapshot(&settings.home).await,
        Ok(s) if s.compute.as_ref().and_then(|c| c.pid).is_some()
    );
    if running {
        let restarted = control_request(settings, Request::RestartCompute).await;
        let _ = tx.send(JobResult::UpdateLine(match restarted {
            Ok(_) => "compute_subnet restarted.".to_owned(),
            Err(why) => format!("compute_subnet was not restarted: {why}"),
        }));
    }
    Ok("Update completed successfully.".to_owned())
}

/// The disk benchmark on a blocking thread, its progress sent at most every 50 ms.
async fn measure_disk(
    settings: &Settings,
    tx: &UnboundedSender<JobResult>,
) -> Result<bench::DiskBench, String> {
    let home = settings.home.clone();
    let progress = tx.clone();
    tokio::task::spawn_blocking(move || {
        let plan = bench::Plan::for_home(&home)?;
        let mut current = None;
        let mut phase_started = Instant::now();
        let mut last_sent = Instant::now() - Duration::from_secs(1);
        let result = bench::run(&plan, |phase, bytes| {
            if current != Some(phase) {
                current = Some(phase);
                phase_started = Instant::now();
            }
            if last_sent.elapsed() >= Duration::from_millis(50) {
                last_sent = Instant::now();
                let fraction = plan.fraction(bytes, phase_started.elapsed());
                let _ = progress.send(JobResult::BenchProgress { phase, fraction });
            }
        })?;
        bench::save(&home, &result)?;
        Ok::<_, anyhow::Error>(result)
    })
    .await
    .map_err(|e| format!("the benchmark stopped: {e}"))?
    .map_err(|e| format!("{e:#}"))
}
