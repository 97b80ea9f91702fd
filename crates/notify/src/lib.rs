pub mod domain;
pub mod templates;
