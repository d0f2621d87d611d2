//! Intent classification (chatbot.md §4): the eight intents in their fixed order, the keyword/phrase
//! scoring reproduced from the reference, and the file-type context used by suggestions (§4.3).

use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// A request kind. The declaration order of the first eight is the tie-break order of §4.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    ExtractColumns,
    ConvertFormat,
    NormalizeData,
    GenerateSql,
    GenerateJson,
    SearchFilter,
    BindData,
    MapColumns,
    Unknown,
}

/// The eight classifiable intents in table order (ties go to the earlier one).
pub const INTENTS: [Intent; 8] = [
    Intent::ExtractColumns,
    Intent::ConvertFormat,
    Intent::NormalizeData,
    Intent::GenerateSql,
    Intent::GenerateJson,
    Intent::SearchFilter,
    Intent::BindData,
    Intent::MapColumns,
];

impl Intent {
    pub fn as_str(self) -> &'static str {
        match self {
            Intent::ExtractColumns => "extract_columns",
            Intent::ConvertFormat => "convert_format",
            Intent::NormalizeData => "normalize_data",
            Intent::GenerateSql => "generate_sql",
            Intent::GenerateJson => "generate_json",
            Intent::SearchFilter => "search_filter",
            Intent::BindData => "bind_data",
            Intent::MapColumns => "map_columns",
            Intent::Unknown => "unknown",
        }
    }

    /// Substring keywords of §4.1.
    pub fn keywords(self) -> &'static [&'static str] {
        match self {
            Intent::ExtractColumns => &["extract", "get", "select", "column", "field", "data from"],
            Intent::ConvertFormat => &["convert", "transform", "change to", "make it", "export as"],
            Intent::NormalizeData => {
                &["normalize", "clean", "standardize", "format", "trim", "uppercase", "lowercase"]
            }
            Intent::GenerateSql => &["sql", "insert", "database", "query", "statement", "generate sql"],
            Intent::GenerateJson => &["json", "generate json", "export json", "json format"],
            Intent::SearchFilter => &["search", "filter", "find", "query", "where", "lookup"],
            Intent::BindData => &["bind", "merge", "join", "combine", "link", "match"],
            Intent::MapColumns => &["map", "rename", "remap", "column mapping"],
            Intent::Unknown => &[],
        }
    }

    /// Phrase patterns of §4.1 as regular expressions over the lower-cased text (unanchored).
    fn pattern_sources(self) -> &'static [&'static str] {
        match self {
            Intent::ExtractColumns => &[
                r"extract (column|columns|field|fields)",
                r"get (the )?(column|columns|field|fields|data)",
                r"select (column|columns|field|fields)",
                r"pull (out )?(column|columns|field|fields)",
            ],
            Intent::ConvertFormat => &[
                r"convert (to |into )?(excel|csv|json)",
                r"(transform|change) (to |into )?(excel|csv|json)",
                r"export (as |to )?(excel|csv|json)",
            ],
            Intent::NormalizeData => &[
                r"(normalize|clean|standardize) (the )?data",
                r"(trim|uppercase|lowercase|format) (the )?(data|values)",
                r"remove (duplicates|spaces)",
            ],
            Intent::GenerateSql => &[
                r"generate (sql|insert|queries)",
                r"create (sql|insert) (statement|statements|queries)",
                r"(sql|database) insert",
            ],
            Intent::GenerateJson => {
                &[r"generate json", r"export (as |to )?json", r"create json", r"convert to json"]
            }
            Intent::SearchFilter => &[
                r"(search|filter|find) (for |where )",
                r"(lookup|query) (data|records)",
                r"show (me )?(only |records where)",
            ],
            Intent::BindData => {
                &[r"(bind|merge|join|combine) (with |data)", r"(link|match) (with |data from)"]
            }
            Intent::MapColumns => {
                &[r"(map|rename|remap) (column|columns|field|fields)", r"change column (name|names)"]
            }
            Intent::Unknown => &[],
        }
    }

    /// Operations offered for this intent by `GET /chat/bot/operations` (§2.8, §4.1).
    pub fn operations(self) -> &'static [&'static str] {
        match self {
            Intent::ExtractColumns => &["excel/extract-columns-to-file"],
            Intent::ConvertFormat => &["csv/convert-to-excel", "json/generate"],
            Intent::NormalizeData => &["normalization/apply"],
            Intent::GenerateSql => &["sql/generate", "sql/generate-to-text"],
            Intent::GenerateJson => &["json/generate", "json/generate-with-template"],
            Intent::SearchFilter => &["excel/search", "csv/search"],
            Intent::BindData => &["excel/bind-single-key", "excel/bind-multi-key"],
            Intent::MapColumns => &["excel/map-columns"],
            Intent::Unknown => &[],
        }
    }

    fn index(self) -> usize {
        INTENTS.iter().position(|i| *i == self).unwrap_or(INTENTS.len())
    }

    fn patterns(self) -> &'static [Regex] {
        static COMPILED: OnceLock<Vec<Vec<Regex>>> = OnceLock::new();
        let all = COMPILED.get_or_init(|| {
            INTENTS
                .iter()
                .map(|i| {
                    i.pattern_sources()
                        .iter()
                        // The sources are constants covered by the unit tests, so this cannot fail at run time.
                        .filter_map(|p| Regex::new(p).ok())
                        .collect()
                })
                .collect()
        });
        all.get(self.index()).map(Vec::as_slice).unwrap_or(&[])
    }
}

