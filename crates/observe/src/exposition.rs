//! The Prometheus text exposition format, version 0.0.4: what `/metrics` answers.
//!
//! One family is `# HELP`, `# TYPE`, then its samples; label values are escaped (`\\`, `\"`,
//! `\n`), numbers are written so Go's `strconv.ParseFloat` reads them back (`+Inf`, `-Inf`,
//! `NaN`). This module only writes text: what the numbers are is [`crate::metrics`]'s business.

use std::fmt::Write as _;

/// The `Content-Type` of the text this writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The kind of a metric family, as `# TYPE` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Builds one exposition, family by family.
#[derive(Default)]
pub struct Writer {
    out: String,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a family. `name` must be a valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`); the
    /// families of this crate are constants, so this is checked in tests, not here.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample line: `name{label="value",…} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_label_into(&mut self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        self.out.push_str(&number(value));
        self.out.push('\n');
    }

    /// A histogram's samples: cumulative `_bucket` lines ending with `le="+Inf"`, then `_sum`
    /// and `_count`. `counts[i]` is the number of observations in bucket `i` alone (not
    /// cumulative); `counts` has one more entry than `bounds`, for the values above the last.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], bounds: &[f64], counts: &[u64], sum: f64) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0u64;
        for (i, bound) in bounds.iter().enumerate() {
            cumulative += counts.get(i).copied().unwrap_or(0);
            let le = number(*bound);
            let mut with_le: Vec<(&str, &str)> = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, cumulative as f64);
        }
        cumulative += counts.get(bounds.len()).copied().unwrap_or(0);
        let mut with_le: Vec<(&str, &str)> = labels.to_vec();
        with_le.push(("le", "+Inf"));
        self.sample(&bucket, &with_le, cumulative as f64);
        self.sample(&format!("{name}_sum"), labels, sum);
        self.sample(&format!("{name}_count"), labels, cumulative as f64);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// A number as the format wants it.
pub fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        // Rust's shortest round-trip form ("3", "0.25", "1e-7") is valid for ParseFloat.
        format!("{v}")
    }
}

fn escape_label_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Whether `name` is a valid metric or label name.
pub fn valid_name(name: &str, label: bool) -> bool {
    let mut chars = name.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (!label && c == ':');
    let ok_rest = |c: char| c.is_ascii_alphanumeric() || c == '_' || (!label && c == ':');
    chars.next().is_some_and(ok_first) && chars.all(ok_rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_families_samples_and_histograms() {
        let mut w = Writer::new();
        w.family("x_total", "Things\nseen \\ here", Kind::Counter);
        w.sample("x_total", &[("a", "q\"u\\o\nte")], 3.0);
        w.family("lat_seconds", "Latency", Kind::Histogram);
        w.histogram("lat_seconds", &[("m", "a")], &[0.5, 1.0], &[1, 2, 3], 9.5);
        let text = w.finish();
        assert_eq!(
            text,
            "# HELP x_total Things\\nseen \\\\ here\n# TYPE x_total counter\n\
             x_total{a=\"q\\\"u\\\\o\\nte\"} 3\n\
             # HELP lat_seconds Latency\n# TYPE lat_seconds histogram\n\
             lat_seconds_bucket{m=\"a\",le=\"0.5\"} 1\n\
             lat_seconds_bucket{m=\"a\",le=\"1\"} 3\n\
             lat_seconds_bucket{m=\"a\",le=\"+Inf\"} 6\n\
             lat_seconds_sum{m=\"a\"} 9.5\n\
             lat_seconds_count{m=\"a\"} 6\n"
        );
    }

    #[test]
    fn numbers_in_go_syntax() {
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(12.5), "12.5");
        assert_eq!(number(1e-9).parse::<f64>().ok(), Some(1e-9));
    }

    #[test]
    fn names() {
        assert!(valid_name("clawline_turns_total", false));
        assert!(valid_name("a:b", false));
        assert!(!valid_name("a:b", true));
        assert!(!valid_name("9x", false));
        assert!(!valid_name("", true));
    }
}
