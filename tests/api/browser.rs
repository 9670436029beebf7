//! A real browser (issue 22, part 3): headless Chromium loads a page served from another local
//! origin, which posts one event with `fetch` (CORS with a preflight, the public key in the
//! `x-api-key` header) and one with `navigator.sendBeacon` (the public key in the query, a
//! `text/plain` body, no preflight); both are read back from the stream. The same page served
//! from an origin that is not allowed gets nothing through.
//!
//! Chromium is Debian's `chromium`, installed by scripts/setup-browser.sh. Without it the test
//! skips with a message, unless `KINESIS_PROXY_REQUIRE_BROWSER` is set (scripts/test.sh sets
//! it), so CI never skips it silently.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::helpers::binary::{proxy_command, RunningProxy};
use crate::helpers::emulator::{create_stream, kinesalite, read_all, unique_stream_name};

const PUBLIC_KEY: &str = "pub-browser-key-0123456789";
/// How long Chromium may take for one page before the test gives up on it.
const BROWSER_LIMIT: Duration = Duration::from_secs(40);

/// The page: a beacon first (queued by the browser at once), then a fetch whose answer it
/// awaits; the outcome is written into the DOM, which `--dump-dom` prints.
fn page(proxy: &str, stream: &str, tag: &str) -> String {
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>beacon test</title></head>
<body><pre id="result">pending</pre>
<script>
(async () => {{
  const url = "{proxy}/kinesis/stream/{stream}";
  const out = {{}};
  try {{
    out.beacon = navigator.sendBeacon(url + "?api_key=" + encodeURIComponent("{PUBLIC_KEY}"),
      JSON.stringify({{event: {{id: "{tag}-beacon", via: "sendBeacon"}}}}));
  }} catch (e) {{ out.beacon = "error: " + e; }}
  try {{
    const answer = await fetch(url, {{
      method: "POST",
      headers: {{"content-type": "application/json", "x-api-key": "{PUBLIC_KEY}"}},
      body: JSON.stringify({{event: {{id: "{tag}-fetch", via: "fetch"}}}}),
    }});
    out.fetch = answer.status;
    out.fetch_body = await answer.json();
  }} catch (e) {{ out.fetch = "error: " + e; }}
  document.getElementById("result").textContent = JSON.stringify(out);
}})();
</script></body></html>"#
    )
}

/// Serves `html` to every request on `listener` (the page, and the favicon the browser asks
/// for), one connection at a time, until the test ends.
fn serve(listener: TcpListener, html: String) {
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buf = [0u8; 2048];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{html}",
                html.len()
            );
            let _ = socket.write_all(answer.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
}

/// `chromium`, or `None` when it is missing and the test may skip.
fn chromium() -> Option<&'static str> {
    let found = Command::new("chromium")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some("chromium");
    }
    assert!(
        std::env::var_os("KINESIS_PROXY_REQUIRE_BROWSER").is_none(),
        "chromium is not installed but KINESIS_PROXY_REQUIRE_BROWSER is set: run scripts/setup-browser.sh"
    );
    eprintln!(
        "SKIPPED browser test: chromium is not installed (scripts/setup-browser.sh installs it; scripts/test.sh requires it)"
    );
    None
}

/// Loads `url` in headless Chromium and returns the page's result object. The virtual time
/// budget makes Chromium wait for the page's network requests before it dumps the DOM.
async fn load(browser: &'static str, url: String) -> Value {
    tokio::task::spawn_blocking(move || {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = Command::new(browser)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--virtual-time-budget=15000",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(&url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium starts");
        let mut stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut dom = String::new();
            let _ = std::io::Read::read_to_string(&mut stdout, &mut dom);
            dom
        });
        let started = Instant::now();
        loop {
            if child.try_wait().expect("try_wait").is_some() {
                break;
            }
            if started.elapsed() > BROWSER_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish {url} within {BROWSER_LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let dom = reader.join().expect("reader");
        let text = dom
            .split_once("<pre id=\"result\">")
            .and_then(|(_, rest)| rest.split_once("</pre>"))
            .map(|(inner, _)| inner)
            .unwrap_or_else(|| panic!("no result in the page's DOM: {dom}"))
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&amp;", "&");
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("page result {text:?}"))
    })
    .await
    .expect("browser thread")
}

async fn ids_in(emulator: &str, stream: &str) -> BTreeSet<String> {
    read_all(emulator, stream)
        .await
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.data).ok())
        .filter_map(|v| v["id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_posts_with_fetch_and_send_beacon_and_a_foreign_page_gets_nothing_through() {
    let Some(browser) = chromium() else {
        return;
    };
    let emulator = kinesalite().await.endpoint.clone();
    let stream = unique_stream_name("it-browser-");
    create_stream(&emulator, &stream, 1).await;
    // Two page servers on ports of their own: two origins other than the proxy's.
    let allowed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let foreign = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let allowed_origin = format!(
        "http://127.0.0.1:{}",
        allowed.local_addr().expect("addr").port()
    );
    let foreign_origin = format!(
        "http://127.0.0.1:{}",
        foreign.local_addr().expect("addr").port()
    );
    let mut command = proxy_command(&emulator);
    command
        .env("KINESIS_PROXY__CORS__ALLOWED_ORIGINS", &allowed_origin)
        .env(
            "KINESIS_PROXY__AUTH__PUBLIC_KEYS",
            format!("site:{PUBLIC_KEY}:{stream}"),
        );
    let proxy = RunningProxy::spawn(command);
    let proxy_url = proxy.url("");
    serve(allowed, page(&proxy_url, &stream, "allowed"));
    serve(foreign, page(&proxy_url, &stream, "foreign"));

    let result = load(browser, format!("{allowed_origin}/")).await;
    assert_eq!(result["beacon"], true, "{result}");
    assert_eq!(result["fetch"], 200, "{result}");
    assert!(
        result["fetch_body"]["sequence_number"].is_string(),
        "{result}"
    );

    let foreign_result = load(browser, format!("{foreign_origin}/")).await;
    // The preflight is refused, so fetch fails; the beacon is queued by the browser and
    // refused by the proxy, which the page cannot see.
    assert!(
        foreign_result["fetch"]
            .as_str()
            .is_some_and(|s| s.starts_with("error")),
        "{foreign_result}"
    );

    // The browser sends a beacon on its own schedule, even after the page is done: poll.
    let wanted: BTreeSet<String> = ["allowed-beacon", "allowed-fetch"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let started = Instant::now();
    let mut ids = ids_in(&emulator, &stream).await;
    while ids != wanted && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        ids = ids_in(&emulator, &stream).await;
    }
    assert_eq!(
        ids, wanted,
        "both events of the allowed page, none of the foreign one"
    );

    // The foreign page's requests did reach the proxy, and were refused there.
    let mut refused = Vec::new();
    for _ in 0..50 {
        refused = proxy
            .json_lines()
            .into_iter()
            .filter(|l| l["message"] == "access" && l["status"] == 403)
            .map(|l| l["method"].as_str().unwrap_or("").to_owned())
            .collect();
        if refused.iter().any(|m| m == "POST") && refused.iter().any(|m| m == "OPTIONS") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        refused.iter().any(|m| m == "POST") && refused.iter().any(|m| m == "OPTIONS"),
        "the foreign beacon (POST) and preflight (OPTIONS) are refused with 403: {refused:?}"
    );
}