impl std::fmt::Display for Intent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of classifying one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    pub intent: Intent,
    /// The winning score (0.0 for `unknown`).
    pub confidence: f64,
    /// Every intent's score in table order, in tenths (exact integers, so ties compare exactly).
    pub scores: [(Intent, u8); 8],
}

impl Classification {
    pub fn is_known(&self) -> bool {
        self.intent != Intent::Unknown
    }

    /// `{"type", "confidence"}` as sent in `/message` responses.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"type": self.intent.as_str(), "confidence": self.confidence})
    }
}

/// Score of one intent in tenths: `min(6, 3·k) + 4·p`, capped at 10 (§4.2 step 2, `score × 10`).
fn score_tenths(intent: Intent, text: &str) -> u8 {
    let k = intent.keywords().iter().filter(|kw| text.contains(*kw)).count();
    let p = intent.patterns().iter().any(|re| re.is_match(text));
    let score = (3 * k).min(6) + if p { 4 } else { 0 };
    score.min(10) as u8
}

/// §4.2: lower-case and trim, score every intent, highest wins, earlier intent wins ties, all-zero is
/// `unknown` with confidence 0.0. There is no minimum confidence.
pub fn classify(message: &str) -> Classification {
    let text = message.trim().to_lowercase();
    let scores = INTENTS.map(|i| (i, score_tenths(i, &text)));
    let mut best = (Intent::Unknown, 0u8);
    for (intent, score) in scores {
        // Strictly greater: the first intent with the maximum keeps it.
        if score > best.1 {
            best = (intent, score);
        }
    }
    Classification { intent: best.0, confidence: f64::from(best.1) / 10.0, scores }
}

/// The kind of input file suggestions are built for (§4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileType {
    Xlsx,
    Csv,
    Json,
}

impl FileType {
    pub fn as_str(self) -> &'static str {
        match self {
            FileType::Xlsx => "xlsx",
            FileType::Csv => "csv",
            FileType::Json => "json",
        }
    }

    /// By extension: `.xlsx`/`.xls` → xlsx, `.csv` → csv, `.json` → json.
    pub fn from_file_name(name: &str) -> Option<FileType> {
        let lower = name.to_ascii_lowercase();
        let ext = lower.rsplit_once('.').map(|(_, e)| e)?;
        match ext {
            "xlsx" | "xls" => Some(FileType::Xlsx),
            "csv" => Some(FileType::Csv),
            "json" => Some(FileType::Json),
            _ => None,
        }
    }

    fn from_word(word: &str) -> Option<FileType> {
        match word {
            "excel" | "xlsx" => Some(FileType::Xlsx),
            "csv" => Some(FileType::Csv),
            "json" => Some(FileType::Json),
            _ => None,
        }
    }
}

/// §4.3: the latest upload's extension decides; without an upload the text decides when it names exactly
/// one format as the *source*, else `xlsx` (reference default). A format word right after `to`, `into` or
/// `as` is a target; one right after `from` is an explicit source and outranks the others.
pub fn file_type(latest_upload: Option<&str>, text: &str) -> FileType {
    if let Some(kind) = latest_upload.and_then(FileType::from_file_name) {
        return kind;
    }
    source_format_in_text(text).unwrap_or(FileType::Xlsx)
}

