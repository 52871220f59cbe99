//! Keeping secrets out of output.

/// Replace every occurrence of `secret` in `text` with `***` (a last line of defence for
/// text that echoes user input, such as error chains).
pub fn redact(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_string()
    } else {
        text.replace(secret, "***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_every_occurrence() {
        assert_eq!(redact("a hunter2 b hunter2", "hunter2"), "a *** b ***");
        assert_eq!(redact("nothing", ""), "nothing");
    }
}
