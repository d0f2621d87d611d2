//! Names in the chat layer: participant names (chat-workflows.md §6), stored upload names (§5.3 with its
//! IMPROVE), and step output names (§5.5).

use std::path::Path;

use rand::seq::IndexedRandom;
use rand::Rng;

use super::ChatError;
use crate::table::names::{sanitize_filename, shorten_stem};

const SEA: [&str; 20] = [
    "BlueWhale",
    "Dolphin",
    "Seahorse",
    "Octopus",
    "Jellyfish",
    "Starfish",
    "SeaTurtle",
    "Shark",
    "Manta",
    "Orca",
    "Penguin",
    "Seal",
    "Walrus",
    "Crab",
    "Lobster",
    "Clownfish",
    "Barracuda",
    "Swordfish",
    "Marlin",
    "Tuna",
];
const LAND: [&str; 20] = [
    "Tiger", "Lion", "Elephant", "Giraffe", "Zebra", "Panda", "Koala", "Kangaroo", "Fox", "Wolf", "Bear",
    "Deer", "Rabbit", "Squirrel", "Otter", "Lynx", "Cheetah", "Leopard", "Jaguar", "Panther",
];
const CELESTIAL: [&str; 20] = [
    "Orion",
    "Andromeda",
    "Sirius",
    "Vega",
    "Polaris",
    "Cassiopeia",
    "Pegasus",
    "Draco",
    "Phoenix",
    "Cygnus",
    "Ceres",
    "Vesta",
    "Pallas",
    "Juno",
    "Iris",
    "Flora",
    "Metis",
    "Hygeia",
    "Parthenos",
    "Victoria",
];

/// Regeneration attempts before a duplicate participant name is accepted.
const NAME_ATTEMPTS: usize = 20;

/// The names of a theme (`random` = all 60).
pub fn theme_names(theme: &str) -> Vec<&'static str> {
    match theme {
        "sea" => SEA.to_vec(),
        "land" => LAND.to_vec(),
        "celestial" => CELESTIAL.to_vec(),
        _ => SEA.iter().chain(LAND.iter()).chain(CELESTIAL.iter()).copied().collect(),
    }
}

/// `{Name}-{NNNN}`, regenerated while `in_use` says the name is taken (at most 20 attempts).
pub fn participant_name(
    theme: &str,
    mut in_use: impl FnMut(&str) -> Result<bool, ChatError>,
) -> Result<String, ChatError> {
    let names = theme_names(theme);
    let mut rng = rand::rng();
    let mut candidate = String::new();
    for _ in 0..NAME_ATTEMPTS {
        let name = names.choose(&mut rng).copied().unwrap_or("Orion");
        candidate = format!("{name}-{}", rng.random_range(1000..=9999));
        if !in_use(&candidate)? {
            break;
        }
    }
    Ok(candidate)
}

/// Splits off the last extension like Python's `os.path.splitext`.
pub fn split_ext(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if name[..i].chars().any(|c| c != '.') => (&name[..i], &name[i..]),
        _ => (name, ""),
    }
}

/// The stored name of an upload (§5.3): the service-wide sanitizer, or `file{ext}` when nothing of the stem
/// survives; 422 `Invalid filename` when no extension survives either. The extension is what follows the
/// last dot of the last path component, even when only dots precede it (`....csv` → `file.csv`), and the
/// stem is shortened like every name the service stores (a 10 KB client name must not reach the disk).
pub fn upload_name(client_name: &str) -> Result<String, ChatError> {
    let last = client_name.rsplit(['/', '\\']).next().unwrap_or(client_name);
    let (stem, ext) = match last.rfind('.') {
        Some(i) => (&last[..i], sanitize_filename(&last[i..])),
        None => (last, String::new()),
    };
    if !sanitize_filename(stem).is_empty() {
        let whole = sanitize_filename(client_name);
        let (whole_stem, whole_ext) = split_ext(&whole);
        return Ok(format!("{}{whole_ext}", shorten_stem(whole_stem)));
    }
    if ext.is_empty() {
        return Err(ChatError::validation("Invalid filename"));
    }
    Ok(format!("file.{ext}"))
}

/// The lower-case extension with its dot (`.xlsx`), or `""`.
pub fn extension_of(name: &str) -> String {
    split_ext(name).1.to_ascii_lowercase()
}

