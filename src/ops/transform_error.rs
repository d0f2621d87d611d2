//! The error type of the transform operations (normalization, binding, SQL and JSON generation).
//!
//! Intended HTTP mapping (the integrator folds this into the shared error):
//! `Validation` → 422 `ValidationError`, `Generation` → 400 `FileProcessingError`,
//! `Io` → 500 `InternalError` (message not echoed to the client).

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// A request field, column reference or option is invalid. HTTP 422; `details` goes to
    /// `data.details` of the error envelope.
    #[error("{message}")]
    Validation { message: String, details: Option<Value> },
    /// Generation failed for a reason the spec reports as 400 (`Failed to generate …`).
    #[error("{0}")]
    Generation(String),
    /// Writing generated output to its sink failed. HTTP 500.
    #[error("failed to write output: {0}")]
    Io(#[from] std::io::Error),
}

impl TransformError {
    /// A 422 without details.
    pub fn validation(message: impl Into<String>) -> TransformError {
        TransformError::Validation { message: message.into(), details: None }
    }

    /// A 422 with structured details (e.g. `missing_columns`, `available_columns`).
    pub fn validation_with(message: impl Into<String>, details: Value) -> TransformError {
        TransformError::Validation { message: message.into(), details: Some(details) }
    }

    /// The HTTP status this error should produce.
    pub fn status_code(&self) -> u16 {
        match self {
            TransformError::Validation { .. } => 422,
            TransformError::Generation(_) => 400,
            TransformError::Io(_) => 500,
        }
    }

    /// Structured context for `data.details`, if any.
    pub fn details(&self) -> Option<&Value> {
        match self {
            TransformError::Validation { details, .. } => details.as_ref(),
            _ => None,
        }
    }
}
