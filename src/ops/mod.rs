//! Pure operations on tables (no HTTP types): normalization, binding, SQL and JSON generation.

pub mod bind;
pub mod clock;
pub mod json_gen;
pub mod json_template;
pub mod normalize;
pub mod params;
pub mod placeholder;
pub mod sql;
pub mod sql_template;
pub mod transform_error;

pub use transform_error::TransformError;
