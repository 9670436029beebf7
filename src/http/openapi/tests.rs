use bytes::Bytes;
use serde_json::Value;

use super::*;
use crate::http::ingest;

fn doc(auth_required: bool, cors: bool) -> Value {
    let bytes = document(DocumentOptions {
        auth_required,
        cors,
    });
    serde_json::from_slice(&bytes).expect("the document is JSON")
}

#[test]
fn is_openapi_3_1_with_every_error_code() {
    let doc = doc(true, true);
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "{}",
        doc["openapi"]
    );
    let codes: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("ErrorCode enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for error in ApiError::iter() {
        assert!(codes.contains(&error.code()), "{} missing", error.code());
    }
    assert!(
        codes.contains(&"decoded_body_too_large") && codes.contains(&"stream_not_in_key_scope")
    );
}

#[test]
fn write_routes_list_their_errors_by_status_with_retry_after() {
    let doc = doc(true, true);
    for route in [ROUTE_STREAM, ROUTE_SHORT, ROUTE_RECORDS] {
        let post = &doc["paths"][route]["post"];
        for status in [
            "200", "202", "400", "401", "403", "404", "413", "415", "429", "500", "503",
        ] {
            assert!(post["responses"][status].is_object(), "{route} {status}");
        }
        let forbidden = post["responses"]["403"]["content"]["application/json"]["schema"]["allOf"]
            [1]["properties"]["code"]["enum"]
            .to_string();
        for code in [
            "stream_not_allowed",
            "stream_not_in_key_scope",
            "origin_not_allowed",
        ] {
            assert!(forbidden.contains(code), "{route}: {forbidden}");
        }
        assert!(post["responses"]["503"]["headers"]["Retry-After"].is_object());
        assert!(post["responses"]["400"]["headers"]["Retry-After"].is_null());
        assert_eq!(post["security"][0]["api_key"], serde_json::json!([]));
        let params = post["parameters"].to_string();
        assert!(params.contains("\"stream\"") && params.contains("Content-Encoding"));
    }
    for route in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        assert!(doc["paths"][route]["get"].is_object(), "{route}");
        assert!(doc["paths"][route]["head"].is_object(), "{route}");
        assert!(
            doc["paths"][route]["get"]["security"].is_null(),
            "{route} needs no key"
        );
    }
}

#[test]
fn the_document_follows_the_configuration() {
    let open = doc(false, false);
    let post = &open["paths"][ROUTE_STREAM]["post"];
    assert!(post["security"].is_null());
    assert!(open["components"]["securitySchemes"].is_null());
    let text = post["responses"].to_string();
    assert!(
        !text.contains("missing_api_key") && !text.contains("origin_not_allowed"),
        "{text}"
    );
}

/// The request bodies are parsed by hand (`ingest`), not from the documented types: every
/// documented example must parse, and every documented field must be one the parser reads.
#[test]
fn documented_requests_are_what_the_parser_takes() {
    let doc = doc(true, false);
    for route in [ROUTE_STREAM, ROUTE_SHORT] {
        let example =
            &doc["paths"][route]["post"]["requestBody"]["content"]["application/json"]["example"];
        let body = Bytes::from(example.to_string());
        ingest::parse_single(&body).unwrap_or_else(|e| panic!("{route}: {e}"));
    }
    let records = &doc["paths"][ROUTE_RECORDS]["post"]["requestBody"]["content"];
    let json = Bytes::from(records["application/json"]["example"].to_string());
    assert_eq!(
        ingest::parse_records_json(&json, 10)
            .expect("records example")
            .records
            .len(),
        2
    );
    let ndjson = records["application/x-ndjson"]["example"]
        .as_str()
        .expect("NDJSON example");
    let parsed = ingest::parse_ndjson(&Bytes::from(ndjson.to_owned()), 10).expect("NDJSON example");
    assert_eq!(parsed.records.len(), 2);

    // A documented field the parser ignored would accept a wrong type silently.
    let schemas = &doc["components"]["schemas"];
    for (schema, parse) in [
        ("EventRequest", &|b: &Bytes| {
            ingest::parse_single(b).map(|_| ()) as Result<(), ApiError>
        }),
        ("RecordEntry", &|b: &Bytes| {
            let wrapped = Bytes::from(format!("{{\"records\": [{}]}}", String::from_utf8_lossy(b)));
            ingest::parse_records_json(&wrapped, 10).map(|_| ())
        }),
        ("RecordsRequest", &|b: &Bytes| {
            ingest::parse_records_json(b, 10).map(|_| ())
        }),
    ] as [(&str, &dyn Fn(&Bytes) -> Result<(), ApiError>); 3]
    {
        let properties = schemas[schema]["properties"].as_object().expect(schema);
        assert!(!properties.is_empty());
        for field in properties.keys() {
            let mut body = match schema {
                "RecordsRequest" => serde_json::json!({"records": [{"event": 1}]}),
                _ => serde_json::json!({"event": 1}),
            };
            // `event` takes any value but null; the others take no object.
            body[field] = if field == "event" {
                Value::Null
            } else {
                serde_json::json!({"not": ["what", "the", "field", "takes"]})
            };
            let refused = parse(&Bytes::from(body.to_string()));
            assert!(
                refused.is_err(),
                "{schema}.{field} is documented but not read by the parser"
            );
        }
    }
}
