//! The 14 executable workflow operations as the bot sees them (chat-workflows.md §9.4): description,
//! output kind and arguments with types, defaults and aliases. Feeds the `catalog` of
//! `GET /chat/bot/operations`, the parameter syntax (§6.4) and placeholder detection.

use serde_json::{json, Map, Value};

/// The value kind of an argument; drives the parameter-syntax conversion (§6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgType {
    String,
    Boolean,
    Integer,
    List,
    Object,
    /// `template` of `json/generate-with-template`: an object or a string.
    ObjectOrString,
}

impl ArgType {
    pub fn as_str(self) -> &'static str {
        match self {
            ArgType::String => "string",
            ArgType::Boolean => "boolean",
            ArgType::Integer => "integer",
            ArgType::List => "array",
            ArgType::Object => "object",
            ArgType::ObjectOrString => "object|string",
        }
    }
}

#[derive(Debug)]
pub struct ArgSpec {
    pub name: &'static str,
    pub ty: ArgType,
    pub required: bool,
    /// JSON text of the executor default (`null` when there is none).
    pub default: &'static str,
    pub aliases: &'static [&'static str],
}

#[derive(Debug)]
pub struct OperationSpec {
    pub name: &'static str,
    pub description: &'static str,
    /// `xlsx`, `csv`, `json`, `sql` or `none`.
    pub output: &'static str,
    pub arguments: &'static [ArgSpec],
}

const fn arg(name: &'static str, ty: ArgType, default: &'static str) -> ArgSpec {
    ArgSpec { name, ty, required: false, default, aliases: &[] }
}

const fn required(name: &'static str, ty: ArgType) -> ArgSpec {
    ArgSpec { name, ty, required: true, default: "null", aliases: &[] }
}

const fn aliased(
    name: &'static str,
    ty: ArgType,
    default: &'static str,
    aliases: &'static [&'static str],
) -> ArgSpec {
    ArgSpec { name, ty, required: false, default, aliases }
}

const OUTPUT_FILENAME: ArgSpec = aliased("output_filename", ArgType::String, "null", &["output_file"]);

use ArgType::*;

/// Every executable operation, in the order of chat-workflows.md §9.4.
pub const OPERATIONS: &[OperationSpec] = &[
    OperationSpec {
        name: "excel/extract-columns",
        description: "Extract columns and their values (data only, no file)",
        output: "none",
        arguments: &[
            arg("columns", List, "[]"),
            arg("remove_duplicates", Boolean, "false"),
            arg("include_statistics", Boolean, "true"),
        ],
    },
    OperationSpec {
        name: "excel/extract-columns-to-file",
        description: "Extract specific columns to a new file",
        output: "xlsx",
        arguments: &[required("columns", List), arg("remove_duplicates", Boolean, "false"), OUTPUT_FILENAME],
    },
    OperationSpec {
        name: "excel/map-columns",
        description: "Rename/map columns",
        output: "xlsx",
        arguments: &[
            arg("mapping", Object, "null"),
            arg("column_mapping", Object, "null"),
            arg("keep_unmapped", Boolean, "true"),
            OUTPUT_FILENAME,
        ],
    },
    OperationSpec {
        name: "excel/bind-single-key",
        description: "Bind data from another file on one key column",
        output: "xlsx",
        arguments: &[
            required("bind_file", String),
            ArgSpec {
                name: "comparison_column",
                ty: String,
                required: true,
                default: "null",
                aliases: &["key_column"],
            },
            aliased("bind_columns", List, "[]", &["source_columns"]),
            arg("source_sheet", String, "null"),
            arg("bind_sheet", String, "null"),
            OUTPUT_FILENAME,
        ],
    },
    OperationSpec {
        name: "excel/bind-multi-key",
        description: "Bind data from another file on several key columns",
        output: "xlsx",
        arguments: &[
            required("bind_file", String),
            aliased("comparison_columns", List, "[]", &["key_columns"]),
            aliased("bind_columns", List, "[]", &["source_columns"]),
            OUTPUT_FILENAME,
        ],
    },
    OperationSpec {
        name: "excel/search",
        description: "Search and filter data",
        output: "xlsx",
        arguments: &[
            required("conditions", List),
            arg("logic", String, "\"AND\""),
            arg("output_format", String, "\"xlsx\""),
            arg("match_all", Boolean, "null"),
            OUTPUT_FILENAME,
        ],
    },
    OperationSpec {
        name: "csv/search",
        description: "Search and filter CSV data",
        output: "csv",
        arguments: &[
            required("conditions", List),
            arg("logic", String, "\"AND\""),
            arg("output_format", String, "\"csv\""),
            arg("match_all", Boolean, "null"),
            OUTPUT_FILENAME,
        ],
    },
    OperationSpec {
        name: "csv/convert-to-excel",
        description: "Convert CSV to Excel format",
        output: "xlsx",
        arguments: &[arg("sheet_name", String, "\"Sheet1\""), OUTPUT_FILENAME],
    },
    OperationSpec {
        name: "normalization/apply",
        description: "Apply data normalization rules",
        output: "xlsx",
        arguments: &[
            required("normalizations", List),
            arg("return_report", Boolean, "true"),
            OUTPUT_FILENAME,
        ],
    },
    OperationSpec {
        name: "sql/generate",
        description: "Generate SQL INSERT statements",
        output: "sql",
        arguments: &[
            arg("table_name", String, "\"data\""),
            arg("column_mapping", Object, "{}"),
            arg("database_type", String, "\"postgresql\""),
            arg("auto_increment", Object, "{}"),
            arg("template", String, "null"),
            arg("batch_size", Integer, "1000"),
            arg("include_transaction", Boolean, "true"),
            arg("columns", List, "[]"),
            OUTPUT_FILENAME,
        ],
    },
    OperationSpec {
        name: "sql/generate-to-text",
        description: "Generate SQL INSERT statements as text",
        output: "sql",
        arguments: &[
            arg("table_name", String, "\"data\""),
            arg("columns", List, "[]"),
            arg("column_mapping", Object, "{}"),
            arg("database_type", String, "\"postgresql\""),
            arg("auto_increment", Object, "{}"),
            arg("remove_duplicates", Boolean, "false"),
            OUTPUT_FILENAME,
        ],
    },
    OperationSpec {
        name: "sql/generate-custom-to-text",
        description: "Generate SQL from a custom template",
        output: "sql",
        arguments: &[
            required("template", String),
            arg("columns", List, "[]"),
            arg("column_mapping", Object, "{}"),
            arg("auto_increment", Object, "{}"),
            OUTPUT_FILENAME,
        ],
    },
    OperationSpec {
        name: "json/generate",
        description: "Generate JSON output",
        output: "json",
        arguments: &[
            arg("columns", List, "[]"),
            arg("column_mapping", Object, "{}"),
            aliased("pretty_print", Boolean, "true", &["pretty"]),
            arg("null_handling", String, "\"include\""),
            aliased("array_wrapper", Boolean, "true", &["array_format"]),
            OUTPUT_FILENAME,
        ],
    },
    OperationSpec {
        name: "json/generate-with-template",
        description: "Generate JSON from a template",
        output: "json",
        arguments: &[
            required("template", ObjectOrString),
            arg("column_mapping", Object, "{}"),
            arg("aggregation_mode", String, "\"array\""),
            arg("pretty_print", Boolean, "true"),
            OUTPUT_FILENAME,
        ],
    },
];

