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

/// A user proved they own their email address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EmailVerified {
    pub user_id: Uuid,
    pub email: String,
    pub verified_at: DateTime<Utc>,
}

impl Event for EmailVerified {
    const TYPE: &'static str = "panal.auth.email_verified.v1";
    const SOURCE: &'static str = "auth";
    const SUMMARY: &'static str = "a user verified their email address";
    fn subject(&self) -> String {
        self.user_id.to_string()
    }
}

/// A session was opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserLoggedIn {
    pub user_id: Uuid,
    pub session_id: Uuid,
    /// `password`, `password+totp`, `password+recovery_code` or `oauth:<provider>`.
    pub method: String,
    pub logged_in_at: DateTime<Utc>,
    /// The account had signed in before, never from this device (its
    /// browser and system): the owner is told.
    #[serde(default)]
    pub new_device: bool,
    /// The device in a few words, as its user agent says (`Firefox on
    /// Linux`); no address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

impl Event for UserLoggedIn {
    const TYPE: &'static str = "panal.auth.user_logged_in.v1";
    const SOURCE: &'static str = "auth";
    const SUMMARY: &'static str = "a user signed in (a session was opened)";
    fn subject(&self) -> String {
        self.user_id.to_string()
    }
}

/// A user's password changed (changed by them, or reset by email).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PasswordChanged {
    pub user_id: Uuid,
    /// `change` or `reset`.
    pub how: String,
    pub changed_at: DateTime<Utc>,
}

impl Event for PasswordChanged {
    const TYPE: &'static str = "panal.auth.password_changed.v1";
    const SOURCE: &'static str = "auth";
    const SUMMARY: &'static str = "a user changed or reset their password";
    fn subject(&self) -> String {
        self.user_id.to_string()
    }
}

/// A session ended before its time: its access tokens must be refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SessionRevoked {
    pub user_id: Uuid,
    pub session_id: Uuid,
    /// `logout`, `revoked`, `refresh_token_reuse`, `password_changed`,
    /// `password_reset`, `account_disabled`, `banned`, `erased`.
    pub reason: String,
    pub revoked_at: DateTime<Utc>,
}

impl Event for SessionRevoked {
    const TYPE: &'static str = "panal.auth.session_revoked.v1";
    const SOURCE: &'static str = "auth";
    const SUMMARY: &'static str = "a session ended early (logout, revocation, password change, disabled account)";
    fn subject(&self) -> String {
        self.user_id.to_string()
    }
}

/// An account was disabled or enabled again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserDisabled {
    pub user_id: Uuid,
    /// `false` when the account was enabled again.
    pub disabled: bool,
    /// The administrator, or none when auth acted on an event (a ban).
    pub by: Option<Uuid>,
    pub at: DateTime<Utc>,
}

impl Event for UserDisabled {
    const TYPE: &'static str = "panal.auth.user_disabled.v1";
    const SOURCE: &'static str = "auth";
    const SUMMARY: &'static str = "an account was disabled or enabled again";
    fn subject(&self) -> String {
        self.user_id.to_string()
    }
}

/// An account's roles changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RoleChanged {
    pub user_id: Uuid,
    /// The roles now held.
    pub roles: Vec<String>,
    pub changed_by: Option<Uuid>,
    pub changed_at: DateTime<Utc>,
}

impl Event for RoleChanged {
    const TYPE: &'static str = "panal.auth.role_changed.v1";
    const SOURCE: &'static str = "auth";
    const SUMMARY: &'static str = "an account's roles changed";
    fn subject(&self) -> String {
        self.user_id.to_string()
    }
}
