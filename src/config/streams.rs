//! The checks of the `[streams]` lists against each other: every pattern of a per-stream list
//! (`ack_on_enqueue`, `ack_on_disk`, `ordered`, `aggregate`, `envelope`, `schemas`) can match an allowed stream, and a
//! stream acknowledges at one level only. Apart from `validate` because they compare patterns,
//! not values against bounds.

use super::{invalid, ConfigError, Settings};
use crate::domain::StreamPattern;

/// One `streams.schemas` entry, `pattern:path`, split and its pattern parsed; the path is
/// read and compiled by the edge (`http::schemas`), at startup and on SIGHUP.
fn split_schema_entry(entry: &str) -> Result<(StreamPattern, String), ConfigError> {
    let Some((pattern, path)) = entry.split_once(':').filter(|(_, path)| !path.is_empty()) else {
        return Err(invalid(
            "streams.schemas",
            format!("{entry:?} is not \"pattern:path/to/schema.json\""),
        ));
    };
    let pattern =
        StreamPattern::parse(pattern).map_err(|message| invalid("streams.schemas", message))?;
    Ok((pattern, path.to_owned()))
}

impl Settings {
    /// The `(pattern, path)` pairs of `streams.schemas` (validate() has checked them).
    pub fn schema_files(&self) -> Vec<(StreamPattern, String)> {
        self.streams
            .schemas
            .iter()
            .filter_map(|entry| split_schema_entry(entry).ok())
            .collect()
    }

    /// Every pattern of the per-stream lists can match some stream of `streams.allow`: one
    /// that cannot (`ack_on_disk = ["event"]` with allow `["events"]`) would silently do
    /// nothing, which is a typo, not a policy. The same rule as for key scopes.
    pub(super) fn validate_stream_lists(&self) -> Result<(), ConfigError> {
        let allow: Vec<StreamPattern> = self
            .streams
            .allow
            .iter()
            .filter_map(|p| StreamPattern::parse(p).ok())
            .collect();
        let lists = [
            ("streams.ack_on_enqueue", &self.streams.ack_on_enqueue),
            ("streams.ack_on_disk", &self.streams.ack_on_disk),
            ("streams.ordered", &self.streams.ordered),
            ("streams.aggregate", &self.streams.aggregate),
            ("streams.envelope", &self.streams.envelope),
        ];
        let schema_patterns: Vec<String> = self
            .streams
            .schemas
            .iter()
            .map(|entry| {
                split_schema_entry(entry)?;
                Ok(entry
                    .split_once(':')
                    .map(|(p, _)| p.to_owned())
                    .unwrap_or_default())
            })
            .collect::<Result<_, ConfigError>>()?;
        let lists = lists
            .into_iter()
            .chain([("streams.schemas", &schema_patterns)]);
        for (setting, patterns) in lists {
            for raw in patterns {
                let Ok(pattern) = StreamPattern::parse(raw) else {
                    continue; // refused above, naming the lists
                };
                if !allow.iter().any(|a| a.overlaps(&pattern)) {
                    return Err(invalid(
                        setting,
                        format!(
                            "{raw:?} matches no stream of streams.allow ({:?}), so it would never apply; fix the name, or add the stream to streams.allow",
                            self.streams.allow
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// A stream acknowledges at one level: a pattern of `ack_on_disk` that some stream of
    /// `ack_on_enqueue` also matches is refused, naming both.
    pub(super) fn validate_ack_levels(&self) -> Result<(), ConfigError> {
        for disk in &self.streams.ack_on_disk {
            for memory in &self.streams.ack_on_enqueue {
                let (Ok(d), Ok(m)) = (StreamPattern::parse(disk), StreamPattern::parse(memory))
                else {
                    continue;
                };
                if d.overlaps(&m) {
                    return Err(invalid(
                        "streams.ack_on_disk",
                        format!("{disk:?} and streams.ack_on_enqueue's {memory:?} match the same streams; a stream is acknowledged either on disk or at enqueue, so keep it in one list"),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::layering::tests::{base, env};
    use super::*;

    #[test]
    fn stream_lists_within_a_wildcard_allow_list_are_accepted() {
        let mut vars = env(&[
            ("KINESIS_PROXY__STREAMS__ALLOW", "events,clicks-*"),
            ("KINESIS_PROXY__STREAMS__ACK_ON_DISK", "clicks-eu,click*"),
            ("KINESIS_PROXY__STREAMS__ORDERED", "events,*"),
        ]);
        vars.extend(base());
        Settings::from_sources(None, vars).expect("every pattern can match an allowed stream");
        let mut vars = env(&[
            ("KINESIS_PROXY__STREAMS__ALLOW", "*"),
            ("KINESIS_PROXY__STREAMS__AGGREGATE", "anything"),
        ]);
        vars.extend(base());
        Settings::from_sources(None, vars).expect("\"*\" allows any name");
    }
}
