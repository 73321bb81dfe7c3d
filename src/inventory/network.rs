//! Addresses: the default route's internal IP, every interface, the public address as the
//! coordinator sees it, and whether the local SSH server answers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// How long the coordinator and the SSH server get to answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    pub mac: Option<String>,
    /// `address/prefix`, e.g. `192.168.1.20/24`.
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalNetwork {
    pub default_interface: Option<String>,
    /// The IPv4 address of the default route's interface.
    pub internal_ip: Option<IpAddr>,
    pub interfaces: Vec<Interface>,
}

/// What answered on the configured SSH port of this machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SshProbe {
    pub port: u16,
    /// Something accepts connections on the port.
    pub listening: bool,
    /// The address that accepted.
    pub address: Option<IpAddr>,
    /// The server's identification line, e.g. `SSH-2.0-OpenSSH_9.2p1 Debian-2`.
    pub banner: Option<String>,
}

impl SshProbe {
    /// Listening and speaking SSH.
    pub fn is_ssh(&self) -> bool {
        self.banner
            .as_deref()
            .is_some_and(|b| b.starts_with("SSH-"))
    }
}

pub fn read_local() -> LocalNetwork {
    let networks = sysinfo::Networks::new_with_refreshed_list().ok();
    let mut interfaces: Vec<Interface> = networks
        .iter()
        .flat_map(|n| n.iter())
        .filter(|(_, data)| !data.ip_networks().is_empty())
        .map(|(name, data)| {
            let mac = data.mac_address();
            let mut networks = data.ip_networks().to_vec();
            // IPv4 first, then IPv6, each in address order: the same every run.
            networks.sort_by_key(|n| (n.addr.is_ipv6(), n.addr, n.prefix));
            Interface {
                name: name.to_string_lossy().into_owned(),
                mac: (mac.0 != [0; 6]).then(|| mac.to_string()),
                addresses: networks
                    .iter()
                    .map(|n| format!("{}/{}", n.addr, n.prefix))
                    .collect(),
            }
        })
        .collect();
    interfaces.sort_by(|a, b| a.name.cmp(&b.name));
    let default_interface = default_route_interface();
    let internal_ip = default_interface
        .as_deref()
        .and_then(|name| interfaces.iter().find(|i| i.name == name))
        .and_then(|i| {
            i.addresses
                .iter()
                .filter_map(|a| a.split('/').next()?.parse::<IpAddr>().ok())
                .find(IpAddr::is_ipv4)
        });
    LocalNetwork {
        default_interface,
        internal_ip,
        interfaces,
    }
}

/// The interface of the IPv4 default route with the lowest metric, from /proc/net/route.
#[cfg(target_os = "linux")]
fn default_route_interface() -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    parse_default_route(&table)
}

/// Elsewhere, ask the routing table which source address it would use: connecting a UDP
/// socket only selects a route and sends nothing.
#[cfg(not(target_os = "linux"))]
fn default_route_interface() -> Option<String> {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
    let local = socket.local_addr().ok()?.ip();
    let networks = sysinfo::Networks::new_with_refreshed_list().ok()?;
    networks
        .iter()
        .find(|(_, data)| data.ip_networks().iter().any(|n| n.addr == local))
        .map(|(name, _)| name.to_string_lossy().into_owned())
}

#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_default_route(table: &str) -> Option<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (name, destination, mask) = (fields.first()?, fields.get(1)?, fields.get(7)?);
            let metric: u32 = fields.get(6)?.parse().ok()?;
            (*destination == "00000000" && *mask == "00000000").then_some((metric, *name))
        })
        .min()
        .map(|(_, name)| name.to_owned())
}

/// How long one SSH address gets to accept and to send its identification line.
const SSH_TIMEOUT: Duration = Duration::from_secs(1);

/// Connects to the SSH port on each address in turn (loopback first; an sshd may listen only
/// on `::1` or the LAN address) and reads the identification line of the first that accepts.
pub async fn probe_ssh(port: u16, addresses: &[IpAddr]) -> SshProbe {
    for &ip in addresses {
        let Ok(banner) = banner_at(SocketAddr::new(ip, port)).await else {
            continue;
        };
        return SshProbe {
            port,
            listening: true,
            address: Some(ip),
            banner,
        };
    }
    SshProbe {
        port,
        listening: false,
        address: None,
        banner: None,
    }
}

/// What one SSH address answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshAnswer {
    /// The address that accepted (the first of a name's addresses that did).
    pub address: SocketAddr,
    /// Its identification line, if it sent one in time.
    pub banner: Option<String>,
}

