//! Request bodies to records: parses the three body shapes (single event, `{"records": [...]}`
//! and NDJSON) and validates every field into the domain types, so a request is either wholly
//! valid or refused with a message that says what is wrong and where.
//!
//! Events are not re-encoded through a generic JSON value: the event's own bytes are kept
//! (borrowed, zero-copy when already compact) and only insignificant whitespace is removed. So
//! numbers keep their exact digits and keys their order: what a consumer parses back is
//! exactly what the client sent.
//!
//! Validation is all-or-nothing per request: one bad record refuses the whole request with 400
//! and its index (or NDJSON line), and nothing is queued. A validation failure is deterministic,
//! so accepting the rest would only force clients to reconcile partial writes of a request
//! they must fix anyway. Per-record errors in 200 responses are kept for Kinesis' verdicts.
//! Unknown fields are ignored, as the original API did, so newer clients keep working.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::ApiError;
use crate::domain::{truncate_for_message, ExplicitHashKey, PartitionKey, Record};

/// The fields of one event, as sent.
#[derive(Default)]
struct EventFields<'a> {
    event: Option<&'a RawValue>,
    partition_key: Option<Cow<'a, str>>,
    explicit_hash_key: Option<Cow<'a, str>>,
    region: Option<Cow<'a, str>>,
}

/// Written by hand because serde's derive would also read the struct from a JSON array by
/// position (`[{"a": 1}, "key"]` as event and partition key); the API takes objects only.
impl<'de: 'a, 'a> Deserialize<'de> for EventFields<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> serde::de::Visitor<'de> for FieldsVisitor<'a> {
            type Value = EventFields<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an event object such as {\"event\": ...}")
            }

            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                let mut fields = EventFields::default();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match key.as_ref() {
                        "event" => fields.event = map.next_value()?,
                        "partition_key" => fields.partition_key = map.next_value()?,
                        "explicit_hash_key" => fields.explicit_hash_key = map.next_value()?,
                        "region" => fields.region = map.next_value()?,
                        // Unknown fields are ignored, as the original API did, and counted
                        // (a misspelt `partitionKey` would otherwise go unnoticed).
                        other => {
                            super::metrics::unknown_field(other);
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(fields)
            }
        }

        deserializer.deserialize_map(FieldsVisitor(std::marker::PhantomData))
    }
}

/// `{"records": [...], "region"?}`.
#[derive(Default)]
struct RecordsEnvelope<'a> {
    records: Option<Vec<EventFields<'a>>>,
    region: Option<Cow<'a, str>>,
}

/// Written by hand, as `EventFields`, to count unknown top-level fields (`"Region"` would
/// otherwise silently mean the default region) without serde's `flatten`, which buffers the
/// whole body.
impl<'de: 'a, 'a> Deserialize<'de> for RecordsEnvelope<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EnvelopeVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> serde::de::Visitor<'de> for EnvelopeVisitor<'a> {
            type Value = RecordsEnvelope<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object such as {\"records\": [...]}")
            }

            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                use serde::de::Error;
                let mut envelope = RecordsEnvelope::default();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match key.as_ref() {
                        "records" if envelope.records.is_some() => {
                            return Err(M::Error::duplicate_field("records"))
                        }
                        "records" => envelope.records = map.next_value()?,
                        "region" if envelope.region.is_some() => {
                            return Err(M::Error::duplicate_field("region"))
                        }
                        "region" => envelope.region = map.next_value()?,
                        other => {
                            super::metrics::unknown_field(other);
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(envelope)
            }
        }

        deserializer.deserialize_map(EnvelopeVisitor(std::marker::PhantomData))
    }
}

/// Records of a request and the region it named, if any.
#[derive(Debug)]
pub struct ParsedRequest {
    pub records: Vec<Record>,
    pub region: Option<String>,
}

/// `{"event": ..., "partition_key"?, "explicit_hash_key"?, "region"?}`
pub fn parse_single(body: &Bytes) -> Result<ParsedRequest, ApiError> {
    expect_object(body)?;
    let fields: EventFields = serde_json::from_slice(body).map_err(json_error)?;
    let region = fields.region.as_deref().map(str::to_owned);
    let record = to_record(body, fields, &|| String::new())?;
    Ok(ParsedRequest {
        records: vec![record],
        region,
    })
}

