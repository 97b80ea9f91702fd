//! What operators do from the command line (`panal admin …`, `panal auth …`),
//! straight on auth's database: the first administrator, key rotation and
//! service clients. Events go to auth's outbox; the relay publishes them when
//! auth runs.

use chrono::{DateTime, Utc};
use kit::config::Config;
use kit::db::Db;
use uuid::Uuid;

use crate::domain::{DisplayName, Email, Password, ROLE_ADMIN, ROLE_USER};
use crate::store::{ClientRow, KeyRecord, NewUser, RolesOutcome, Store, StoreError};
use crate::tokens::KeyMaterial;
use crate::{MIGRATIONS, Settings};

async fn open(db: &Db) -> anyhow::Result<Store> {
    db.migrate(&MIGRATIONS).await?;
    db.migrate(&kit::bus::store::MIGRATIONS).await?;
    Ok(Store::new(db.clone()))
}

/// Creates an administrator account, its email taken as verified (the
/// operator vouches for it). The password meets the same policy as anyone's.
pub async fn create_admin(
    db: &Db,
    config: &Config,
    email: &str,
    display_name: &str,
    password: &str,
) -> anyhow::Result<Uuid> {
    let settings: Settings = config.section("auth")?;
    let email = Email::parse(email).map_err(|m| anyhow::anyhow!("email {m}"))?;
    let name = DisplayName::parse(display_name).map_err(|m| anyhow::anyhow!("display name {m}"))?;
    let password = Password::parse(password).map_err(|m| anyhow::anyhow!("password {m}"))?;
    crate::policy::check(password.expose(), email.as_str(), name.as_str())
        .map_err(|m| anyhow::anyhow!("password {m}"))?;
    let store = open(db).await?;
    let hash = crate::password::Hasher::new(&settings.password)?.hash(password.expose()).await?;
    let id = Uuid::now_v7();
    let now = Utc::now();
    let new = NewUser {
        id,
        email: email.as_str(),
        display_name: name.as_str(),
        password_hash: &hash,
        roles: &[ROLE_USER, ROLE_ADMIN],
        email_verified: true,
        identity: None,
        now,
    };
    match store.create_user(&new).await {
        Ok(()) => Ok(id),
        Err(StoreError::EmailTaken) => {
            anyhow::bail!("an account with this email exists; make it an administrator with `panal admin grant`")
        }
        Err(e) => Err(e.into()),
    }
}

/// Gives the `admin` role to an existing account.
pub async fn grant_admin(db: &Db, email: &str) -> anyhow::Result<Uuid> {
    let email = Email::parse(email).map_err(|m| anyhow::anyhow!("email {m}"))?;
    let store = open(db).await?;
    let user =
        store.user_by_email(email.as_str()).await?.ok_or_else(|| anyhow::anyhow!("no account has this email"))?;
    let mut roles = user.roles.clone();
    roles.push(ROLE_ADMIN.to_owned());
    match store.set_roles(user.id, &roles, user.id, Utc::now()).await? {
        RolesOutcome::Changed { .. } | RolesOutcome::Unchanged => Ok(user.id),
        other => anyhow::bail!("could not grant the role: {other:?}"),
    }
}

/// Adds a signing key, published now, signing after `activate_in` (default:
/// `auth.key_publish_delay_secs`) so every verifier has fetched it first. The
/// current key signs until then and stays published an access-token lifetime
/// plus leeway after, until every token it signed has expired.
pub async fn rotate_keys(
    db: &Db,
    config: &Config,
    activate_in: Option<u64>,
) -> anyhow::Result<(KeyMaterial, DateTime<Utc>, Vec<KeyRecord>)> {
    let settings: Settings = config.section("auth")?;
    let store = open(db).await?;
    let delay = activate_in.unwrap_or(settings.key_publish_delay_secs);
    let now = Utc::now();
    let signs_from = now + chrono::Duration::seconds(i64::try_from(delay).unwrap_or(600));
    let grace = settings.key_grace(config.settings.tokens.leeway_secs);
    let key = KeyMaterial::generate(settings.signing_algorithm)?;
    store.add_key(&key, now, signs_from, grace).await?;
    Ok((key, signs_from, store.keys().await?))
}

/// Every signing key.
pub async fn keys(db: &Db) -> anyhow::Result<Vec<KeyRecord>> {
    Ok(open(db).await?.keys().await?)
}

/// A scope: lower-case letters, digits and `:._-`, up to 64 characters.
fn valid_scope(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b":._-".contains(&b))
}

/// Registers a service client; returns its id and secret (shown once; only
/// the secret's SHA-256 is stored).
pub async fn create_client(db: &Db, name: &str, scopes: &[String]) -> anyhow::Result<(String, String)> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        anyhow::bail!("the name must be 1 to 64 characters");
    }
    check_scopes(scopes)?;
    let store = open(db).await?;
    let id = Uuid::new_v4().to_string();
    let secret = crate::tokens::new_refresh_token();
    store.upsert_client(&id, name, &crate::tokens::hash_refresh_token(&secret), scopes, Utc::now()).await?;
    Ok((id, secret))
}

fn check_scopes(scopes: &[String]) -> anyhow::Result<()> {
    if let Some(bad) = scopes.iter().find(|s| !valid_scope(s)) {
        anyhow::bail!("invalid scope {bad:?}: use lower-case letters, digits and `:._-`, up to 64 characters");
    }
    Ok(())
}

/// Shortest secret `ensure_client` takes: as strong as the ones auth makes.
const MIN_PROVISIONED_SECRET: usize = 32;

/// The service client `id` (a UUID the operator chose) called `name`, with
/// the operator's `secret` and these scopes, whether or not it existed —
/// for deployments whose services read their credentials from files
/// (`panal auth clients provision`).
pub async fn ensure_client(db: &Db, id: &str, name: &str, secret: &str, scopes: &[String]) -> anyhow::Result<()> {
    let id = Uuid::parse_str(id.trim()).map_err(|_| anyhow::anyhow!("the client id must be a UUID"))?;
    if secret.chars().count() < MIN_PROVISIONED_SECRET || secret.chars().any(char::is_whitespace) {
        anyhow::bail!("the client secret must be at least {MIN_PROVISIONED_SECRET} characters, without spaces");
    }
    check_scopes(scopes)?;
    let store = open(db).await?;
    store.upsert_client(&id.to_string(), name, &crate::tokens::hash_refresh_token(secret), scopes, Utc::now()).await?;
    Ok(())
}

/// The service client called `name`, with a new secret and these scopes:
/// the one of that name given a new secret, or a new one. `panal up` calls
/// it at every start for each service that calls others in its own name
/// (the secret lives only in the process's memory).
pub async fn provision_client(db: &Db, name: &str, scopes: &[String]) -> anyhow::Result<(String, String)> {
    let store = open(db).await?;
    let secret = crate::tokens::new_refresh_token();
    match store.reset_client(name, &crate::tokens::hash_refresh_token(&secret), scopes).await? {
        Some(id) => Ok((id, secret)),
        None => create_client(db, name, scopes).await,
    }
}

pub async fn clients(db: &Db) -> anyhow::Result<Vec<ClientRow>> {
    Ok(open(db).await?.clients().await?)
}

/// Disables a client: no new tokens, and introspection refuses its tokens.
pub async fn disable_client(db: &Db, client_id: &str) -> anyhow::Result<bool> {
    Ok(open(db).await?.disable_client(client_id, Utc::now()).await?)
}