impl SshAnswer {
    /// Speaking SSH, not just accepting connections.
    pub fn is_ssh(&self) -> bool {
        self.banner
            .as_deref()
            .is_some_and(|b| b.starts_with("SSH-"))
    }
}

/// Connects to `address` (`host:port`, IPv6 in brackets; a name is resolved and each of its
/// addresses tried in turn) and reads the identification line. The error says why nothing
/// accepted: "connection refused", no answer in time, or a name that does not resolve.
pub async fn probe_ssh_at(address: &str) -> Result<SshAnswer, String> {
    let addresses: Vec<SocketAddr> =
        match tokio::time::timeout(SSH_TIMEOUT, tokio::net::lookup_host(address)).await {
            Ok(Ok(found)) => found.collect(),
            Ok(Err(err)) => return Err(format!("cannot resolve {address}: {err}")),
            Err(_) => {
                return Err(format!(
                    "cannot resolve {address} within {} s",
                    SSH_TIMEOUT.as_secs()
                ));
            }
        };
    let mut why = format!("{address} has no address");
    for socket in addresses {
        match banner_at(socket).await {
            Ok(banner) => {
                return Ok(SshAnswer {
                    address: socket,
                    banner,
                });
            }
            Err(err) => why = err,
        }
    }
    Err(why)
}

/// Connects and reads the first line the server sends (`SSH-2.0-…`), each step within
/// [`SSH_TIMEOUT`]; a server that accepts and says nothing gives `Ok(None)`.
async fn banner_at(address: SocketAddr) -> Result<Option<String>, String> {
    let mut stream = match tokio::time::timeout(SSH_TIMEOUT, TcpStream::connect(address)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => return Err(io_reason(&err)),
        Err(_) => {
            return Err(format!(
                "no answer within {} s (a firewall dropping packets?)",
                SSH_TIMEOUT.as_secs()
            ));
        }
    };
    let mut buffer = vec![0u8; 256];
    let mut filled = 0;
    let read_banner = async {
        while filled < buffer.len() && !buffer[..filled].contains(&b'\n') {
            match stream.read(&mut buffer[filled..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => filled += n,
            }
        }
    };
    let _ = tokio::time::timeout(SSH_TIMEOUT, read_banner).await;
    let text = String::from_utf8_lossy(&buffer[..filled]);
    Ok(text
        .lines()
        .next()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty()))
}

/// "connection refused" rather than "Connection refused (os error 111)": it reads inside a
/// sentence, and the number means nothing to the reader.
fn io_reason(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        std::io::ErrorKind::TimedOut => "the connection timed out".to_owned(),
        _ => err.to_string(),
    }
}

/// The addresses the SSH probe tries: loopback, then the LAN address.
pub fn ssh_probe_addresses(internal_ip: Option<IpAddr>) -> Vec<IpAddr> {
    let mut addresses = vec![
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
    ];
    addresses.extend(internal_ip);
    addresses
}

/// Whether the coordinator answers, and this machine's public address as it sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoordinatorProbe {
    /// It answered over HTTP without a server error.
    pub reachable: bool,
    pub public_ip: Option<IpAddr>,
    /// Why the address is unknown, when it is.
    pub error: Option<String>,
}

/// Asks the coordinator's `GET /healthz` (is it there?) and `GET /whoami` (what address does
/// it see?) at once. A coordinator without /whoami (an older one) is still reachable.
pub async fn probe_coordinator(
    client: &reqwest::Client,
    server_url: &reqwest::Url,
) -> CoordinatorProbe {
    let base = server_url.as_str().trim_end_matches('/');
    let (health, whoami) = tokio::join!(
        get(client, format!("{base}/healthz")),
        get(client, format!("{base}/whoami")),
    );
    let reachable = health
        .as_ref()
        .is_ok_and(|answer| answer.status().is_success());
    let address = match whoami {
        Ok(answer) if answer.status().is_success() => {
            let url = answer.url().to_string();
            match answer.json::<crate::api::Whoami>().await {
                Ok(whoami) => whoami
                    .ip
                    .parse()
                    .map_err(|_| format!("{url} sent {:?}, not an IP address", whoami.ip)),
                Err(err) => Err(format!("{url} sent an unexpected body: {err}")),
            }
        }
        Ok(answer) => Err(format!("{} answered {}", answer.url(), answer.status())),
        Err(why) => Err(why),
    };
    let error = match (&health, &address) {
        (Err(why), _) => Some(why.clone()),
        (Ok(answer), _) if !reachable => Some(format!(
            "{} answered {}: not a Polaris coordinator?",
            answer.url(),
            answer.status()
        )),
        (_, Err(why)) => Some(why.clone()),
        _ => None,
    };
    CoordinatorProbe {
        reachable,
        public_ip: address.ok(),
        error,
    }
}