/// `{"records": [{"event", "partition_key"?, "explicit_hash_key"?}, ...], "region"?}`
pub fn parse_records_json(body: &Bytes, max_records: usize) -> Result<ParsedRequest, ApiError> {
    expect_object(body)?;
    let envelope: RecordsEnvelope = serde_json::from_slice(body).map_err(json_error)?;
    let entries = envelope.records.ok_or_else(|| {
        ApiError::InvalidBody(
            "missing field `records`: expected {\"records\": [{\"event\": ...}, ...]}".into(),
        )
    })?;
    check_count(entries.len(), max_records)?;
    let mut records = Vec::with_capacity(entries.len());
    for (index, fields) in entries.into_iter().enumerate() {
        if fields.region.is_some() {
            return Err(ApiError::InvalidBody(format!(
                "records[{index}].region: set region once, at the top level of the body"
            )));
        }
        records.push(to_record(body, fields, &|| format!("records[{index}]."))?);
    }
    Ok(ParsedRequest {
        records,
        region: envelope.region.as_deref().map(str::to_owned),
    })
}

/// One single-event object per line; blank lines are skipped. A line may name a region, but all
/// lines must agree with each other (a request goes to one region).
pub fn parse_ndjson(body: &Bytes, max_records: usize) -> Result<ParsedRequest, ApiError> {
    let mut records = Vec::new();
    let mut region: Option<String> = None;
    for (line_index, line) in body.split(|b| *b == b'\n').enumerate() {
        let line_number = line_index + 1;
        let line = trim_ascii_whitespace(line);
        if line.is_empty() {
            continue;
        }
        if records.len() == max_records {
            return Err(too_many(max_records));
        }
        expect_object(line).map_err(|e| prefix(e, &format!("line {line_number}: ")))?;
        let fields: EventFields = serde_json::from_slice(line)
            .map_err(|e| prefix(json_error(e), &format!("line {line_number}: ")))?;
        if let Some(line_region) = fields.region.as_deref() {
            match &region {
                Some(existing) if existing != line_region => {
                    return Err(ApiError::InvalidBody(format!(
                        "line {line_number}: region {:?} differs from an earlier line's {:?}; one request goes to one region",
                        truncate_for_message(line_region),
                        truncate_for_message(existing)
                    )));
                }
                _ => region = Some(line_region.to_owned()),
            }
        }
        let line_bytes = body.slice_ref(line);
        records.push(to_record(&line_bytes, fields, &|| {
            format!("line {line_number}: ")
        })?);
    }
    if records.is_empty() {
        return Err(ApiError::NoRecords(
            "the NDJSON body holds no events: send one {\"event\": ...} object per line".into(),
        ));
    }
    Ok(ParsedRequest { records, region })
}

/// serde would read a struct from a JSON array too (`[{"event": 1}]` as a one-field tuple);
/// the API takes objects only, so an array is refused before serde sees it.
fn expect_object(body: &[u8]) -> Result<(), ApiError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Err(ApiError::EmptyBody),
        Some(b'[') => Err(ApiError::InvalidBody(
            "expected a JSON object such as {\"event\": ...}, found an array".into(),
        )),
        Some(_) => Ok(()),
    }
}

fn check_count(count: usize, max_records: usize) -> Result<(), ApiError> {
    if count == 0 {
        return Err(ApiError::NoRecords(
            "`records` is empty: send at least one {\"event\": ...}".into(),
        ));
    }
    if count > max_records {
        return Err(too_many(max_records));
    }
    Ok(())
}

fn too_many(max_records: usize) -> ApiError {
    ApiError::TooManyRecords(format!(
        "a request may carry at most {max_records} records (limits.max_records_per_request); split it"
    ))
}

