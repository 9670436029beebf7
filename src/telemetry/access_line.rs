//! The access log's line, formatted by hand and handed to the log writer thread directly.
//!
//! One line per request is the busiest log there is: through `tracing`'s formatters it cost
//! about a sixth of the HTTP workers' CPU at full load (a visitor per field, a serde map, the
//! timestamp through `Display`). This writes the same line, byte for byte, as the `json` and
//! the uncoloured `text` formats of `init_logging` would, into a reused buffer, and sends it to
//! the same non-blocking writer (so lines never interleave with the other log lines). Coloured
//! text, or no writer installed (a process whose logging was set up elsewhere), goes through
//! `tracing` as before: [`AccessLine::emit`] says which.

use std::cell::RefCell;
use std::io::Write as _;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// How lines are written, fixed when logging is set up.
pub enum LineFormat {
    Json,
    /// Uncoloured text (coloured text is left to `tracing`).
    Text,
}

struct Sink {
    writer: tracing_appender::non_blocking::NonBlocking,
    format: LineFormat,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Sends access lines to `writer` in `format` from now on (the first call wins).
pub fn install(writer: tracing_appender::non_blocking::NonBlocking, format: LineFormat) {
    let _ = SINK.set(Sink { writer, format });
}

/// One request as the access log shows it.
pub struct AccessLine<'a> {
    pub method: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub duration_ms: f64,
    pub request_id: &'a str,
    pub stream: Option<&'a str>,
    pub key: Option<&'a str>,
    pub client_cert: Option<&'a str>,
    pub events: Option<u64>,
}

thread_local! {
    /// A line is built here and copied once into the writer's queue.
    static BUFFER: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

impl AccessLine<'_> {
    /// Writes the line; `false` when no fast writer is installed and the caller should log it
    /// through `tracing` instead.
    pub fn emit(&self) -> bool {
        let Some(sink) = SINK.get() else {
            return false;
        };
        BUFFER.with(|buffer| {
            let Ok(mut line) = buffer.try_borrow_mut() else {
                return false;
            };
            line.clear();
            match sink.format {
                LineFormat::Json => self.json(&mut line, SystemTime::now()),
                LineFormat::Text => self.text(&mut line, SystemTime::now()),
            }
            line.push(b'\n');
            // As `tracing`'s writer: a failed write of a log line is not the request's problem.
            let _ = sink.writer.clone().write_all(&line);
            true
        })
    }

    fn json(&self, out: &mut Vec<u8>, now: SystemTime) {
        out.extend_from_slice(b"{\"timestamp\":\"");
        timestamp(out, now);
        out.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"access\",\"method\":");
        json_str(out, self.method);
        out.extend_from_slice(b",\"route\":");
        json_str(out, self.route);
        let _ = write!(out, ",\"status\":{},\"duration_ms\":", self.status);
        json_f64(out, self.duration_ms);
        out.extend_from_slice(b",\"request_id\":");
        json_str(out, self.request_id);
        for (name, value) in [
            ("stream", self.stream),
            ("key", self.key),
            ("client_cert", self.client_cert),
        ] {
            if let Some(value) = value {
                let _ = write!(out, ",\"{name}\":");
                json_str(out, value);
            }
        }
        if let Some(events) = self.events {
            let _ = write!(out, ",\"events\":{events}");
        }
        out.push(b'}');
    }

    fn text(&self, out: &mut Vec<u8>, now: SystemTime) {
        timestamp(out, now);
        // `tracing`'s text format: the level right-aligned in five columns, then the message,
        // then the fields as `Debug` writes them (the method is `Display`ed).
        let _ = write!(
            out,
            "  INFO access method={} route={:?} status={} duration_ms={:?} request_id={:?}",
            self.method, self.route, self.status, self.duration_ms, self.request_id
        );
        for (name, value) in [
            ("stream", self.stream),
            ("key", self.key),
            ("client_cert", self.client_cert),
        ] {
            if let Some(value) = value {
                let _ = write!(out, " {name}={value:?}");
            }
        }
        if let Some(events) = self.events {
            let _ = write!(out, " events={events}");
        }
    }
}

fn json_str(out: &mut Vec<u8>, value: &str) {
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"null");
    }
}

fn json_f64(out: &mut Vec<u8>, value: f64) {
    // NaN and infinities are `null` in JSON, as serde writes them.
    if serde_json::to_writer(&mut *out, &value).is_err() {
        out.extend_from_slice(b"null");
    }
}

/// RFC 3339 in UTC with microseconds (`2026-12-03T10:27:16.084612Z`), as `tracing`'s
/// `SystemTime` timer writes it.
fn timestamp(out: &mut Vec<u8>, now: SystemTime) {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let in_day = seconds % 86_400;
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60,
        since_epoch.subsec_micros()
    );
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn line() -> AccessLine<'static> {
        AccessLine {
            method: "POST",
            route: "/kinesis/stream/{stream}",
            status: 403,
            duration_ms: 0.031155999999999996,
            request_id: "b61581c8-000000000000",
            stream: None,
            key: Some("bench"),
            client_cert: None,
            events: Some(1),
        }
    }

    /// 2026-12-03T10:27:16.084612Z
    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(1_796_293_636_084_612)
    }

    #[test]
    fn json_is_what_tracing_writes() {
        let mut out = Vec::new();
        line().json(&mut out, at());
        let out = String::from_utf8(out).expect("UTF-8");
        // Captured from the binary with `log.format = "json"` before this module existed.
        assert_eq!(
            out,
            r#"{"timestamp":"2026-12-03T10:27:16.084612Z","level":"INFO","message":"access","method":"POST","route":"/kinesis/stream/{stream}","status":403,"duration_ms":0.031155999999999996,"request_id":"b61581c8-000000000000","key":"bench","events":1}"#
        );
    }

    #[test]
    fn text_is_what_tracing_writes() {
        let mut out = Vec::new();
        line().text(&mut out, at());
        let out = String::from_utf8(out).expect("UTF-8");
        assert_eq!(
            out,
            r#"2026-12-03T10:27:16.084612Z  INFO access method=POST route="/kinesis/stream/{stream}" status=403 duration_ms=0.031155999999999996 request_id="b61581c8-000000000000" key="bench" events=1"#
        );
    }

    #[test]
    fn strings_are_escaped() {
        let mut out = Vec::new();
        AccessLine {
            client_cert: Some("CN=\"a\\b\"\n"),
            ..line()
        }
        .json(&mut out, at());
        let parsed: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(parsed["client_cert"], "CN=\"a\\b\"\n");
    }

    #[test]
    fn dates_match_the_calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_790), (2026, 12, 3));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
