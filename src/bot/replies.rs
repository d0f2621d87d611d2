//! The bot's fixed reply texts (Markdown): welcome, help, cancel/decline, soft failures, upload, submission
//! and run outcome messages (chatbot.md §2.1, §3.4, §6, §7). Wording is free where the spec says so; the
//! markers clients and tests look for (`Welcome`, `help`, `✅`, `🚀`, `❌`, `uploaded successfully`) are not.

use super::state::Step;
use super::suggest;

/// The four suggestions sent with an unknown-intent soft failure (§2.2).
pub const UNKNOWN_SUGGESTIONS: [&str; 4] =
    ["extract columns", "convert to JSON", "generate SQL", "normalize data"];

const EXAMPLES: &str = "- `extract columns: name, email, phone`\n\
                        - `convert to JSON`\n\
                        - `generate SQL for table users`\n\
                        - `normalize data - uppercase and trim`";

pub fn welcome() -> String {
    "👋 **Welcome to Pycelize Chat Bot!**\n\n\
     I can help you process your Excel, CSV and JSON files:\n\
     - 📊 **Extract columns** into a new file\n\
     - 🔄 **Convert formats** (CSV → Excel, CSV/Excel → JSON)\n\
     - 🧹 **Normalize and clean** data (trim, change case, phone numbers, …)\n\
     - 🗄️ **Generate SQL INSERT statements**\n\
     - 🔍 **Search and filter** rows by conditions\n\
     - 🔗 **Bind/merge** data from another file\n\
     - 🏷️ **Rename/map columns**\n\n\
     **How it works:**\n\
     1. Upload a file\n\
     2. Describe what you want to do\n\
     3. Confirm the suggested workflow\n\
     4. Download the results\n\n\
     Type `help` at any time to see examples."
        .to_string()
}

pub fn help() -> String {
    format!(
        "📖 **Chat Bot help**\n\n\
         **Operations:** extract columns, convert formats (CSV → Excel, to JSON), normalize/clean data, generate \
         SQL INSERT statements, generate JSON, search/filter rows, bind/merge files, rename/map columns.\n\n\
         **Usage:**\n\
         1. Upload a file (CSV, Excel or JSON)\n\
         2. Describe the task in plain words\n\
         3. Reply `yes` to run the suggested workflow, `no` to discard it, or send `key: value` pairs to change it\n\
         4. Download the results when the run completes\n\n\
         **Examples:**\n{EXAMPLES}\n\n\
         Type `cancel` to drop the current request or stop a running workflow, and `help` to see this message again."
    )
}

pub fn unknown_intent() -> String {
    format!(
        "🤔 I'm not sure what you'd like to do. I can extract columns, convert formats, normalize data, generate \
         SQL or JSON, search/filter, bind files and rename columns.\n\n\
         Try for example:\n{EXAMPLES}\n\nType `help` for more."
    )
}

/// Dispatch found no handler for the input kind.
pub fn unhandled() -> String {
    "🤔 I'm not sure how to handle that. Type `help` to see what I can do.".to_string()
}

pub fn empty_message() -> String {
    "Please type a request, for example `extract columns: name, email`.".to_string()
}

pub fn cancelled() -> String {
    "✅ Operation cancelled. The pending workflow was discarded — tell me what you'd like to do next."
        .to_string()
}

pub fn cancellation_requested() -> String {
    "⏹️ Cancellation requested. The running workflow will stop before its next step.".to_string()
}

pub fn declined() -> String {
    "👍 Okay, I won't run that workflow. Tell me what you'd like to do instead, or type `help` for examples."
        .to_string()
}

pub fn modify_prompt(steps: &[Step]) -> String {
    format!(
        "✏️ What would you like to change?\n\n{}\n\n{}",
        suggest::workflow_block(steps),
        suggest::parameter_syntax_hint(&[])
    )
}

pub fn invalid_parameters() -> String {
    format!(
        "⚠️ I couldn't recognise any parameter of the pending workflow in that message. {}\n\nReply `yes` to run \
         the workflow as it is, or `no` to discard it.",
        suggest::parameter_syntax_hint(&[])
    )
}

pub fn parameters_updated() -> &'static str {
    "✅ Parameters updated."
}

pub fn no_uploaded_file() -> String {
    "📎 I need a file before I can run this workflow. Please upload a CSV, Excel or JSON file first."
        .to_string()
}

pub fn invalid_workflow(problems: &[String]) -> String {
    let mut s = String::from("⚠️ The workflow can't be run as it is:\n");
    for p in problems {
        s.push_str(&format!("- {p}\n"));
    }
    s.push_str("\nChange the parameters with `key: value` pairs, or describe a new request.");
    s
}

