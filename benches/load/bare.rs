//! The ceiling: a bare actix-web server on the proxy's routes whose handlers only read the body,
//! parse it as the proxy does (the same borrowed `event` fields, so the JSON is fully checked)
//! and answer 200 with a body shaped like the proxy's. No key check, no queue, no Kinesis: what
//! the same HTTP stack can do on this machine, at the same worker count as the proxy.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::child::{announce_ready, exit_when_stdin_closes};
use crate::{Context, Error};

/// Same as the proxy's defaults (`server.keep_alive_ms`, `limits.max_body_bytes`).
const KEEP_ALIVE: Duration = Duration::from_millis(75_000);
const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// The fields the proxy reads from one event (see `src/http/ingest.rs`).
#[derive(Deserialize)]
#[allow(dead_code)] // Parsed to check them, as the proxy does; never read.
struct EventFields<'a> {
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    #[serde(borrow, default)]
    partition_key: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    explicit_hash_key: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    region: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RecordsEnvelope<'a> {
    #[serde(borrow)]
    records: Option<Vec<EventFields<'a>>>,
}

#[derive(Serialize)]
struct Accepted {
    shard_id: &'static str,
    sequence_number: String,
}

#[derive(Serialize)]
struct RecordsAnswer {
    failed_record_count: usize,
    records: Vec<Accepted>,
}

/// Runs the server until stdin closes. Prints `READY <port>`.
pub fn serve(workers: usize) -> Result<(), Error> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).context("binding")?;
    let port = listener.local_addr().context("local address")?.port();
    let sequence = web::Data::new(AtomicU64::new(0));
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(sequence.clone())
                .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
                .route("/kinesis/stream/{stream}/records", web::post().to(records))
                .route("/kinesis/stream/{stream}", web::post().to(single))
        })
        .workers(workers.max(1))
        .keep_alive(KEEP_ALIVE)
        .disable_signals()
        .listen(listener)
        .context("listening")?
        .run();
        announce_ready(port)?;
        exit_when_stdin_closes();
        server.await.context("serving")
    })
}

fn sequence_number(sequence: &AtomicU64) -> String {
    let n = sequence.fetch_add(1, Ordering::Relaxed);
    format!("4959033827149025660855969253836157{n:022}")
}

async fn single(body: web::Bytes, sequence: web::Data<AtomicU64>) -> HttpResponse {
    match serde_json::from_slice::<EventFields>(&body) {
        Ok(fields) if fields.event.is_some() => HttpResponse::Ok().json(Accepted {
            shard_id: "shardId-000000000000",
            sequence_number: sequence_number(&sequence),
        }),
        _ => HttpResponse::BadRequest()
            .json(serde_json::json!({"error": "bad body", "code": "invalid_body"})),
    }
}

async fn records(body: web::Bytes, sequence: web::Data<AtomicU64>) -> HttpResponse {
    match serde_json::from_slice::<RecordsEnvelope>(&body) {
        Ok(RecordsEnvelope {
            records: Some(entries),
        }) if entries.iter().all(|e| e.event.is_some()) => {
            let records = entries
                .iter()
                .map(|_| Accepted {
                    shard_id: "shardId-000000000000",
                    sequence_number: sequence_number(&sequence),
                })
                .collect();
            HttpResponse::Ok().json(RecordsAnswer {
                failed_record_count: 0,
                records,
            })
        }
        _ => HttpResponse::BadRequest()
            .json(serde_json::json!({"error": "bad body", "code": "invalid_body"})),
    }
}
