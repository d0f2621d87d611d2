//! Header naming shared by both readers (operations.md §1.2/§1.3): blank names become `Unnamed: {i}`,
//! duplicates get `.1`, `.2` … in left-to-right order.

use std::collections::{HashMap, HashSet};

/// Turns raw header cells (`None` = blank) into unique column names.
pub fn unique_header(raw: Vec<Option<String>>) -> Vec<String> {
    let named: Vec<String> = raw
        .into_iter()
        .enumerate()
        .map(|(i, name)| name.unwrap_or_else(|| format!("Unnamed: {i}")))
        .collect();
    let mut taken: HashSet<String> = HashSet::with_capacity(named.len());
    let mut next_suffix: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::with_capacity(named.len());
    for name in named {
        if taken.insert(name.clone()) {
            out.push(name);
            continue;
        }
        let mut k = next_suffix.get(&name).copied().unwrap_or(1);
        let candidate = loop {
            let candidate = format!("{name}.{k}");
            k += 1;
            if !taken.contains(&candidate) {
                break candidate;
            }
        };
        next_suffix.insert(name, k);
        taken.insert(candidate.clone());
        out.push(candidate);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(raw: &[Option<&str>]) -> Vec<String> {
        unique_header(raw.iter().map(|n| n.map(str::to_string)).collect())
    }

    #[test]
    fn blanks_and_duplicates() {
        let cases: Vec<(Vec<Option<&str>>, Vec<&str>)> = vec![
            (vec![Some("a"), Some("a"), Some("a")], vec!["a", "a.1", "a.2"]),
            (vec![None, Some("x"), None], vec!["Unnamed: 0", "x", "Unnamed: 2"]),
            (vec![Some("a"), Some("a.1"), Some("a")], vec!["a", "a.1", "a.2"]),
            (vec![Some("a"), Some("a"), Some("a.1")], vec!["a", "a.1", "a.1.1"]),
            (vec![Some("Unnamed: 1"), None], vec!["Unnamed: 1", "Unnamed: 1.1"]),
            (vec![Some(" a"), Some("a")], vec![" a", "a"]),
            (vec![], vec![]),
        ];
        for (raw, want) in cases {
            assert_eq!(names(&raw), want, "raw {raw:?}");
        }
    }
}
