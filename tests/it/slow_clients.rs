//! Slow clients against the real `polaris server` (issue 11, finding 1): connections that dribble
//! their request headers are cut off at the header-read timeout, `/healthz` stays fast for
//! everybody else meanwhile, a kept-alive connection outlives that timeout, and `/metrics` counts
//! it all. The idle keep-alive timeout (60 s), the connection cap and stalled writes are tested
//! with short limits by the unit tests in `src/server/serve.rs`.
#![cfg(unix)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{self, TestResult};

/// The server's header-read timeout (`HEADER_TIMEOUT` in `src/server/serve.rs`).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections that dribble their headers, all at once.
const SLOW: usize = 200;
/// How much later than the timeout a slow connection may be closed on a busy 2-core machine.
const SLACK: Duration = Duration::from_secs(5);

/// Sends a request line and one header, then another header line every 3 s, never the blank line
/// that ends the head. Returns how long after connecting the server closed the connection, or
/// None when it was still open at the timeout plus [`SLACK`].
async fn dribble(mut stream: TcpStream, connected: Instant) -> Option<Duration> {
    if stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: polaris\r\n")
        .await
        .is_err()
    {
        return Some(connected.elapsed());
    }
    let give_up = connected + HEADER_TIMEOUT + SLACK;
    let mut buf = [0u8; 1024];
    let mut line = 0u32;
    loop {
        let next_line = tokio::time::sleep(Duration::from_secs(3));
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Some(connected.elapsed()),
                // Whatever the server says first (e.g. a 408), the close is what counts.
                Ok(_) => {}
            },
            () = next_line => {
                line += 1;
                let header = format!("X-Dribble-{line}: still typing\r\n");
                if stream.write_all(header.as_bytes()).await.is_err() {
                    return Some(connected.elapsed());
                }
            }
            () = tokio::time::sleep_until(give_up.into()) => return None,
        }
    }
}

/// One GET on a kept-alive connection; its status code.
async fn exchange(stream: &mut TcpStream, path: &str) -> Result<u16, Box<dyn std::error::Error>> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: polaris\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let (head_end, length) = loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await??;
        if n == 0 {
            return Err("the server closed the kept-alive connection".into());
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..at]).to_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or("no content-length")?;
            break (at + 4, length);
        }
    };
    while data.len() < head_end + length {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await??;
        if n == 0 {
            return Err("the server closed the connection mid-answer".into());
        }
        data.extend_from_slice(&buf[..n]);
    }
    let status = String::from_utf8_lossy(&data[..head_end])
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status code")?;
    Ok(status)
}

/// The value of the `/metrics` line that starts with `name` (labels included), if any.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn dribbled_headers_are_cut_off_and_healthz_stays_fast() -> TestResult {
    let (_home, server) = common::coordinator()?;
    let address = server.base.trim_start_matches("http://").to_owned();

    // A connection that finished a request and stays open: it must outlive the header timeout
    // (agents beat every 10 s on one kept-alive connection).
    let mut kept = TcpStream::connect(&address).await?;
    assert_eq!(exchange(&mut kept, "/healthz").await?, 200);
    let kept_since = Instant::now();

    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..SLOW {
        let stream = TcpStream::connect(&address).await?;
        slow.spawn(dribble(stream, Instant::now()));
    }

    // Meanwhile a new client asks /healthz twice a second, each time on a new connection; and
    // once, /metrics, while the slow connections are all open.
    let done = Arc::new(AtomicBool::new(false));
    let prober = {
        let done = Arc::clone(&done);
        let base = server.base.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(20))
                .build()?;
            let mut slowest = Duration::ZERO;
            let mut asked = 0u32;
            let mut open_while_slow = None;
            while !done.load(Ordering::Relaxed) {
                let started = Instant::now();
                let status = http.get(format!("{base}/healthz")).send().await?.status();
                slowest = slowest.max(started.elapsed());
                assert_eq!(status, 200);
                asked += 1;
                if asked == 6 {
                    let text = http
                        .get(format!("{base}/metrics"))
                        .send()
                        .await?
                        .text()
                        .await?;
                    open_while_slow = metric(&text, "polaris_http_connections");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((slowest, asked, open_while_slow))
        })
    };

    let mut closed = Vec::new();
    let mut still_open = 0;
    while let Some(result) = slow.join_next().await {
        match result? {
            Some(after) => closed.push(after),
            None => still_open += 1,
        }
    }
    done.store(true, Ordering::Relaxed);
    let (slowest, asked, open_while_slow) = prober.await?.map_err(|e| e.to_string())?;

    assert_eq!(
        still_open,
        0,
        "{still_open} of {SLOW} connections dribbling their headers were still open {:?} after \
         connecting",
        HEADER_TIMEOUT + SLACK
    );
    let (first, last) = (closed.iter().min(), closed.iter().max());
    eprintln!(
        "slow connections closed {first:?} to {last:?} after connecting; /healthz asked {asked} \
         times meanwhile, slowest {slowest:?}"
    );
    assert!(
        closed
            .iter()
            .all(|&after| after >= HEADER_TIMEOUT - Duration::from_millis(100)),
        "a slow connection was closed before the header timeout: {first:?}"
    );
    assert!(asked >= 10, "/healthz asked only {asked} times");
    assert!(
        slowest < Duration::from_secs(2),
        "/healthz took {slowest:?} while {SLOW} connections dribbled their headers"
    );

    // The kept-alive connection, idle longer than the header timeout, still serves.
    assert!(kept_since.elapsed() > HEADER_TIMEOUT);
    assert_eq!(exchange(&mut kept, "/healthz").await?, 200);

    // An operator sees it: the connections open, and those closed for being slow.
    let open_while_slow = open_while_slow.ok_or("no polaris_http_connections in /metrics")?;
    assert!(
        open_while_slow >= SLOW as f64,
        "polaris_http_connections was {open_while_slow} with {SLOW} slow connections open"
    );
    let http = reqwest::Client::new();
    let text = common::metrics(&http, &server).await?;
    let cut = metric(
        &text,
        "polaris_http_connections_timed_out_total{reason=\"header\"}",
    )
    .ok_or("no polaris_http_connections_timed_out_total{reason=\"header\"} in /metrics")?;
    assert!(
        cut >= SLOW as f64,
        "{cut} header timeouts counted for {SLOW}"
    );
    let open = metric(&text, "polaris_http_connections").ok_or("no polaris_http_connections")?;
    assert!(
        open < 10.0,
        "polaris_http_connections is {open} after the slow connections were closed"
    );
    assert!(server.stop()?, "unclean exit");
    Ok(())
}