/// The source format named by the text, if exactly one (see [`file_type`]).
pub fn source_format_in_text(text: &str) -> Option<FileType> {
    static WORDS: OnceLock<Option<Regex>> = OnceLock::new();
    let re =
        WORDS.get_or_init(|| Regex::new(r"(?i)(?:\b(to|into|as|from)\s+)?\b(excel|xlsx|csv|json)\b").ok());
    let re = re.as_ref()?;
    let mut explicit: Vec<FileType> = Vec::new();
    let mut others: Vec<FileType> = Vec::new();
    for caps in re.captures_iter(text) {
        let Some(kind) = caps.get(2).and_then(|m| FileType::from_word(&m.as_str().to_lowercase())) else {
            continue;
        };
        match caps.get(1).map(|m| m.as_str().to_lowercase()).as_deref() {
            Some("from") => push_unique(&mut explicit, kind),
            Some(_) => {}
            None => push_unique(&mut others, kind),
        }
    }
    let pick = if explicit.is_empty() { others } else { explicit };
    match pick.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

fn push_unique(list: &mut Vec<FileType>, kind: FileType) {
    if !list.contains(&kind) {
        list.push(kind);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Intent::*;

    fn score_of(c: &Classification, intent: Intent) -> u8 {
        c.scores.iter().find(|(i, _)| *i == intent).map(|(_, s)| *s).unwrap()
    }

    #[test]
    fn every_pattern_compiles() {
        for intent in INTENTS {
            assert_eq!(intent.patterns().len(), intent.pattern_sources().len(), "{intent}");
        }
    }

    /// The worked examples of §4.2: text, expected intent, expected confidence (tenths), and every
    /// non-zero score (tenths).
    #[test]
    fn worked_examples_of_the_spec() {
        #[rustfmt::skip]
        type Case<'a> = (&'a str, Intent, u8, &'a [(Intent, u8)]);
        let cases: &[Case] = &[
            ("extract columns: name, email, phone", ExtractColumns, 10, &[(ExtractColumns, 10)]),
            ("get the name and email columns", ExtractColumns, 6, &[(ExtractColumns, 6)]),
            ("select customer_id and amount fields", ExtractColumns, 6, &[(ExtractColumns, 6)]),
            ("I need some columns", ExtractColumns, 3, &[(ExtractColumns, 3)]),
            ("extract and select columns: name, email", ExtractColumns, 10, &[(ExtractColumns, 10)]),
            ("convert to Excel", ConvertFormat, 7, &[(ConvertFormat, 7)]),
            ("convert to JSON", ConvertFormat, 7, &[(ConvertFormat, 7), (GenerateJson, 7)]),
            ("export as JSON", ConvertFormat, 7, &[(ConvertFormat, 7), (GenerateJson, 7)]),
            (
                "convert to JSON format",
                GenerateJson,
                10,
                &[(GenerateJson, 10), (ConvertFormat, 7), (NormalizeData, 3)],
            ),
            ("generate JSON", GenerateJson, 10, &[(GenerateJson, 10)]),
            ("convert to uppercase", ConvertFormat, 3, &[(ConvertFormat, 3), (NormalizeData, 3)]),
            ("normalize data - uppercase and trim", NormalizeData, 10, &[(NormalizeData, 10)]),
            ("clean the data", NormalizeData, 7, &[(NormalizeData, 7)]),
            ("standardize phone numbers", NormalizeData, 3, &[(NormalizeData, 3)]),
            ("generate SQL for table users", GenerateSql, 10, &[(GenerateSql, 10)]),
            ("create insert statements", GenerateSql, 10, &[(GenerateSql, 10)]),
            ("search for active customers", SearchFilter, 7, &[(SearchFilter, 7)]),
            ("filter data where amount > 1000", SearchFilter, 6, &[(SearchFilter, 6)]),
            ("bind data from another file", BindData, 7, &[(BindData, 7), (ExtractColumns, 3)]),
            ("merge with customer_info.xlsx", BindData, 7, &[(BindData, 7)]),
            ("rename columns", MapColumns, 7, &[(MapColumns, 7), (ExtractColumns, 3)]),
            ("map column names", MapColumns, 7, &[(MapColumns, 7), (ExtractColumns, 3)]),
            ("do something random", Unknown, 0, &[]),
            ("xyz abc 123", Unknown, 0, &[]),
            ("Hello bot!", Unknown, 0, &[]),
            ("yes", Unknown, 0, &[]),
        ];
        for (text, intent, conf, nonzero) in cases {
            let c = classify(text);
            assert_eq!(c.intent, *intent, "{text}: {:?}", c.scores);
            assert_eq!(c.confidence, f64::from(*conf) / 10.0, "{text}");
            let actual: Vec<(Intent, u8)> = c.scores.iter().copied().filter(|(_, s)| *s > 0).collect();
            let mut expected = nonzero.to_vec();
            expected.sort_by_key(|(i, _)| i.index());
            assert_eq!(actual, expected, "{text}");
        }
    }

    #[test]
    fn confidence_takes_only_the_documented_values() {
        let texts = [
            "column",             // 1 keyword: 0.3
            "extract column",     // 2 keywords + pattern: 1.0
            "convert to csv",     // 1 keyword + pattern: 0.7
            "extract get select", // 3 keywords capped: 0.6
            "remove duplicates",  // pattern only: 0.4
        ];
        let expected = [0.3, 1.0, 0.7, 0.6, 0.4];
        for (t, e) in texts.iter().zip(expected) {
            assert_eq!(classify(t).confidence, e, "{t}");
        }
    }

    #[test]
    fn pattern_without_keyword_scores_point_four() {
        // "remove duplicates" hits a normalize pattern but none of its keywords.
        let c = classify("remove duplicates");
        assert_eq!(c.intent, NormalizeData);
        assert_eq!(score_of(&c, NormalizeData), 4);
    }

    #[test]
    fn keywords_count_inside_longer_words_and_once_each() {
        // `get` inside `target`, `map` inside `remap`; `column` counted once although it appears twice.
        let c = classify("target");
        assert_eq!((c.intent, c.confidence), (ExtractColumns, 0.3));
        let c = classify("remap");
        assert_eq!(score_of(&c, MapColumns), 6); // `map` and `remap`
        let c = classify("column column column");
        assert_eq!(score_of(&c, ExtractColumns), 3);
    }

    #[test]
    fn ties_go_to_the_earlier_intent() {
        // query is a keyword of both generate_sql and search_filter.
        let c = classify("query");
        assert_eq!(score_of(&c, GenerateSql), 3);
        assert_eq!(score_of(&c, SearchFilter), 3);
        assert_eq!(c.intent, GenerateSql);
        // bind (7th) vs map (8th): `match` and `map` → 0.3 each, bind wins.
        let c = classify("match map");
        assert_eq!(c.intent, BindData);
        // A later intent wins only with a strictly higher score.
        let c = classify("rename fields"); // map 0.7 vs extract 0.3
        assert_eq!(c.intent, MapColumns);
    }

    #[test]
    fn classification_is_case_insensitive_and_trims() {
        let a = classify("EXTRACT COLUMNS: NAME, EMAIL");
        let b = classify("extract columns: name, email");
        let c = classify("  Extract Columns: Name, Email  ");
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert_eq!(a.intent, ExtractColumns);
        assert_eq!(a.confidence, 1.0);
    }

    #[test]
    fn acceptance_163_and_164_confidence_ordering() {
        assert!(
            classify("extract columns: name, email").confidence > classify("I need some columns").confidence
        );
        assert!(classify("extract and select columns: name, email").confidence > 0.7);
    }

    #[test]
    fn every_intent_is_reachable_with_full_confidence() {
        let texts = [
            ("extract columns a", ExtractColumns),
            ("please convert into csv and transform", ConvertFormat),
            ("normalize the data and trim", NormalizeData),
            ("generate sql insert", GenerateSql),
            ("generate json format", GenerateJson),
            ("search where x and filter", SearchFilter),
            ("merge data and join", BindData),
            ("rename columns with a remap", MapColumns),
        ];
        for (text, intent) in texts {
            let c = classify(text);
            assert_eq!((c.intent, c.confidence), (intent, 1.0), "{text}: {:?}", c.scores);
        }
    }

    #[test]
    fn operations_per_intent() {
        assert_eq!(ExtractColumns.operations(), ["excel/extract-columns-to-file"]);
        assert_eq!(SearchFilter.operations(), ["excel/search", "csv/search"]);
        assert!(Unknown.operations().is_empty());
        assert_eq!(INTENTS.map(|i| i.as_str()).len(), 8);
    }

    #[test]
    fn file_type_context() {
        #[rustfmt::skip]
        let cases: &[(Option<&str>, &str, FileType)] = &[
            (Some("sales.csv"), "convert to excel", FileType::Csv),
            (Some("SALES.XLSX"), "convert csv to json", FileType::Xlsx),
            (Some("old.xls"), "anything", FileType::Xlsx),
            (Some("data.json"), "search where a = 1", FileType::Json),
            (None, "convert csv to excel", FileType::Csv),
            (None, "convert excel to csv", FileType::Xlsx),
            (None, "convert json into xlsx", FileType::Json),
            (None, "convert to excel", FileType::Xlsx),
            (None, "search the csv file", FileType::Csv),
            (None, "generate json from csv", FileType::Csv),
            (None, "csv and json", FileType::Xlsx), // two sources named: default
            (None, "hello", FileType::Xlsx),
            (Some("notes.txt"), "search the csv", FileType::Csv), // unknown extension: the text decides
        ];
        for (upload, text, expected) in cases {
            assert_eq!(file_type(*upload, text), *expected, "{upload:?} {text}");
        }
    }
}
