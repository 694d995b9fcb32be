//! A strict reader of the Prometheus text exposition format (version 0.0.4), for tests of
//! `/metrics`: it refuses what a real Prometheus server would refuse, rather than guessing.
//!
//! Checked: `# HELP` / `# TYPE` syntax and at most one of each per family; a family's `# TYPE`
//! before its samples; a family's samples together; metric and label names; label values
//! quoted with only `\\`, `\"` and `\n` escapes; no label twice on a line; values and
//! timestamps that parse; no sample line twice; histograms with `le` on every bucket, a
//! `+Inf` bucket, cumulative counts that never go down and `_count` equal to the `+Inf` bucket.
//! It does not check that the numbers mean anything: that is the test's job.

use std::collections::{BTreeMap, HashMap, HashSet};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One family: its type, help and samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Family {
    pub kind: String,
    pub help: Option<String>,
    pub samples: Vec<Sample>,
}

/// A parsed exposition, families by name.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    pub families: BTreeMap<String, Family>,
}

impl Exposition {
    /// The value of the sample `name` whose labels include every pair of `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.families.values().flat_map(|f| &f.samples).find_map(|s| {
            (s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
                .then_some(s.value)
        })
    }
}

fn valid_name(name: &str, label: bool) -> bool {
    let mut chars = name.chars();
    let first = |c: char| c.is_ascii_alphabetic() || c == '_' || (!label && c == ':');
    let rest = |c: char| c.is_ascii_alphanumeric() || c == '_' || (!label && c == ':');
    chars.next().is_some_and(first) && chars.all(rest)
}

fn parse_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        s if s.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-')) => s.parse().ok(),
        _ => None,
    }
}

/// The family a sample belongs to: a histogram's `_bucket`, `_sum` and `_count` belong to it.
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && types.get(base).is_some_and(|t| t == "histogram" || t == "summary")
        {
            return base;
        }
    }
    name
}

fn parse_labels(s: &str, line: usize) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches(' ');
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or(format!("line {line}: a label without `=`"))?;
        let name = rest[..eq].trim();
        if !valid_name(name, true) {
            return Err(format!("line {line}: bad label name `{name}`"));
        }
        rest = rest[eq + 1..].trim_start_matches(' ');
        rest = rest.strip_prefix('"').ok_or(format!("line {line}: label `{name}` value is not quoted"))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("line {line}: label `{name}` value is not closed")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("line {line}: bad escape {other:?} in label `{name}`")),
                },
                Some((_, '\n')) => return Err(format!("line {line}: raw newline in label `{name}`")),
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("line {line}: label `{name}` twice"));
        }
        rest = rest[end + 1..].trim_start_matches(' ');
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err(format!("line {line}: expected `,` or `}}` after label `{name}`"));
        }
    }
}

