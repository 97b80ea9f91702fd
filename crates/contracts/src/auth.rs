//! Events emitted by the auth service.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Event;

/// An account was created. Users creates the profile from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserRegistered {
    /// The new account's id.
    pub user_id: Uuid,
    /// Lower-cased.
    pub email: String,
    pub display_name: String,
    pub registered_at: DateTime<Utc>,
}

impl Event for UserRegistered {
    const TYPE: &'static str = "panal.auth.user_registered.v1";
    const SOURCE: &'static str = "auth";
    const SUMMARY: &'static str = "an account was created";

    fn subject(&self) -> String {
        self.user_id.to_string()
    }
}