async fn get(client: &reqwest::Client, url: String) -> Result<reqwest::Response, String> {
    client
        .get(&url)
        .timeout(PROBE_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("{url} unreachable: {}", root_cause(&e)))
}

/// The innermost error: "connection refused" says more than "error sending request".
pub(crate) fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_route_with_the_lowest_metric_wins() {
        let table = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n\
            wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
            eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
            eth0\t0000000A\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(parse_default_route(table).as_deref(), Some("eth0"));
        assert_eq!(parse_default_route("Iface\tDestination\n"), None);
    }

    #[tokio::test]
    async fn a_closed_port_is_not_listening() {
        // Bind and drop to find a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let probe = probe_ssh(port, &ssh_probe_addresses(None)).await;
        assert!(!probe.listening && !probe.is_ssh());
    }

    #[tokio::test]
    async fn a_banner_is_read_and_recognised() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(async move {
            if let Ok((mut socket, _)) = listener.accept().await {
                let _ = socket.write_all(b"SSH-2.0-OpenSSH_9.2p1\r\n").await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let probe = probe_ssh(port, &ssh_probe_addresses(None)).await;
        assert!(probe.listening);
        assert_eq!(probe.address, "127.0.0.1".parse().ok());
        assert_eq!(probe.banner.as_deref(), Some("SSH-2.0-OpenSSH_9.2p1"));
        assert!(probe.is_ssh());
    }

    #[tokio::test]
    async fn an_address_probe_says_why_nothing_answered() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let why = probe_ssh_at(&format!("127.0.0.1:{port}"))
            .await
            .expect_err("nothing listens");
        assert_eq!(why, "connection refused");
        let why = probe_ssh_at("no-such-host.invalid:22")
            .await
            .expect_err("no such name");
        assert!(
            why.starts_with("cannot resolve no-such-host.invalid:22"),
            "{why}"
        );
    }

    /// Serves `router` on a loopback port; returns the API base URL.
    async fn serve(router: axum::Router) -> reqwest::Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, router).await });
        reqwest::Url::parse(&format!("http://{address}/api/v1")).expect("url")
    }

    #[tokio::test]
    async fn the_coordinator_probe_tells_reachable_from_address_known() {
        use axum::routing::get;
        let client = reqwest::Client::new();
        let healthz = || get(|| async { "ok" });
        let whoami = |ip: &'static str| {
            get(move || async move { axum::Json(serde_json::json!({ "ip": ip })) })
        };

        let ours = serve(
            axum::Router::new()
                .route("/api/v1/healthz", healthz())
                .route("/api/v1/whoami", whoami("203.0.113.9")),
        )
        .await;
        let probe = probe_coordinator(&client, &ours).await;
        assert!(probe.reachable && probe.error.is_none(), "{probe:?}");
        assert_eq!(probe.public_ip, "203.0.113.9".parse().ok());

        // A coordinator without /whoami: reachable, address unknown.
        let older = serve(axum::Router::new().route("/api/v1/healthz", healthz())).await;
        let probe = probe_coordinator(&client, &older).await;
        assert!(probe.reachable && probe.public_ip.is_none());
        assert!(
            probe.error.as_deref().unwrap_or("").contains("404"),
            "{probe:?}"
        );

        // Any other HTTP server is not a coordinator, even if it answers.
        let stranger = serve(axum::Router::new().route("/", healthz())).await;
        let probe = probe_coordinator(&client, &stranger).await;
        assert!(!probe.reachable);
        assert!(
            probe
                .error
                .as_deref()
                .unwrap_or("")
                .contains("not a Polaris coordinator"),
            "{probe:?}"
        );

        let garbage = serve(
            axum::Router::new()
                .route("/api/v1/healthz", healthz())
                .route("/api/v1/whoami", whoami("not an address")),
        )
        .await;
        let probe = probe_coordinator(&client, &garbage).await;
        assert!(probe.reachable && probe.public_ip.is_none());
        assert!(
            probe
                .error
                .as_deref()
                .unwrap_or("")
                .contains("not an IP address"),
            "{probe:?}"
        );
    }
}
