//! JSON checks on the raw body, without building a document tree and without re-serialising.
//!
//! [`validate`] proves the body is one well-formed JSON value in UTF-8 by parsing it into a
//! `serde_json::value::RawValue`, whose parser skips nested values iteratively (deep nesting
//! cannot exhaust the stack). [`Pointer::lookup`] then finds the few fields the relay needs (key,
//! idempotency fields) by scanning one object or array level at a time, borrowing from the body.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// Why a body is not acceptable JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("the request body is empty")]
    Empty,
    #[error("the body is not valid UTF-8 (first invalid byte at offset {offset})")]
    InvalidUtf8 { offset: usize },
    #[error("the body nests arrays and objects deeper than {max} levels")]
    TooDeep { max: usize },
    #[error("the body has an unpaired UTF-16 surrogate escape at offset {offset}: a \\u escape of a high surrogate (D800-DBFF) must be followed by one of a low surrogate (DC00-DFFF)")]
    LoneSurrogate { offset: usize },
    #[error("the body is not well-formed JSON: {reason} at line {line}, column {column}")]
    Syntax {
        reason: String,
        line: usize,
        column: usize,
    },
}

/// Checks that `body` is exactly one well-formed JSON value (surrounding whitespace allowed).
pub fn validate(body: &[u8]) -> Result<&RawValue, JsonError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(JsonError::Empty);
    }
    let text = std::str::from_utf8(body).map_err(|error| JsonError::InvalidUtf8 {
        offset: error.valid_up_to(),
    })?;
    serde_json::from_str::<&RawValue>(text).map_err(|error| JsonError::Syntax {
        reason: syntax_reason(&error),
        line: error.line(),
        column: error.column(),
    })
}

/// Refuses a (validated) document whose arrays and objects nest deeper than `max`, or whose
/// strings hold an unpaired UTF-16 surrogate escape (`"\ud800"`).
///
/// Depth: the relay itself never recurses, but consumers that parse the record recursively (most
/// JSON libraries) would fail or crash on it. Surrogates: RFC 8259's grammar allows any `\uXXXX`,
/// but an escape of half a surrogate pair is no Unicode character; strict parsers (serde_json,
/// Go, Python with `surrogatepass` off) refuse or mangle it, so such a body is not the
/// well-formed JSON the relay promises its consumers. One forward scan, tracking only whether it
/// is inside a string.
pub fn check_depth(body: &[u8], max: usize) -> Result<(), JsonError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut position = 0;
    while position < body.len() {
        let byte = body[position];
        position += 1;
        if in_string {
            match byte {
                b'"' => in_string = false,
                b'\\' => {
                    let escape = position - 1;
                    match body.get(position) {
                        Some(b'u') => position = check_unicode_escape(body, escape)?,
                        Some(_) => position += 1,
                        None => {}
                    }
                }
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(JsonError::TooDeep { max });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Checks the `\uXXXX` escape at `escape` (the backslash): a high surrogate must be followed at
/// once by a low one, and a low one must not stand alone. Returns the position after it (after
/// both halves of a pair).
fn check_unicode_escape(body: &[u8], escape: usize) -> Result<usize, JsonError> {
    let unit = |at: usize| -> Option<u16> {
        let digits = body.get(at + 2..at + 6)?;
        if body.get(at..at + 2)? != b"\\u" {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    };
    let lone = JsonError::LoneSurrogate { offset: escape };
    match unit(escape) {
        Some(0xD800..=0xDBFF) => match unit(escape + 6) {
            Some(0xDC00..=0xDFFF) => Ok(escape + 12),
            _ => Err(lone),
        },
        Some(0xDC00..=0xDFFF) => Err(lone),
        // Any other escape; a malformed one cannot occur in a validated body.
        _ => Ok(escape + 6),
    }
}

/// serde_json's message without its trailing position (reported separately).
pub fn syntax_reason(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.rfind(" at line ") {
        Some(end) => message[..end].to_owned(),
        None => message,
    }
}

/// An RFC 6901 JSON pointer (`/email`, `/customer/id`, `/items/0`), parsed once from config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    text: String,
    tokens: Vec<String>,
}

impl Pointer {
    pub fn parse(text: &str) -> Result<Pointer, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "{text:?} is not a JSON pointer: it must start with '/', as in /email"
            ));
        };
        let tokens = rest
            .split('/')
            .map(|token| token.replace("~1", "/").replace("~0", "~"))
            .collect();
        Ok(Pointer {
            text: text.to_owned(),
            tokens,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The member name, when this pointer names a member of the top-level object (`/email`).
    fn member(&self) -> Option<&str> {
        match self.tokens.as_slice() {
            [name] => Some(name),
            _ => None,
        }
    }

    /// The value this pointer names in a validated document, if present.
    pub fn lookup<'a>(&self, document: &'a RawValue) -> Option<&'a RawValue> {
        let mut current = document;
        for token in &self.tokens {
            current = child(current, token)?;
        }
        Some(current)
    }
}

