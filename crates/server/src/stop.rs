//! Stop strings: text is released only once it cannot be the start of a stop
//! string, so a stop string never leaks partially into the output.

/// Holds back text that might begin a stop string.
pub struct StopMatcher {
    stops: Vec<String>,
    pending: String,
}

/// What [`StopMatcher::push`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum StopOutcome {
    /// Text that is safe to emit now (may be empty).
    Emit(String),
    /// A stop string was found: emit this text, then finish.
    Stopped(String),
}

impl StopMatcher {
    /// A matcher for these (non-empty) stop strings.
    pub fn new(stops: Vec<String>) -> Self {
        StopMatcher {
            stops,
            pending: String::new(),
        }
    }

    /// Add generated text.
    pub fn push(&mut self, text: &str) -> StopOutcome {
        self.pending.push_str(text);
        let first_hit = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min();
        if let Some(at) = first_hit {
            let out = self.pending[..at].to_string();
            self.pending.clear();
            return StopOutcome::Stopped(out);
        }
        let keep = self.longest_partial_suffix();
        let cut = self.pending.len() - keep;
        let out = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        StopOutcome::Emit(out)
    }

    /// Release what is held back (the generation ended without a stop string).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }

    /// Length in bytes of the longest suffix of `pending` that is a proper
    /// prefix of some stop string (always on a char boundary).
    fn longest_partial_suffix(&self) -> usize {
        let p = &self.pending;
        let mut best = 0;
        for s in &self.stops {
            let max = s.len().saturating_sub(1).min(p.len());
            for len in (best + 1..=max).rev() {
                let start = p.len() - len;
                if p.is_char_boundary(start) && s.starts_with(&p[start..]) {
                    best = len;
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_back_partial_matches_and_stops_before_the_stop_string() {
        let mut m = StopMatcher::new(vec!["</end>".into()]);
        assert_eq!(m.push("hello <"), StopOutcome::Emit("hello ".into()));
        assert_eq!(m.push("/e"), StopOutcome::Emit(String::new()));
        assert_eq!(m.push("x"), StopOutcome::Emit("</ex".into()));
        assert_eq!(m.push(" ok </en"), StopOutcome::Emit(" ok ".into()));
        assert_eq!(m.push("d> tail"), StopOutcome::Stopped(String::new()));
    }

    #[test]
    fn stop_inside_one_piece_and_unicode() {
        let mut m = StopMatcher::new(vec!["ü!".into(), "\n\n".into()]);
        assert_eq!(m.push("añoü"), StopOutcome::Emit("año".into()));
        assert_eq!(m.push("x\n\nrest"), StopOutcome::Stopped("üx".into()));
        let mut m = StopMatcher::new(vec!["STOP".into()]);
        assert_eq!(m.push("abc ST"), StopOutcome::Emit("abc ".into()));
        assert_eq!(m.finish(), "ST");
    }
}