/// Validates one event's fields into a record. `source` is the buffer the fields borrow from.
fn to_record(
    source: &Bytes,
    fields: EventFields,
    location: &dyn Fn() -> String,
) -> Result<Record, ApiError> {
    let Some(event) = fields.event else {
        return Err(ApiError::MissingEvent(format!(
            "{}`event` is missing or null: send {{\"event\": <any JSON value>}}",
            location()
        )));
    };
    let partition_key = match fields.partition_key {
        Some(key) => PartitionKey::parse(key.into_owned())
            .map_err(|e| ApiError::InvalidPartitionKey(format!("{}{e}", location())))?,
        None => PartitionKey::random(),
    };
    let explicit_hash_key = match fields.explicit_hash_key.as_deref() {
        Some(raw) => Some(
            ExplicitHashKey::parse(raw)
                .map_err(|e| ApiError::InvalidExplicitHashKey(format!("{}{e}", location())))?,
        ),
        None => None,
    };
    let data = compact_json(source, event.get()).map_err(|e| match e {
        ApiError::NestingTooDeep(m) => ApiError::NestingTooDeep(format!("{}{m}", location())),
        other => other,
    })?;
    check_parses_back(&data).map_err(|e| {
        ApiError::InvalidJson(format!(
            "{}the event is not JSON a consumer could parse back: {e}",
            location()
        ))
    })?;
    Ok(Record {
        data,
        partition_key,
        explicit_hash_key,
    })
}

/// Deepest nesting of arrays and objects accepted in an event. Consumers must parse events
/// back: serde_json parses at most 127 levels by default, and recursive parsers elsewhere can crash
/// on deeper input, so such an event is refused here rather than written to the stream.
pub const MAX_NESTING_DEPTH: usize = 127;

/// The event's JSON without insignificant whitespace. `raw` borrows from `source`; when it is
/// already compact the result shares `source`'s buffer instead of copying.
pub fn compact_json(source: &Bytes, raw: &str) -> Result<Bytes, ApiError> {
    let bytes = raw.as_bytes();
    let mut in_string = false;
    let mut escaped = false;
    let mut has_whitespace = false;
    let mut depth = 0usize;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING_DEPTH {
                    return Err(ApiError::NestingTooDeep(format!(
                        "the event nests arrays/objects deeper than {MAX_NESTING_DEPTH} levels"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b' ' | b'\t' | b'\n' | b'\r' => has_whitespace = true,
            _ => {}
        }
    }
    if !has_whitespace {
        return Ok(if source.as_ptr_range().contains(&bytes.as_ptr()) {
            source.slice_ref(bytes)
        } else {
            Bytes::copy_from_slice(bytes)
        });
    }
    let mut out = Vec::with_capacity(bytes.len());
    in_string = false;
    escaped = false;
    for &b in bytes {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
            out.push(b);
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            out.push(b);
        }
    }
    Ok(Bytes::from(out))
}

fn trim_ascii_whitespace(mut line: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = line {
        if first.is_ascii_whitespace() {
            line = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = line {
        if last.is_ascii_whitespace() {
            line = rest;
        } else {
            break;
        }
    }
    line
}

/// serde_json's message already names line and column; syntax errors and wrong shapes get
/// different codes because they call for different fixes.
fn json_error(err: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    let message = bounded_message(&err);
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::InvalidJson(format!("invalid JSON: {message}"))
        }
        Category::Data => ApiError::InvalidBody(format!("unexpected body shape: {message}")),
    }
}

/// serde's message, with any quoted client input in it cut short, and its position kept.
fn bounded_message(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let position = format!(" at line {} column {}", err.line(), err.column());
    let description = text.strip_suffix(&position).unwrap_or(&text);
    if err.line() == 0 {
        truncate_for_message(description)
    } else {
        format!("{}{position}", truncate_for_message(description))
    }
}

/// Checks that a standard parser can read the event back into a value: `RawValue` only checks
/// the syntax, so numbers out of range (`1e400`) or lone surrogate escapes (`"\ud800"`) would
/// otherwise be written to the stream and break consumers.
fn check_parses_back(data: &[u8]) -> Result<(), String> {
    struct Discard;

    impl<'de> serde::de::Visitor<'de> for Discard {
        type Value = ();

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element_seed(Discard)?.is_some() {}
            Ok(())
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while map.next_key_seed(Discard)?.is_some() {
                map.next_value_seed(Discard)?;
            }
            Ok(())
        }
    }

    impl<'de> serde::de::DeserializeSeed<'de> for Discard {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    let mut deserializer = serde_json::Deserializer::from_slice(data);
    serde::Deserializer::deserialize_any(&mut deserializer, Discard)
        .and_then(|()| deserializer.end())
        .map_err(|e| bounded_message(&e))
}

fn prefix(err: ApiError, text: &str) -> ApiError {
    match err {
        ApiError::InvalidJson(m) => ApiError::InvalidJson(format!("{text}{m}")),
        ApiError::InvalidBody(m) => ApiError::InvalidBody(format!("{text}{m}")),
        other => other,
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