/// The values `pointers` name in a validated document, in order: pointers to members of the
/// top-level object are all found in one pass over it (the last duplicate wins, as in
/// [`Pointer::lookup`]); deeper ones are looked up one by one.
pub fn lookup_all<'a>(document: &'a RawValue, pointers: &[Pointer]) -> Vec<Option<&'a RawValue>> {
    let mut found: Vec<Option<&'a RawValue>> = vec![None; pointers.len()];
    if pointers.iter().any(|pointer| pointer.member().is_some()) && document.get().starts_with('{')
    {
        let mut deserializer = serde_json::Deserializer::from_str(document.get());
        let members = MembersVisitor {
            pointers,
            found: &mut found,
        };
        if deserializer.deserialize_map(members).is_err() {
            found.iter_mut().for_each(|value| *value = None);
        }
    }
    for (value, pointer) in found.iter_mut().zip(pointers) {
        if pointer.member().is_none() {
            *value = pointer.lookup(document);
        }
    }
    found
}

/// Fills `found[i]` with the top-level member `pointers[i]` names (where it names one), in one
/// pass over the object.
struct MembersVisitor<'p, 'f, 'a> {
    pointers: &'p [Pointer],
    found: &'f mut Vec<Option<&'a RawValue>>,
}

impl<'de: 'a, 'a> Visitor<'de> for MembersVisitor<'_, '_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            let key = Some(key.as_ref());
            if self.pointers.iter().any(|pointer| pointer.member() == key) {
                let value = map.next_value::<&'de RawValue>()?;
                for (slot, pointer) in self.found.iter_mut().zip(self.pointers) {
                    if pointer.member() == key {
                        *slot = Some(value);
                    }
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Pointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A value as text: strings unescaped and unquoted, anything else as written.
pub fn text(value: &RawValue) -> Cow<'_, str> {
    let raw = value.get();
    if raw.starts_with('"') {
        if let Ok(Text(text)) = serde_json::from_str::<Text<'_>>(raw) {
            return text;
        }
    }
    Cow::Borrowed(raw)
}

/// One level down: the member `token` of an object, or element `token` of an array.
fn child<'a>(value: &'a RawValue, token: &str) -> Option<&'a RawValue> {
    let mut deserializer = serde_json::Deserializer::from_str(value.get());
    match value.get().as_bytes().first()? {
        b'{' => deserializer
            .deserialize_map(MemberVisitor { name: token })
            .ok()?,
        b'[' => {
            let index = array_index(token)?;
            deserializer
                .deserialize_seq(ElementVisitor { index })
                .ok()?
        }
        _ => None,
    }
}

/// An array index as RFC 6901 writes it: `0`, or digits without a leading zero (so not `01`,
/// `+1` or ` 1`, which Rust's integer parsing would take).
fn array_index(token: &str) -> Option<usize> {
    let canonical = token == "0"
        || (!token.is_empty()
            && !token.starts_with('0')
            && token.bytes().all(|byte| byte.is_ascii_digit()));
    if canonical {
        token.parse().ok()
    } else {
        None
    }
}

/// A string borrowed from the input where it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(text)))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E: de::Error>(self, text: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

struct MemberVisitor<'n> {
    name: &'n str,
}

