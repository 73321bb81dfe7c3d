//! `polaris view-compute`: this miner's pod and compute resources as the coordinator lists them
//! (the original's tables, original-polaris.md §7).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use comfy_table::{Table, presets};

use crate::api::client::CoordinatorClient;
use crate::api::{ComputeResource, Pod};
use crate::config::Settings;
use crate::register::record;

#[derive(Debug, Args)]
pub struct ViewComputeArgs {
    /// Miner id (default: the one in POLARIS_HOME/registration.json); another miner's needs
    /// POLARIS_ADMIN_TOKEN
    #[arg(long)]
    pub miner_id: Option<String>,
    /// Print the pod as JSON instead of tables
    #[arg(long)]
    pub json: bool,
}

pub(super) fn run(args: ViewComputeArgs, home: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(home, &[])?;
    if let Some(id) = &args.miner_id
        && let Err(why) = crate::api::identifier("--miner-id", id)
    {
        eprintln!("polaris: error: {why}");
        return Ok(ExitCode::from(2));
    }
    let saved = record::load(&settings.home)?;
    let (miner_id, token, base) = match (&args.miner_id, &saved, &settings.server.admin_token) {
        (None, None, _) => {
            eprintln!(
                "polaris: this machine is not registered yet: run `polaris register` (or pass --miner-id)"
            );
            return Ok(ExitCode::FAILURE);
        }
        (Some(id), Some(saved), _) if *id == saved.miner_id => (
            id.clone(),
            saved.token.expose().to_owned(),
            saved.server_url.clone(),
        ),
        (None, Some(saved), _) => (
            saved.miner_id.clone(),
            saved.token.expose().to_owned(),
            saved.server_url.clone(),
        ),
        (Some(id), _, Some(admin)) => (
            id.clone(),
            admin.expose().to_owned(),
            settings.server_url.to_string(),
        ),
        (Some(id), _, None) => {
            eprintln!(
                "polaris: miner {id} is not this machine's registration: set POLARIS_ADMIN_TOKEN to view it"
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let base =
        reqwest::Url::parse(&base).with_context(|| format!("bad coordinator URL {base:?}"))?;
    let client = CoordinatorClient::new(&base)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let pod = runtime
        .block_on(client.miner(&token, &miner_id))
        .context("cannot fetch the pod")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&pod)?);
    } else {
        print!("{}", render(&pod));
    }
    Ok(ExitCode::SUCCESS)
}

fn or_na(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "N/A".to_owned(), |v| v.to_string())
}

pub(crate) fn render(pod: &Pod) -> String {
    let mut details = Table::new();
    details.load_preset(presets::UTF8_FULL_CONDENSED);
    details.set_header(vec!["Field", "Value"]);
    details.add_rows([
        vec!["ID".to_owned(), pod.id.clone()],
        vec!["Name".to_owned(), pod.name.clone()],
        vec!["Location".to_owned(), or_na(pod.location.as_ref())],
        vec!["Description".to_owned(), or_na(pod.description.as_ref())],
        vec!["Status".to_owned(), pod.status.as_str().to_owned()],
        vec!["Heartbeat".to_owned(), or_na(pod.heartbeat_status.as_ref())],
        vec![
            "SSH".to_owned(),
            or_na(pod.network.as_ref().and_then(|n| n.ssh.as_ref())),
        ],
        vec!["Created At".to_owned(), pod.created_at.to_rfc3339()],
        vec!["Updated At".to_owned(), pod.updated_at.to_rfc3339()],
    ]);
    let mut out = format!("Pod Details\n{details}\n");
    if pod.compute_resources.is_empty() {
        out.push_str("No compute resources found for this pod.\n");
        return out;
    }
    let mut resources = Table::new();
    resources.load_preset(presets::UTF8_FULL_CONDENSED);
    resources.set_header(vec![
        "ID", "Type", "Location", "Price/Hr", "RAM", "Storage", "Specs",
    ]);
    resources.add_rows(
        pod.compute_resources
            .iter()
            .map(ComputeResource::table_cells),
    );
    out.push_str(&format!("Compute Resources\n{resources}\n"));
    out
}
