//! Checks on JSON text shared by the property tests (`src/batch/proptests.rs`) and the fuzz
//! target (`fuzz/fuzz_targets/parse_request.rs`), each including this file with `#[path]`:
//! both assert that record data is compact JSON.

/// True when `json` has a space, tab, CR or LF outside its string literals.
pub fn has_whitespace_outside_strings(json: &[u8]) -> bool {
    let (mut in_string, mut escaped) = (false, false);
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            return true;
        }
    }
    false
}
