//! `{name}` placeholders in configuration templates (topic names, signed content): one reader,
//! each template type deciding which names exist and what a literal may hold.

/// A piece of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    Literal(&'a str),
    /// The name between braces.
    Placeholder(&'a str),
}

/// The pieces of `template`, in order; an opening brace without its closing one is an error.
pub fn pieces(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        if start > 0 {
            pieces.push(Piece::Literal(&rest[..start]));
        }
        let end = rest[start..]
            .find('}')
            .map(|end| start + end)
            .ok_or_else(|| format!("unclosed placeholder in {template:?}"))?;
        pieces.push(Piece::Placeholder(&rest[start + 1..end]));
        rest = &rest[end + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Literal(rest));
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_placeholders_alternate_as_written() {
        assert_eq!(
            pieces("v0:{timestamp}:{body}").unwrap(),
            [
                Piece::Literal("v0:"),
                Piece::Placeholder("timestamp"),
                Piece::Literal(":"),
                Piece::Placeholder("body"),
            ]
        );
        assert_eq!(pieces("").unwrap(), []);
        assert_eq!(
            pieces("a{b").unwrap_err(),
            "unclosed placeholder in \"a{b\""
        );
    }
}
