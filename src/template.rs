//! `{name}` placeholders in configuration templates (topic names, signed content): one reader,
//! each template type deciding which names exist and what a literal may hold.

/// A piece of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    Literal(&'a str),
    /// The name between braces.
    Placeholder(&'a str),
}

/// The pieces of `template`, in order, read as they are asked for, so that a parser reports the
/// first problem in the text: an opening brace without its closing one ends it with an error.
pub fn pieces(template: &str) -> Pieces<'_> {
    Pieces {
        template,
        rest: template,
    }
}

/// The iterator of [`pieces`].
pub struct Pieces<'a> {
    template: &'a str,
    rest: &'a str,
}

impl<'a> Iterator for Pieces<'a> {
    type Item = Result<Piece<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest;
        if rest.is_empty() {
            return None;
        }
        match rest.find('{') {
            Some(0) => match rest.find('}') {
                Some(end) => {
                    self.rest = &rest[end + 1..];
                    Some(Ok(Piece::Placeholder(&rest[1..end])))
                }
                None => {
                    self.rest = "";
                    Some(Err(format!("unclosed placeholder in {:?}", self.template)))
                }
            },
            found => {
                let end = found.unwrap_or(rest.len());
                self.rest = &rest[end..];
                Some(Ok(Piece::Literal(&rest[..end])))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_placeholders_alternate_as_written() {
        let all = |template| pieces(template).collect::<Result<Vec<_>, _>>();
        assert_eq!(
            all("v0:{timestamp}:{body}").unwrap(),
            [
                Piece::Literal("v0:"),
                Piece::Placeholder("timestamp"),
                Piece::Literal(":"),
                Piece::Placeholder("body"),
            ]
        );
        assert_eq!(all("").unwrap(), []);
        assert_eq!(all("a{b").unwrap_err(), "unclosed placeholder in \"a{b\"");
        // Read in order: what comes before an unclosed brace is seen first.
        let mut read = pieces("a{b}{c");
        assert_eq!(read.next(), Some(Ok(Piece::Literal("a"))));
        assert_eq!(read.next(), Some(Ok(Piece::Placeholder("b"))));
        assert!(matches!(read.next(), Some(Err(_))));
        assert_eq!(read.next(), None);
    }
}