pub fn operation(name: &str) -> Option<&'static OperationSpec> {
    OPERATIONS.iter().find(|o| o.name == name)
}

/// The argument of `operation` named `key` directly or through an alias.
pub fn find_argument(operation_name: &str, key: &str) -> Option<&'static ArgSpec> {
    operation(operation_name)?.arguments.iter().find(|a| a.name == key || a.aliases.contains(&key))
}

/// The additive `catalog` object of `GET /chat/bot/operations`: every executable operation with its
/// description, output kind and arguments.
pub fn catalog_json() -> Value {
    let mut out = Map::new();
    for op in OPERATIONS {
        let arguments: Vec<Value> = op
            .arguments
            .iter()
            .map(|a| {
                json!({
                    "name": a.name,
                    "type": a.ty.as_str(),
                    "required": a.required,
                    "default": serde_json::from_str::<Value>(a.default).unwrap_or(Value::Null),
                    "aliases": a.aliases,
                })
            })
            .collect();
        out.insert(
            op.name.to_string(),
            json!({"description": op.description, "output": op.output, "arguments": arguments}),
        );
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fourteen_operations_with_parseable_defaults() {
        assert_eq!(OPERATIONS.len(), 14);
        for op in OPERATIONS {
            for a in op.arguments {
                assert!(serde_json::from_str::<Value>(a.default).is_ok(), "{} {}", op.name, a.name);
                assert!(!(a.required && a.default != "null"), "{} {}", op.name, a.name);
            }
            assert!(["xlsx", "csv", "json", "sql", "none"].contains(&op.output));
        }
        let names: std::collections::HashSet<_> = OPERATIONS.iter().map(|o| o.name).collect();
        assert_eq!(names.len(), 14);
    }

    #[test]
    fn every_listed_intent_operation_is_executable() {
        for intent in super::super::intent::INTENTS {
            for op in intent.operations() {
                assert!(operation(op).is_some(), "{op}");
            }
        }
    }

    #[test]
    fn aliases_resolve_to_canonical_arguments() {
        assert_eq!(
            find_argument("excel/bind-single-key", "key_column").map(|a| a.name),
            Some("comparison_column")
        );
        assert_eq!(
            find_argument("excel/bind-multi-key", "key_columns").map(|a| a.name),
            Some("comparison_columns")
        );
        assert_eq!(find_argument("json/generate", "array_format").map(|a| a.name), Some("array_wrapper"));
        assert_eq!(
            find_argument("csv/convert-to-excel", "output_file").map(|a| a.name),
            Some("output_filename")
        );
        assert!(find_argument("csv/convert-to-excel", "columns").is_none());
        assert!(find_argument("nope/op", "columns").is_none());
    }

    #[test]
    fn catalog_shape() {
        let c = catalog_json();
        let obj = c.as_object().unwrap();
        assert_eq!(obj.len(), 14);
        let sql = &c["sql/generate"];
        assert_eq!(sql["output"], "sql");
        let table = sql["arguments"].as_array().unwrap().iter().find(|a| a["name"] == "table_name").unwrap();
        assert_eq!(table["default"], "data");
        assert_eq!(table["type"], "string");
        assert_eq!(table["required"], false);
        let cols = &c["excel/extract-columns-to-file"]["arguments"][0];
        assert_eq!(cols["name"], "columns");
        assert_eq!(cols["required"], true);
        assert_eq!(c["excel/extract-columns"]["output"], "none");
    }
}
