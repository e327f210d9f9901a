//! The body checks of the request path on arbitrary bytes: `json::validate`, `json::check_depth`
//! and `Pointer::lookup` / `json::text` on the validated document.
//!
//! Beyond "no panic", it checks what consumers rely on: a body the relay accepts (valid, nested
//! no deeper than serde_json's recursion limit, no unpaired surrogate escape) is one that
//! `serde_json::from_slice::<Value>` parses too (huge numbers aside: they are accepted as
//! written), and every pointer lookup finds what `Value::pointer` finds, as a slice of the body
//! that is itself valid JSON (with duplicate keys both take the last occurrence).

#![no_main]

use hookrelay::json::{self, JsonError, Pointer};
use libfuzzer_sys::fuzz_target;

/// serde_json refuses a document nesting 128 arrays or objects ("recursion limit exceeded"):
/// its limit is 127 levels.
const SERDE_JSON_MAX_DEPTH: usize = 127;

const POINTERS: &[&str] = &[
    "/",
    "/email",
    "/id",
    "/type",
    "/event/type",
    "/a/0",
    "/a~1b/1",
    "/0",
    "/items/10/x",
    "/~0",
];

fuzz_target!(|data: &[u8]| {
    let validated = json::validate(data);
    // The depth and surrogate scan runs on any bytes (the relay only runs it on validated ones).
    let depth = json::check_depth(data, SERDE_JSON_MAX_DEPTH);
    let _ = json::check_depth(data, 1);

    let Ok(document) = validated else {
        return;
    };
    assert_eq!(
        document.get().as_bytes(),
        data.trim_ascii(),
        "the document is the body"
    );

    if depth.is_ok() {
        match serde_json::from_slice::<serde_json::Value>(data) {
            Ok(value) => {
                for text in POINTERS {
                    let pointer = Pointer::parse(text).expect("a valid pointer");
                    let found = pointer.lookup(document);
                    let expected = value.pointer(text);
                    match (found, expected) {
                        (Some(raw), Some(expected)) => {
                            let parsed: serde_json::Value = serde_json::from_str(raw.get())
                                .expect("a looked-up value is valid JSON");
                            assert_eq!(&parsed, expected, "{text}");
                            let _ = json::text(raw);
                        }
                        (None, None) => {}
                        (found, expected) => {
                            panic!("{text}: relay found {found:?}, serde_json {expected:?}")
                        }
                    }
                }
            }
            // Documented: huge numbers are accepted as written, never converted.
            Err(error) if error.to_string().starts_with("number out of range") => {}
            Err(error) => panic!("validate accepted a body serde_json refuses: {error}"),
        }
    } else {
        // Refused bodies are refused for one of the two documented reasons.
        assert!(matches!(
            depth,
            Err(JsonError::TooDeep { .. } | JsonError::LoneSurrogate { .. })
        ));
        // Lookups still work (iteratively) on deep or surrogate-bearing documents.
        for text in POINTERS {
            let pointer = Pointer::parse(text).expect("a valid pointer");
            let _ = pointer.lookup(document).map(json::text);
        }
    }
});
