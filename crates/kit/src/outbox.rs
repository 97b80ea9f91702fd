//! The transactional outbox: events are written to the service's own database in
//! the same transaction as the change that caused them, so a change is never
//! committed without its event, nor an event without its change.
//!
//! The `outbox` table is created by the bus migrations
//! ([`bus::store::MIGRATIONS`](crate::bus::store::MIGRATIONS)): `seq`
//! (ascending), `id` (the event id), `aggregate_id`, `event_type`, `payload`
//! (the whole CloudEvents envelope as JSON), `created_at`, `published_at` (null
//! until the [relay](crate::bus::relay) has handed it to the broker). After the
//! transaction commits, wake the relay with [`OutboxSignal::notify`](crate::bus::OutboxSignal).

/// The statement [`outbox_append!`](crate::outbox_append) runs; `$1..$5` are the
/// id, aggregate id, type, payload and time.
pub const INSERT: &str =
    "INSERT INTO outbox (id, aggregate_id, event_type, payload, created_at) VALUES ($1, $2, $3, $4, $5)";

/// Appends a [`contracts::Envelope`] to the outbox through `$conn` (a
/// transaction's connection, on either backend).
#[macro_export]
macro_rules! outbox_append {
    ($conn:expr, $envelope:expr) => {{
        let envelope: &$crate::__contracts::Envelope = $envelope;
        sqlx::query($crate::outbox::INSERT)
            .bind(envelope.id)
            .bind(envelope.subject.clone())
            .bind(envelope.kind.clone())
            .bind(serde_json::to_string(envelope).unwrap_or_default())
            .bind(envelope.time)
            .execute($conn)
            .await
    }};
}
