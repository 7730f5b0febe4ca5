//! Stop strings over streamed text: text that could still turn into a stop string is held back
//! until it either completes one (generation ends, the stop string is not emitted) or cannot.

pub struct StopStrings {
    stops: Vec<String>,
    held: String,
}

/// What to show after pushing a piece of text.
#[derive(Debug, PartialEq, Eq)]
pub struct Emit {
    pub text: String,
    pub stopped: bool,
}

impl StopStrings {
    pub fn new(stops: &[String]) -> Self {
        StopStrings { stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(), held: String::new() }
    }

    pub fn push(&mut self, piece: &str) -> Emit {
        self.held.push_str(piece);
        if let Some(at) = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            let text = self.held[..at].to_string();
            self.held.clear();
            return Emit { text, stopped: true };
        }
        // Keep the longest tail that is a proper prefix of some stop string.
        let keep = self
            .stops
            .iter()
            .flat_map(|s| (1..s.len()).filter(move |&n| s.is_char_boundary(n)).map(move |n| &s[..n]))
            .filter(|prefix| self.held.ends_with(prefix))
            .map(str::len)
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let text = self.held[..cut].to_string();
        self.held.drain(..cut);
        Emit { text, stopped: false }
    }

    /// Whatever is still held back, once generation ends for another reason.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_back_partial_matches_and_stops_on_full_ones() {
        let mut s = StopStrings::new(&["\nUser:".to_string()]);
        assert_eq!(s.push("Hello"), Emit { text: "Hello".into(), stopped: false });
        assert_eq!(s.push(" there\nUs"), Emit { text: " there".into(), stopped: false });
        assert_eq!(s.push("ually"), Emit { text: "\nUsually".into(), stopped: false });
        assert_eq!(s.push(".\nUse"), Emit { text: ".".into(), stopped: false });
        assert_eq!(s.push("r: hi"), Emit { text: String::new(), stopped: true });
    }

    #[test]
    fn finish_releases_the_held_text_and_no_stops_passes_everything() {
        let mut s = StopStrings::new(&["END".to_string()]);
        assert_eq!(s.push("the EN").text, "the ");
        assert_eq!(s.finish(), "EN");
        let mut none = StopStrings::new(&[]);
        assert_eq!(none.push("E").text, "E");
    }

    #[test]
    fn earliest_stop_wins() {
        let mut s = StopStrings::new(&["bc".to_string(), "ab".to_string()]);
        assert_eq!(s.push("xabc"), Emit { text: "x".into(), stopped: true });
    }
}
