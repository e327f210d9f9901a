//! `docs/configuration.md` against the settings types: every key the file accepts is in the
//! reference, every key in the reference exists, and the defaults it states are the real ones.

use std::collections::BTreeMap;

use hookrelay::settings::{
    AuthSettings, DeliverySettings, KafkaSettings, NoAuthSettings, ServerSettings, SourceSettings,
    TelemetrySettings,
};
use serde::de::{self, Deserialize, Deserializer, Visitor};

use crate::helpers::repo_path;

/// The field names serde accepts for `T` (a struct): what `deserialize_struct` is told.
fn fields_of<'de, T: Deserialize<'de>>() -> Vec<&'static str> {
    struct Introspect<'a>(&'a mut Vec<&'static str>);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("introspection only")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> Deserializer<'de> for Introspect<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0.extend(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut fields = Vec::new();
    let _ = T::deserialize(Introspect(&mut fields));
    fields
}

/// The `| key | default | meaning |` table under `### heading`: key → default column.
fn reference_table(doc: &str, heading: &str) -> BTreeMap<String, String> {
    let start = doc
        .find(&format!("### {heading}\n"))
        .unwrap_or_else(|| panic!("no section {heading} in docs/configuration.md"));
    let section = &doc[start..];
    let end = section[4..]
        .find("\n### ")
        .map_or(section.len(), |end| end + 4);
    section[..end]
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.splitn(4, '|').map(str::trim).collect();
            let key = cells[1]
                .trim_matches('`')
                .trim_start_matches('[')
                .trim_end_matches(']');
            // `[kafka.options]` is the key `options` of `[kafka]`.
            let key = key.rsplit('.').next().unwrap_or(key);
            (key.to_owned(), cells[2].to_owned())
        })
        .collect()
}

/// A stated default as JSON: a TOML literal in backticks.
fn stated_default(text: &str) -> Option<serde_json::Value> {
    let literal = text.strip_prefix('`')?.strip_suffix('`')?;
    let table: toml::Table = toml::from_str(&format!("value = {literal}")).ok()?;
    serde_json::to_value(&table["value"]).ok()
}

fn check_section<T: serde::Serialize>(
    doc: &str,
    heading: &str,
    fields: &[&str],
    defaults: Option<&T>,
) -> Vec<String> {
    let table = reference_table(doc, heading);
    let mut problems = Vec::new();
    for field in fields {
        if !table.contains_key(*field) {
            problems.push(format!(
                "{heading}: `{field}` is accepted but not documented"
            ));
        }
    }
    for key in table.keys() {
        if !fields.contains(&key.as_str()) {
            problems.push(format!("{heading}: `{key}` is documented but not accepted"));
        }
    }
    if let Some(defaults) = defaults {
        let actual = serde_json::to_value(defaults).unwrap();
        for (key, stated) in &table {
            // Keys without a value of their own (absent, or taken from elsewhere) are described
            // in words ("absent = any", "`delivery.ack`", "the auth preset's").
            let Some(actual) = actual.get(key).filter(|actual| !actual.is_null()) else {
                continue;
            };
            // A required key has no default (the smallest source states its `auth`).
            if stated.trim() == "required" {
                continue;
            }
            match stated_default(stated) {
                Some(stated) if &stated == actual => {}
                Some(stated) => problems.push(format!(
                    "{heading}: `{key}` defaults to {actual}, the reference says {stated}"
                )),
                None => problems.push(format!(
                    "{heading}: `{key}`: the stated default {stated:?} is not a TOML literal in backticks"
                )),
            }
        }
    }
    problems
}

#[test]
fn the_configuration_reference_lists_every_key_with_its_real_default() {
    let doc = std::fs::read_to_string(repo_path("docs/configuration.md")).unwrap();
    let mut problems = Vec::new();
    problems.extend(check_section(
        &doc,
        "`[server]`",
        &fields_of::<ServerSettings>(),
        Some(&ServerSettings::default()),
    ));
    problems.extend(check_section(
        &doc,
        "`[kafka]`",
        &fields_of::<KafkaSettings>(),
        Some(&KafkaSettings::default()),
    ));
    problems.extend(check_section(
        &doc,
        "`[delivery]`",
        &fields_of::<DeliverySettings>(),
        Some(&DeliverySettings::default()),
    ));
    problems.extend(check_section(
        &doc,
        "`[telemetry]`",
        &fields_of::<TelemetrySettings>(),
        Some(&TelemetrySettings::default()),
    ));
    // A source has no default as a whole: the smallest valid one gives the keys' defaults.
    let smallest: SourceSettings = toml::from_str("auth = { type = \"none\" }").unwrap();
    problems.extend(check_section(
        &doc,
        "`[sources.NAME]`",
        &fields_of::<SourceSettings>(),
        Some(&smallest),
    ));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Tests build sources with `SourceSettings::new`: it must be the smallest source a file can
/// state, key for key.
#[test]
fn a_source_built_in_code_has_the_defaults_of_the_smallest_source_table() {
    let smallest: SourceSettings = toml::from_str("auth = { type = \"none\" }").unwrap();
    let built = SourceSettings::new(AuthSettings::None(NoAuthSettings {}));
    assert_eq!(
        serde_json::to_value(&built).unwrap(),
        serde_json::to_value(&smallest).unwrap()
    );
}

#[test]
fn introspection_sees_the_fields_of_a_struct() {
    let fields = fields_of::<TelemetrySettings>();
    assert_eq!(fields, ["format", "level"]);
}

/// The image users run is the version the tests run.
#[test]
fn docker_compose_runs_the_kafka_version_the_tests_run() {
    let lib = std::fs::read_to_string(repo_path("scripts/lib.sh")).unwrap();
    let version = lib
        .lines()
        .find_map(|line| line.strip_prefix("KAFKA_VERSION="))
        .expect("KAFKA_VERSION in scripts/lib.sh");
    assert!(version.starts_with("4."), "Apache Kafka 4.x: {version}");
    let compose = std::fs::read_to_string(repo_path("docker-compose.yml")).unwrap();
    let images: Vec<&str> = compose
        .lines()
        .filter_map(|line| line.trim().strip_prefix("image: apache/kafka:"))
        .collect();
    assert!(!images.is_empty(), "docker-compose.yml runs apache/kafka");
    for image in images {
        assert_eq!(image, version, "docker-compose.yml's apache/kafka tag");
    }
}
