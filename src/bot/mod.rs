//! The chat bot (chatbot.md): intent classification, parameter extraction, suggested workflows, the
//! persisted conversation state machine and the handler chain. Everything here is pure; the service
//! layer persists the context, stores messages, publishes events and submits jobs.

#[cfg(test)]
mod acceptance;
pub mod catalog;
pub mod handler;
pub mod intent;
pub mod params;
pub mod replies;
pub mod service;
pub mod state;
pub mod suggest;
pub mod view;

use serde_json::{json, Map, Value};

pub use handler::{dispatch, BotInput, Effect, Environment, Reply, Status, WorkflowProblems};
pub use intent::{classify, Classification, FileType, Intent, INTENTS};
pub use state::{BotContext, BotState, JobOutcome, Step, Transition, TransitionError};

/// `data` of `GET /chat/bot/operations` (§2.8): the eight intents with their operations (keys in
/// alphabetical order), `total_intents`, and the additive `catalog` of all executable operations.
pub fn operations_catalogue() -> Value {
    let mut names: Vec<Intent> = INTENTS.to_vec();
    names.sort_by_key(|i| i.as_str());
    let mut operations = Map::new();
    for intent in names {
        operations.insert(intent.as_str().to_string(), json!(intent.operations()));
    }
    json!({
        "operations": Value::Object(operations),
        "total_intents": INTENTS.len(),
        "catalog": catalog::catalog_json(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acceptance_144_145_operations_catalogue() {
        let v = operations_catalogue();
        assert_eq!(v["total_intents"], 8);
        assert_eq!(
            v["operations"],
            json!({
                "bind_data": ["excel/bind-single-key", "excel/bind-multi-key"],
                "convert_format": ["csv/convert-to-excel", "json/generate"],
                "extract_columns": ["excel/extract-columns-to-file"],
                "generate_json": ["json/generate", "json/generate-with-template"],
                "generate_sql": ["sql/generate", "sql/generate-to-text"],
                "map_columns": ["excel/map-columns"],
                "normalize_data": ["normalization/apply"],
                "search_filter": ["excel/search", "csv/search"]
            })
        );
        let keys: Vec<&String> = v["operations"].as_object().unwrap().keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "intent keys serialise alphabetically");
        let text = serde_json::to_string(&v["operations"]).unwrap();
        assert!(text.find("bind_data").unwrap() < text.find("search_filter").unwrap());
        assert_eq!(v["catalog"].as_object().unwrap().len(), 14);
        assert!(v["catalog"].get("excel/extract-columns").is_some());
        assert!(v["catalog"].get("sql/generate-custom-to-text").is_some());
    }
}