/// Parses `text`, or says which line breaks which rule.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashSet<String> = HashSet::new();
    let mut closed: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut seen_lines: HashSet<(String, Vec<(String, String)>)> = HashSet::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = i + 1;
        if raw.is_empty() {
            continue;
        }
        if let Some(comment) = raw.strip_prefix('#') {
            let words: Vec<&str> = comment.trim_start().splitn(3, ' ').collect();
            match words.as_slice() {
                ["HELP", name, rest @ ..] => {
                    if !valid_name(name, false) {
                        return Err(format!("line {line}: bad metric name in HELP `{name}`"));
                    }
                    if !helps.insert(name.to_string()) {
                        return Err(format!("line {line}: second HELP for `{name}`"));
                    }
                    let help = rest.first().copied().unwrap_or_default().replace("\\n", "\n").replace("\\\\", "\\");
                    out.families.entry(name.to_string()).or_default().help = Some(help);
                }
                ["TYPE", name, kind] => {
                    if !valid_name(name, false) {
                        return Err(format!("line {line}: bad metric name in TYPE `{name}`"));
                    }
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(kind) {
                        return Err(format!("line {line}: unknown type `{kind}`"));
                    }
                    if types.insert(name.to_string(), kind.to_string()).is_some() {
                        return Err(format!("line {line}: second TYPE for `{name}`"));
                    }
                    if out.families.get(*name).is_some_and(|f| !f.samples.is_empty()) {
                        return Err(format!("line {line}: TYPE for `{name}` after its samples"));
                    }
                    out.families.entry(name.to_string()).or_default().kind = kind.to_string();
                }
                ["TYPE", ..] => return Err(format!("line {line}: malformed TYPE line")),
                _ => {}
            }
            continue;
        }
        let name_end = raw.find(['{', ' ']).ok_or(format!("line {line}: a sample without a value"))?;
        let name = &raw[..name_end];
        if !valid_name(name, false) {
            return Err(format!("line {line}: bad metric name `{name}`"));
        }
        let (labels, rest) = if raw[name_end..].starts_with('{') {
            parse_labels(&raw[name_end + 1..], line)?
        } else {
            (BTreeMap::new(), &raw[name_end..])
        };
        let mut parts = rest.split(' ').filter(|p| !p.is_empty());
        let value = parts.next().and_then(parse_float).ok_or(format!("line {line}: bad or missing value"))?;
        if let Some(ts) = parts.next()
            && ts.parse::<i64>().is_err()
        {
            return Err(format!("line {line}: bad timestamp `{ts}`"));
        }
        if parts.next().is_some() {
            return Err(format!("line {line}: text after the timestamp"));
        }
        let family = family_of(name, &types).to_string();
        if current.as_deref() != Some(family.as_str()) {
            if closed.contains(&family) {
                return Err(format!("line {line}: samples of `{family}` are not together"));
            }
            if let Some(prev) = current.replace(family.clone()) {
                closed.insert(prev);
            }
        }
        if !seen_lines.insert((name.to_string(), labels.clone().into_iter().collect())) {
            return Err(format!("line {line}: the same series twice"));
        }
        let entry = out.families.entry(family.clone()).or_default();
        if entry.kind.is_empty() {
            entry.kind = "untyped".into();
        }
        if entry.kind == "histogram" && name.ends_with("_bucket") && !labels.contains_key("le") {
            return Err(format!("line {line}: a histogram bucket without `le`"));
        }
        entry.samples.push(Sample { name: name.to_string(), labels, value });
    }
    for (name, family) in &out.families {
        if family.kind == "histogram" {
            check_histogram(name, family)?;
        }
    }
    Ok(out)
}

/// A histogram series' buckets (`le`, count) and its `_count`.
type Buckets = (Vec<(f64, f64)>, Option<f64>);

fn check_histogram(name: &str, family: &Family) -> Result<(), String> {
    let key = |s: &Sample| -> Vec<(String, String)> {
        s.labels.iter().filter(|(k, _)| k.as_str() != "le").map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    let mut series: BTreeMap<Vec<(String, String)>, Buckets> = BTreeMap::new();
    for s in &family.samples {
        let entry = series.entry(key(s)).or_default();
        if s.name.ends_with("_bucket") {
            let le = s.labels.get("le").and_then(|v| parse_float(v)).ok_or(format!("{name}: bad `le`"))?;
            entry.0.push((le, s.value));
        } else if s.name.ends_with("_count") {
            entry.1 = Some(s.value);
        }
    }
    for (labels, (buckets, count)) in series {
        let mut last = (f64::NEG_INFINITY, 0.0);
        for (le, v) in &buckets {
            if *le <= last.0 || *v < last.1 {
                return Err(format!("{name}{labels:?}: buckets out of order or not cumulative"));
            }
            last = (*le, *v);
        }
        if last.0 != f64::INFINITY {
            return Err(format!("{name}{labels:?}: no +Inf bucket"));
        }
        if count != Some(last.1) {
            return Err(format!("{name}{labels:?}: _count {count:?} is not the +Inf bucket {}", last.1));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_good_exposition() {
        let text = "# HELP a_total A thing\n# TYPE a_total counter\na_total{x=\"q\\\"\\\\\\n\",y=\"2\"} 3\n\
                    # TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3.5\nh_count 2\n";
        let e = parse(text).expect("parses");
        assert_eq!(e.value("a_total", &[("x", "q\"\\\n")]), Some(3.0));
        assert_eq!(e.families["h"].samples.len(), 4);
    }

    #[test]
    fn refuses_what_prometheus_refuses() {
        for bad in [
            "a 1\n# TYPE a counter\n",
            "# TYPE a counter\n# TYPE a gauge\n",
            "a{x=1} 1\n",
            "a{x=\"\\t\"} 1\n",
            "a{x=\"1\",x=\"2\"} 1\n",
            "a one\n",
            "a 1\nb 1\na{z=\"1\"} 2\n",
            "a 1\na 2\n",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_count 1\n",
            "9a 1\n",
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
    }
}