pub fn no_pending_workflow() -> String {
    "There is no pending workflow to confirm. Describe what you'd like to do (for example `extract columns: \
     name, email`) and I'll suggest one."
        .to_string()
}

pub fn already_submitted(job_id: &str) -> String {
    format!(
        "⏳ This workflow was already submitted (job `{job_id}`) and is still running. You'll see the results here \
         when it finishes."
    )
}

pub fn submitted() -> String {
    "🚀 Workflow submitted! It runs in the background — you'll get live progress updates here and a message \
     with the download links when it finishes."
        .to_string()
}

/// Upload reply when a workflow is waiting for this file.
pub fn upload_with_workflow(filename: &str, steps: &[Step], missing: &[String]) -> String {
    let lead = format!("✅ File '{filename}' uploaded successfully! I'll use it for the suggested workflow.");
    suggest::workflow_reply(&lead, steps, missing)
}

/// Upload reply while a workflow is already being confirmed: the new file replaces the previous input.
pub fn upload_replaces_input(filename: &str, steps: &[Step], missing: &[String]) -> String {
    let lead = format!(
        "✅ File '{filename}' uploaded successfully! The pending workflow will now use this file as its input."
    );
    suggest::workflow_reply(&lead, steps, missing)
}

/// Upload reply when nothing is pending.
pub fn upload_ask_what_to_do(filename: &str) -> String {
    format!(
        "✅ File '{filename}' uploaded successfully! What would you like to do with it? For example:\n\
         - `extract columns: name, email`\n\
         - `convert to JSON`\n\
         - `generate SQL for table users`\n\
         - `normalize data - uppercase and trim`"
    )
}

/// Completion message of a bot run (stored as `system`, §7 step 3).
pub fn run_completed(output_names: &[String]) -> String {
    let mut s = String::from("✅ Workflow completed successfully! Your files are ready for download");
    if output_names.is_empty() {
        s.push('.');
    } else {
        s.push_str(":\n");
        for name in output_names {
            s.push_str(&format!("- {name}\n"));
        }
        s.pop();
    }
    s
}

/// Failure text of a bot run: the job result's `bot_response` (starts with ❌, includes the error).
pub fn run_failed_response(error: &str) -> String {
    format!(
        "❌ Workflow execution failed: {error}\n\nYou can reply `yes` to retry, adjust the parameters with \
         `key: value` pairs, or rephrase your request."
    )
}

/// The `error` message stored for a failed run (§7 step 4).
pub fn run_failed_message(error: &str) -> String {
    format!("❌ Workflow execution failed: {error}")
}

/// The `error` message stored for a cancelled run (§7 step 5).
pub fn run_cancelled_message() -> String {
    "❌ Workflow execution failed: the workflow was cancelled by the user. Remaining steps were skipped."
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welcome_lists_capabilities_steps_and_help() {
        let w = welcome();
        for needle in [
            "Welcome",
            "Extract columns",
            "CSV",
            "Excel",
            "JSON",
            "Normalize",
            "SQL INSERT",
            "Search",
            "Bind",
            "Rename",
            "Upload a file",
            "Describe",
            "Confirm",
            "Download",
            "`help`",
        ] {
            assert!(w.contains(needle), "welcome lacks {needle}");
        }
    }

    #[test]
    fn help_mentions_examples_and_cancel() {
        let h = help();
        assert!(h.to_lowercase().contains("help"));
        for needle in [
            "extract columns: name, email, phone",
            "convert to JSON",
            "generate SQL for table users",
            "normalize data - uppercase and trim",
            "cancel",
        ] {
            assert!(h.contains(needle), "help lacks {needle}");
        }
    }

    #[test]
    fn markers() {
        assert!(cancelled().starts_with('✅') && cancelled().contains("cancelled"));
        assert!(submitted().starts_with('🚀') && submitted().contains("background"));
        let u = upload_ask_what_to_do("a.xlsx");
        assert!(u.starts_with('✅') && u.contains("'a.xlsx'") && u.contains("uploaded successfully"));
        assert!(upload_with_workflow("b.csv", &[], &[]).contains("'b.csv' uploaded successfully"));
        assert!(run_completed(&["x.xlsx".into()]).starts_with('✅'));
        assert!(run_completed(&[]).contains("ready for download"));
        let f = run_failed_response("boom");
        assert!(f.starts_with('❌') && f.contains("boom") && f.contains("retry"));
        assert_eq!(run_failed_message("boom"), "❌ Workflow execution failed: boom");
        assert!(invalid_workflow(&["step 1: bad".into()]).contains("- step 1: bad"));
    }
}