impl<'de> Visitor<'de> for MemberVisitor<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // The last duplicate wins, as in serde_json::Value and JavaScript.
        let mut found = None;
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            if key == self.name {
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

struct ElementVisitor {
    index: usize,
}

impl<'de> Visitor<'de> for ElementVisitor {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        let mut position = 0;
        loop {
            if position == self.index {
                match seq.next_element_seed(RawSeed)? {
                    Some(value) => found = Some(value),
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            position += 1;
        }
        Ok(found)
    }
}

struct RawSeed;

impl<'de> DeserializeSeed<'de> for RawSeed {
    type Value = &'de RawValue;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        <&'de RawValue>::deserialize(deserializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_all_finds_what_each_lookup_finds_in_one_pass() {
        let pointers: Vec<Pointer> = ["/a", "/b/c", "/missing", "/a", "/d"]
            .iter()
            .map(|text| Pointer::parse(text).unwrap())
            .collect();
        for body in [
            r#"{"a":1,"b":{"c":"x"},"d":"first","d":"last"}"#,
            r#"{"d":null,"b":[],"a":{"n":[1,2]}}"#,
            r#"[1,2,3]"#,
            r#""text""#,
            r#"{}"#,
        ] {
            let document = validate(body.as_bytes()).unwrap();
            let one_by_one: Vec<Option<&str>> = pointers
                .iter()
                .map(|pointer| pointer.lookup(document).map(RawValue::get))
                .collect();
            let all: Vec<Option<&str>> = lookup_all(document, &pointers)
                .into_iter()
                .map(|value| value.map(RawValue::get))
                .collect();
            assert_eq!(all, one_by_one, "{body}");
        }
    }

    const SAMPLE: &[u8] = br#"{
"name": "Student Name",
"email": "student@example.com",
"phone": 1234567890,
"nested": {"a/b": [10, {"deep": "x\u00e9"}]},
"courseId": "634fc35ddaf58580e2418c40"
}"#;

    #[test]
    fn well_formed_body_is_accepted_as_is() {
        let raw = validate(SAMPLE).unwrap();
        assert_eq!(raw.get().as_bytes(), SAMPLE);
    }

    #[test]
    fn malformed_bodies_are_refused_with_a_reason() {
        assert_eq!(validate(b"").unwrap_err(), JsonError::Empty);
        assert_eq!(validate(b"  \n").unwrap_err(), JsonError::Empty);
        assert_eq!(
            validate(b"{\"a\":\"\xff\"}").unwrap_err(),
            JsonError::InvalidUtf8 { offset: 6 }
        );
        assert!(matches!(
            validate(b"{\"a\":1,}"),
            Err(JsonError::Syntax { .. })
        ));
        assert!(matches!(
            validate(b"{\"a\":1} {}"),
            Err(JsonError::Syntax { .. })
        ));
    }

    #[test]
    fn nesting_is_limited_to_the_configured_depth() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(check_depth(nested(128).as_bytes(), 128), Ok(()));
        assert_eq!(
            check_depth(nested(129).as_bytes(), 128),
            Err(JsonError::TooDeep { max: 128 })
        );
        assert_eq!(check_depth(br#"{"a":"[[[[\"[[["}"#, 1), Ok(()));
        assert!(check_depth(br#"{"a":{"b":1}}"#, 1).is_err());
    }

    #[test]
    fn unpaired_surrogate_escapes_are_refused() {
        let check = |body: &str| check_depth(body.as_bytes(), 128);
        assert_eq!(check(r#"{"a":"\ud83d\ude00"}"#), Ok(()), "a pair (😀)");
        assert_eq!(
            check(r#"{"a":"\uD83D\uDE00 \u00e9 \\ud800"}"#),
            Ok(()),
            "escaped backslash"
        );
        assert_eq!(
            check(r#"{"a":"\u0041\n\"\ud800"}"#),
            Err(JsonError::LoneSurrogate { offset: 16 })
        );
        assert_eq!(
            check(r#"["\ud800"]"#),
            Err(JsonError::LoneSurrogate { offset: 2 })
        );
        assert_eq!(
            check(r#"["\udc00"]"#),
            Err(JsonError::LoneSurrogate { offset: 2 })
        );
        assert_eq!(
            check(r#"["\ud800\u0041"]"#),
            Err(JsonError::LoneSurrogate { offset: 2 })
        );
        assert_eq!(
            check(r#"["\ud800x\udc00"]"#),
            Err(JsonError::LoneSurrogate { offset: 2 })
        );
        assert_eq!(
            check(r#"["\ud800\ud800\udc00"]"#),
            Err(JsonError::LoneSurrogate { offset: 2 })
        );
        assert_eq!(
            check(r#"{"\udfff":1}"#),
            Err(JsonError::LoneSurrogate { offset: 2 }),
            "in a key"
        );
        assert_eq!(
            check(r#"["\ud800"#),
            Err(JsonError::LoneSurrogate { offset: 2 }),
            "at the end"
        );
    }

    #[test]
    fn deep_nesting_is_refused_without_exhausting_the_stack() {
        let deep = "[".repeat(20_000);
        assert!(matches!(
            validate(deep.as_bytes()),
            Err(JsonError::Syntax { .. })
        ));
    }

    #[test]
    fn pointers_find_members_and_elements() {
        let raw = validate(SAMPLE).unwrap();
        let lookup = |pointer: &str| {
            Pointer::parse(pointer)
                .unwrap()
                .lookup(raw)
                .map(|value| text(value).into_owned())
        };
        assert_eq!(lookup("/email").as_deref(), Some("student@example.com"));
        assert_eq!(lookup("/phone").as_deref(), Some("1234567890"));
        assert_eq!(lookup("/nested/a~1b/0").as_deref(), Some("10"));
        assert_eq!(lookup("/nested/a~1b/1/deep").as_deref(), Some("xé"));
        assert_eq!(lookup("/missing"), None);
        assert_eq!(lookup("/nested/a~1b/7"), None);
        assert_eq!(lookup("/email/0"), None);
        // Array indexes as RFC 6901 writes them, nothing else.
        for not_an_index in ["01", "+1", "-0", " 1", "1 ", "", "1e0", "0x1"] {
            assert_eq!(
                lookup(&format!("/nested/a~1b/{not_an_index}")),
                None,
                "{not_an_index:?}"
            );
        }
    }

    #[test]
    fn pointer_must_start_with_a_slash() {
        assert!(Pointer::parse("email").is_err());
    }
}
