//! A wrapper that keeps secrets out of logs and error messages.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// A value that must never be printed: `Debug` and `Display` show `[redacted]`.
///
/// Reach the value with [`Secret::expose`], which makes every use easy to find.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret value. Do not log it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How often a [`LiveSecret`] looks at its file again, at most.
const RECHECK: Duration = Duration::from_secs(1);

/// A secret setting that follows the file it came from (`PANAL_<KEY>_FILE`,
/// see [`crate::config::Config::live_secret`]): rotated by rewriting the
/// file — Kubernetes updates a mounted Secret in place, Vault Agent
/// re-renders its template — the new value is used from the next use on,
/// with no restart and no signal. Without a file it is the value given.
#[derive(Clone)]
pub struct LiveSecret(Arc<Live>);

struct Live {
    /// The setting's key, for the log.
    key: String,
    file: Option<PathBuf>,
    state: Mutex<(Secret<String>, Instant)>,
}

impl LiveSecret {
    /// A value that never changes.
    pub fn fixed(value: Secret<String>) -> Self {
        Self(Arc::new(Live { key: String::new(), file: None, state: Mutex::new((value, Instant::now())) }))
    }

    /// `value`, read from `file` for the setting `key`, and read again when
    /// it changes.
    pub fn from_file(key: &str, file: PathBuf, value: Secret<String>) -> Self {
        Self(Arc::new(Live { key: key.to_owned(), file: Some(file), state: Mutex::new((value, Instant::now())) }))
    }

    /// The value now. The file is looked at once a second at most: a small
    /// read, cheaper than the network call the secret is for, so it is done
    /// in place. A file that cannot be read, or is empty (half-written),
    /// keeps the last value, and the log says so.
    pub fn current(&self) -> Secret<String> {
        let live = &self.0;
        let mut state = live.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(file) = &live.file else { return state.0.clone() };
        if state.1.elapsed() < RECHECK {
            return state.0.clone();
        }
        state.1 = Instant::now();
        match std::fs::read_to_string(file) {
            Ok(contents) => {
                let value = crate::config::without_newline(&contents);
                if value.is_empty() {
                    tracing::warn!(key = %live.key, file = %file.display(), "the secret's file is empty; keeping the value read before");
                } else if value != state.0.expose() {
                    tracing::info!(key = %live.key, file = %file.display(), "the secret's file changed: using the new value");
                    state.0 = Secret::new(value.to_owned());
                }
            }
            Err(e) => {
                tracing::warn!(key = %live.key, file = %file.display(), error = %e, "cannot read the secret's file; keeping the value read before");
            }
        }
        state.0.clone()
    }
}

impl fmt::Debug for LiveSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.file {
            Some(file) => write!(f, "[redacted, from {}]", file.display()),
            None => f.write_str("[redacted]"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_secret_follows_its_file_and_keeps_its_value_when_the_file_breaks() {
        let dir = std::env::temp_dir().join(format!("panal-live-secret-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, "first\n").unwrap();
        let live = LiveSecret::from_file("clients.game.secret", file.clone(), Secret::new("first".to_owned()));
        assert_eq!(live.current().expose(), "first");
        assert_eq!(format!("{live:?}"), format!("[redacted, from {}]", file.display()));

        // Rotated the way Kubernetes does it: a new file swapped in.
        std::fs::write(dir.join("next"), "second\n").unwrap();
        std::fs::rename(dir.join("next"), &file).unwrap();
        assert_eq!(live.current().expose(), "first", "looked at once a second at most");
        std::thread::sleep(RECHECK);
        assert_eq!(live.current().expose(), "second");

        // Half-written or gone: the last good value stays.
        std::fs::write(&file, "").unwrap();
        std::thread::sleep(RECHECK);
        assert_eq!(live.current().expose(), "second");
        std::fs::remove_file(&file).unwrap();
        std::thread::sleep(RECHECK);
        assert_eq!(live.current().expose(), "second");
        assert_eq!(LiveSecret::fixed(Secret::new("x".to_owned())).current().expose(), "x");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn secrets_never_print_their_value() {
        let s = Secret::new("postgres://u:hunter2@db/x".to_owned());
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "postgres://u:hunter2@db/x");
    }
}
