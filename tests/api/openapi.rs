//! `GET /openapi.json` of the real binary: valid OpenAPI 3.1 by an independent validator
//! (openapi-spec-validator, installed by scripts/setup-openapi-validator.sh), and true to the
//! server: every documented operation exists, every method the document leaves out is refused
//! (405, or 404 for a path the server lacks), and every route of the server is documented.
//! Also `HEAD` on the operator's routes.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::helpers::app::API_KEY;
use crate::helpers::binary::{proxy_command, RunningProxy};
use crate::helpers::emulator::kinesalite;

const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

fn validator() -> std::path::PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts/openapi/.venv/bin/openapi-spec-validator");
    assert!(
        path.is_file(),
        "the OpenAPI validator is not installed in scripts/openapi/.venv: run scripts/setup-openapi-validator.sh (needs python3)"
    );
    path
}

/// Runs openapi-spec-validator on `text`, asserting it accepts it.
fn validate(text: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, text).expect("write");
    let checked = Command::new(validator())
        .arg(&file)
        .output()
        .expect("validator runs");
    assert!(
        checked.status.success(),
        "openapi-spec-validator refused the document:\n{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

/// With CORS on (publishable keys possible), the `api_key` query parameter is a second way to
/// authenticate, and a secret key there is a documented 400.
#[tokio::test]
async fn with_cors_on_the_query_key_is_documented_and_the_document_stays_valid() {
    let emulator = kinesalite().await.endpoint.clone();
    let mut command = proxy_command(&emulator);
    command
        .env(
            "KINESIS_PROXY__CORS__ALLOWED_ORIGINS",
            "https://shop.example.com",
        )
        .env(
            "KINESIS_PROXY__AUTH__PUBLIC_KEYS",
            "site:pub-openapi-key-0123456789:it-*",
        );
    let proxy = RunningProxy::spawn(command);
    let text = reqwest::get(proxy.url("/openapi.json"))
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    validate(&text);
    let doc: Value = serde_json::from_str(&text).expect("JSON");
    let scheme = &doc["components"]["securitySchemes"]["api_key_query"];
    assert_eq!(
        (&scheme["in"], &scheme["name"]),
        (&json!("query"), &json!("api_key"))
    );
    let post = &doc["paths"]["/kinesis/stream/{stream}"]["post"];
    assert_eq!(post["security"][1]["api_key_query"], json!([]));
    let bad_request = post["responses"]["400"]["content"]["application/json"]["schema"].to_string();
    assert!(bad_request.contains("api_key_in_url"), "{bad_request}");
}

#[tokio::test]
async fn the_document_is_valid_openapi_3_1_and_matches_the_servers_routes() {
    let emulator = kinesalite().await.endpoint.clone();
    let proxy = RunningProxy::spawn(proxy_command(&emulator));
    let http = reqwest::Client::new();
    let response = http
        .get(proxy.url("/openapi.json"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let text = response.text().await.expect("body");
    let doc: Value = serde_json::from_str(&text).expect("JSON");
    assert!(doc["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.1.")));

    validate(&text);

    let paths = doc["paths"].as_object().expect("paths");
    let mut documented: Vec<&str> = paths.keys().map(String::as_str).collect();
    documented.sort_unstable();
    let mut served: Vec<&str> = kinesis_proxy::http::paths::ALL_ROUTES.to_vec();
    served.sort_unstable();
    assert_eq!(
        documented, served,
        "documented paths vs the server's route table"
    );

    // The content types the write routes read: browsers' beacons send text/plain.
    for path in [
        "/kinesis/stream/{stream}",
        "/kinesis/{stream}",
        "/kinesis/stream/{stream}/records",
    ] {
        let content = &paths[path]["post"]["requestBody"]["content"];
        for content_type in ["application/json", "text/plain"] {
            assert!(
                content[content_type].is_object(),
                "{path} does not document {content_type}: {content}"
            );
        }
    }

    let mut mismatches = Vec::new();
    for (path, item) in paths {
        let url = proxy.url(&path.replace("{stream}", "it-openapi-probe"));
        for method in METHODS {
            let in_doc = item.get(method.to_ascii_lowercase()).is_some();
            let response = http
                .request(method.parse().expect("method"), &url)
                .header("x-api-key", API_KEY)
                .send()
                .await
                .expect("answered");
            let status = response.status().as_u16();
            let code = response
                .json::<Value>()
                .await
                .ok()
                .and_then(|b| b["code"].as_str().map(str::to_owned));
            let refused = status == 405 || code.as_deref() == Some("not_found");
            if in_doc == refused {
                mismatches.push(format!(
                    "{method} {path}: documented {in_doc}, answered {status} {code:?}"
                ));
            }
            if in_doc {
                let documented_statuses = &item[method.to_ascii_lowercase()]["responses"];
                if documented_statuses[status.to_string()].is_null() {
                    mismatches.push(format!(
                        "{method} {path}: answered {status}, which is not documented"
                    ));
                }
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[tokio::test]
async fn head_answers_like_get_without_a_body() {
    let emulator = kinesalite().await.endpoint.clone();
    let proxy = RunningProxy::spawn(proxy_command(&emulator));
    let http = reqwest::Client::new();
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let get = http.get(proxy.url(path)).send().await.expect("GET");
        let head = http.head(proxy.url(path)).send().await.expect("HEAD");
        assert_eq!(head.status(), get.status(), "{path}");
        assert_eq!(
            head.headers()["content-type"],
            get.headers()["content-type"],
            "{path}"
        );
        assert!(head.bytes().await.expect("body").is_empty(), "{path}");
    }
    let page = http
        .get(proxy.url("/metrics"))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("text");
    assert!(
        page.contains("kinesis_proxy_http_requests_total{route=\"/metrics\",status=\"200\"}"),
        "HEAD requests are counted under their route"
    );
}
