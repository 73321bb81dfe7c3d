//! The names of every setting: the environment form (also used in `.env`) and the `polaris.toml`
//! form (the same words in lower case, grouped in tables). DESIGN.md §4 is the source of truth.

/// One setting's two names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub env: &'static str,
    pub toml: &'static str,
}

const fn key(env: &'static str, toml: &'static str) -> Key {
    Key { env, toml }
}

/// Settings whose values are never shown, not even a malformed one in an error.
pub const SECRETS: &[Key] = &[SSH_PASSWORD, ADMIN_TOKEN];

impl Key {
    pub fn is_secret(&self) -> bool {
        SECRETS.contains(self)
    }

    /// The value as an error may show it: a secret's only by its length.
    pub fn shown(&self, value: &str) -> String {
        if self.is_secret() {
            format!("<hidden, {} characters>", value.chars().count())
        } else {
            format!("{value:?}")
        }
    }
}

pub const SERVER_URL: Key = key("SERVER_URL", "agent.server_url");
pub const HEARTBEAT_INTERVAL: Key = key("POLARIS_HEARTBEAT_INTERVAL", "agent.heartbeat_interval");
pub const LOCATION: Key = key("POLARIS_LOCATION", "agent.location");
pub const NVML_LIBRARY: Key = key("POLARIS_NVML_LIBRARY", "agent.nvml_library");
pub const DASHBOARD_LOG_LINES: Key = key("POLARIS_DASHBOARD_LOG_LINES", "dashboard.log_lines");
pub const SSH_PASSWORD: Key = key("SSH_PASSWORD", "ssh.password");
pub const SSH_USER: Key = key("SSH_USER", "ssh.user");
pub const SSH_HOST: Key = key("SSH_HOST", "ssh.host");
pub const SSH_PORT: Key = key("SSH_PORT", "ssh.port");
pub const SSH_ACCESS: Key = key("POLARIS_SSH_ACCESS", "ssh.access");
pub const COMPUTE_CMD: Key = key("POLARIS_COMPUTE_CMD", "compute.cmd");
pub const COMPUTE_DIR: Key = key("POLARIS_COMPUTE_DIR", "compute.dir");
pub const COMPUTE_REPO: Key = key("POLARIS_COMPUTE_REPO", "compute.repo");
pub const RELAY: Key = key("POLARIS_RELAY", "relay.url");
pub const RELAY_REMOTE_PORT: Key = key("POLARIS_RELAY_REMOTE_PORT", "relay.remote_port");
pub const TUNNEL_TARGET: Key = key("POLARIS_TUNNEL_TARGET", "relay.tunnel_target");
pub const RELAY_HOST_KEY: Key = key("POLARIS_RELAY_HOST_KEY", "relay.host_key");
pub const LISTEN: Key = key("POLARIS_LISTEN", "server.listen");
pub const STORE: Key = key("POLARIS_STORE", "server.store");
pub const OFFLINE_AFTER: Key = key("POLARIS_OFFLINE_AFTER", "server.offline_after");
pub const ALERT_WEBHOOK: Key = key("POLARIS_ALERT_WEBHOOK", "server.alert_webhook");
pub const ADMIN_TOKEN: Key = key("POLARIS_ADMIN_TOKEN", "server.admin_token");
pub const FIRESTORE_PROJECT: Key = key("POLARIS_FIRESTORE_PROJECT", "server.firestore_project");
pub const RELAY_LISTEN: Key = key("POLARIS_RELAY_LISTEN", "server.relay_listen");
pub const RELAY_PORTS: Key = key("POLARIS_RELAY_PORTS", "server.relay_ports");
pub const LEGACY_CLIENTS: Key = key("POLARIS_LEGACY_CLIENTS", "server.legacy_clients");
pub const COMMAND_EXPIRY: Key = key("POLARIS_COMMAND_EXPIRY", "server.command_expiry");
pub const FIRESTORE_DATABASE: Key = key("POLARIS_FIRESTORE_DATABASE", "server.firestore_database");
pub const STATE_EVERY: Key = key("POLARIS_STATE_EVERY", "server.state_every");
pub const METRICS_EVERY: Key = key("POLARIS_METRICS_EVERY", "server.metrics_every");
pub const REPLICA: Key = key("POLARIS_REPLICA", "server.replica");

/// Every key, for validating `polaris.toml`.
pub const KEYS: &[Key] = &[
    SERVER_URL,
    HEARTBEAT_INTERVAL,
    LOCATION,
    NVML_LIBRARY,
    DASHBOARD_LOG_LINES,
    SSH_PASSWORD,
    SSH_USER,
    SSH_HOST,
    SSH_PORT,
    SSH_ACCESS,
    COMPUTE_CMD,
    COMPUTE_DIR,
    COMPUTE_REPO,
    RELAY,
    RELAY_REMOTE_PORT,
    TUNNEL_TARGET,
    RELAY_HOST_KEY,
    LISTEN,
    STORE,
    OFFLINE_AFTER,
    ALERT_WEBHOOK,
    ADMIN_TOKEN,
    FIRESTORE_PROJECT,
    RELAY_LISTEN,
    RELAY_PORTS,
    LEGACY_CLIENTS,
    COMMAND_EXPIRY,
    FIRESTORE_DATABASE,
    STATE_EVERY,
    METRICS_EVERY,
    REPLICA,
];