/// `{stem}_{suffix}_{YYYYmmdd_HHMMSS}.{ext}` (UTC; §5.5), or `{stem}.{ext}` without a suffix.
pub fn step_output_name(input_name: &str, suffix: Option<&str>, ext: &str) -> String {
    let (stem, _) = split_ext(input_name);
    // Chained step names grow with each step; the cut keeps them under file-system limits.
    let stem = shorten_stem(stem);
    let stem = if stem.is_empty() { "file" } else { stem.as_str() };
    match suffix {
        Some(s) => format!("{stem}_{s}_{}.{ext}", chrono::Utc::now().format("%Y%m%d_%H%M%S")),
        None => format!("{stem}.{ext}"),
    }
}

/// A user `output_filename` (§5.5): sanitized, extension forced to `ext`; `None` when nothing survives.
pub fn user_output_name(requested: &str, ext: &str) -> Option<String> {
    let clean = sanitize_filename(requested);
    let (stem, _) = split_ext(&clean);
    let stem = shorten_stem(stem);
    (!stem.is_empty()).then(|| format!("{stem}.{ext}"))
}

/// `name`, or `name_1`, `name_2`, … (before the extension) when `folder` already holds it.
pub fn unique_in(folder: &Path, name: &str) -> String {
    if !folder.join(name).exists() {
        return name.to_string();
    }
    let (stem, ext) = split_ext(name);
    (1..)
        .map(|i| format!("{stem}_{i}{ext}"))
        .find(|candidate| !folder.join(candidate).exists())
        .unwrap_or_else(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_names_follow_the_spec_examples() {
        assert_eq!(upload_name("my file (1).xlsx").unwrap(), "my_file_1.xlsx");
        assert_eq!(upload_name("my report (v2).xlsx").unwrap(), "my_report_v2.xlsx");
        assert_eq!(upload_name("../../etc/passwd").unwrap(), "etc_passwd");
        assert_eq!(upload_name("Données.csv").unwrap(), "Donnees.csv");
        assert_eq!(upload_name("文件.xlsx").unwrap(), "file.xlsx");
        assert!(matches!(upload_name("文件"), Err(ChatError::Validation { .. })));
    }

    #[test]
    fn upload_names_take_the_last_dot_and_stay_short() {
        assert_eq!(upload_name("....csv").unwrap(), "file.csv");
        assert_eq!(upload_name(".xlsx").unwrap(), "file.xlsx");
        assert_eq!(upload_name("a/..  .csv").unwrap(), "file.csv");
        assert!(matches!(upload_name("...."), Err(ChatError::Validation { .. })));
        let long = upload_name(&format!("{}.csv", "x".repeat(10_000))).unwrap();
        assert_eq!(long, format!("{}.csv", "x".repeat(150)));
        let chained = step_output_name(&long, Some("extracted"), "xlsx");
        assert!(chained.len() < 200, "{chained}");
        assert_eq!(
            user_output_name(&"y".repeat(10_000), "json").unwrap(),
            format!("{}.json", "y".repeat(150))
        );
    }

    #[test]
    fn participant_names_are_themed_and_retried() {
        let name = participant_name("sea", |_| Ok(false)).unwrap();
        let (n, num) = name.split_once('-').unwrap();
        assert!(SEA.contains(&n));
        assert!((1000..=9999).contains(&num.parse::<u32>().unwrap()));
        let mut calls = 0;
        participant_name("random", |_| {
            calls += 1;
            Ok(calls < 3)
        })
        .unwrap();
        assert_eq!(calls, 3);
        assert_eq!(theme_names("random").len(), 60);
    }

    #[test]
    fn output_names() {
        let n = step_output_name("sales.csv", Some("extracted"), "xlsx");
        assert!(
            n.starts_with("sales_extracted_")
                && n.ends_with(".xlsx")
                && n.len() == "sales_extracted_20260301_021501.xlsx".len()
        );
        assert_eq!(step_output_name("sales.csv", None, "xlsx"), "sales.xlsx");
        assert_eq!(user_output_name("report.xlsx", "xlsx").unwrap(), "report.xlsx");
        assert_eq!(user_output_name("my report.csv", "json").unwrap(), "my_report.json");
        assert_eq!(user_output_name("..", "json"), None);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("r.xlsx"), b"x").unwrap();
        std::fs::write(dir.path().join("r_1.xlsx"), b"x").unwrap();
        assert_eq!(unique_in(dir.path(), "r.xlsx"), "r_2.xlsx");
        assert_eq!(unique_in(dir.path(), "s.xlsx"), "s.xlsx");
    }
}
