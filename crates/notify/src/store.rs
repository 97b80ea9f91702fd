//! Notify's SQL. A notification is decided in the consumer's transaction:
//! one delivery row per channel, keyed by (event, channel, recipient), so a
//! redelivered event adds nothing; the inbox item and its live push are
//! written in the same transaction; e-mails are sent by the sender worker
//! from their delivery rows.

use chrono::{DateTime, Utc};
use kit::db::{Db, Tx};
use kit::{with_db, with_tx};
use serde_json::Value;
use uuid::Uuid;

use crate::domain::{self, Channel, Kind};

/// A person notify writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub user_id: Uuid,
    pub email: Option<String>,
    pub display_name: String,
    pub locale: Option<String>,
    pub timezone: Option<String>,
}

/// An inbox item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: Uuid,
    pub kind: String,
    pub title: String,
    pub body: String,
    pub link: Option<String>,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}

/// A delivery due for sending.
#[derive(Debug, Clone)]
pub struct Due {
    pub id: Uuid,
    pub kind: Kind,
    pub channel: Channel,
    pub user_id: Uuid,
    pub vars: Value,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
}

/// A delivery as the person's export shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeliveryRecord {
    pub id: Uuid,
    pub kind: String,
    pub channel: String,
    pub status: String,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

type RecipientRow = (Uuid, Option<String>, String, Option<String>, Option<String>);
type DueRow = (Uuid, String, String, Uuid, String, i32, DateTime<Utc>);

macro_rules! due_columns {
    () => {
        "id, kind, channel, user_id, vars, attempts, created_at"
    };
}

fn due((id, kind, channel, user_id, vars, attempts, created_at): DueRow) -> Option<Due> {
    Some(Due {
        id,
        kind: Kind::parse(&kind)?,
        channel: Channel::parse(&channel)?,
        user_id,
        vars: serde_json::from_str(&vars).unwrap_or_default(),
        attempts: u32::try_from(attempts).unwrap_or(0),
        created_at,
    })
}

/// A person's phone number and where its verification stands.
#[derive(Debug, Clone)]
pub struct Phone {
    pub number: String,
    pub verified_at: Option<DateTime<Utc>>,
    pub code_hash: Option<Vec<u8>>,
    pub code_expires_at: Option<DateTime<Utc>>,
    pub code_attempts: i32,
}

type PhoneRow = (String, Option<DateTime<Utc>>, Option<Vec<u8>>, Option<DateTime<Utc>>, i32);

/// A browser subscribed to Web Push.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: Uuid,
    pub endpoint: String,
    pub p256dh: Vec<u8>,
    pub auth: Vec<u8>,
    pub device: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A browser's subscription as it arrives.
pub struct NewSubscription<'a> {
    pub endpoint: &'a str,
    pub p256dh: &'a [u8],
    pub auth: &'a [u8],
    pub device: Option<&'a str>,
}

type SubscriptionRow = (Uuid, String, Vec<u8>, Vec<u8>, Option<String>, DateTime<Utc>);

fn subscription((id, endpoint, p256dh, auth, device, created_at): SubscriptionRow) -> Subscription {
    Subscription { id, endpoint, p256dh, auth, device, created_at }
}

/// Wipes a delivery's values, `when` it is settled for good, if its kind's
/// link signs its reader in ([`Kind::carries_secret`]; a test holds the
/// list to it).
macro_rules! scrub {
    ($when:literal) => {
        concat!(
            "vars = CASE WHEN kind IN ('verify_email', 'password_reset', 'phone_code') AND ",
            $when,
            " THEN '{}' ELSE vars END"
        )
    };
}

type DeliveryRow = (Uuid, String, String, String, i32, DateTime<Utc>, DateTime<Utc>);
type ItemRow = (Uuid, String, String, String, Option<String>, DateTime<Utc>, Option<DateTime<Utc>>);

fn recipient(r: RecipientRow) -> Recipient {
    Recipient { user_id: r.0, email: r.1, display_name: r.2, locale: r.3, timezone: r.4 }
}

fn item(r: ItemRow) -> Item {
    Item { id: r.0, kind: r.1, title: r.2, body: r.3, link: r.4, created_at: r.5, read_at: r.6 }
}

const RECIPIENT: &str =
    "SELECT user_id, email, display_name, locale, timezone FROM recipients WHERE user_id = $1 AND NOT erased";

const HOLD: &str = "UPDATE deliveries SET next_at = $2, updated_at = $3 WHERE id = $1 AND status = 'pending'";

/// The name the sender's dead letters carry.
pub const SENDER: &str = "notify.sender";

pub struct Store {
    db: Db,
}

impl Store {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// The key that signs unsubscribe links: the one kept, or `fresh`
    /// kept now (the first start; another process's if it was first).
    pub async fn unsubscribe_key(&self, fresh: [u8; 32], now: DateTime<Utc>) -> Result<[u8; 32], sqlx::Error> {
        const KEEP: &str =
            "INSERT INTO unsubscribe_key (id, secret, created_at) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING";
        const KEPT: &str = "SELECT secret FROM unsubscribe_key WHERE id = 1";
        let kept = self.keep(KEEP, KEPT, fresh.to_vec(), now).await?;
        Ok(kept.try_into().unwrap_or(fresh))
    }

    /// The VAPID key (PKCS#8): the one kept, or `fresh` kept now.
    pub async fn vapid_key(&self, fresh: Vec<u8>, now: DateTime<Utc>) -> Result<Vec<u8>, sqlx::Error> {
        const KEEP: &str =
            "INSERT INTO vapid_key (id, pkcs8, created_at) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING";
        const KEPT: &str = "SELECT pkcs8 FROM vapid_key WHERE id = 1";
        self.keep(KEEP, KEPT, fresh, now).await
    }

    /// A secret made once: `keep` stores `fresh` unless one is kept, `kept`
    /// reads what is.
    async fn keep(
        &self,
        keep: &'static str,
        kept: &'static str,
        fresh: Vec<u8>,
        now: DateTime<Utc>,
    ) -> Result<Vec<u8>, sqlx::Error> {
        with_db!(write &self.db, pool => sqlx::query(keep).bind(fresh).bind(now).execute(pool).await.map(|_| ()))?;
        with_db!(&self.db, pool => sqlx::query_scalar(kept).fetch_one(pool).await)
    }

    // ---- people, from auth's and users' events ------------------------

    /// A new account: its address and first name.
    pub async fn registered(
        tx: &mut Tx,
        user: Uuid,
        email: &str,
        name: &str,
        at: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        with_tx!(tx, conn => sqlx::query(
            "INSERT INTO recipients (user_id, email, display_name, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id) DO UPDATE SET email = excluded.email WHERE NOT recipients.erased")
            .bind(user).bind(email).bind(name).bind(at).execute(conn).await.map(|_| ()))
    }

    /// A profile's name, language and time zone as of `at` (an older copy
    /// never overwrites a newer one).
    pub async fn profile(
        tx: &mut Tx,
        user: Uuid,
        name: &str,
        locale: Option<&str>,
        timezone: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        with_tx!(tx, conn => sqlx::query(
            "INSERT INTO recipients (user_id, display_name, locale, timezone, updated_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (user_id) DO UPDATE SET display_name = excluded.display_name, locale = excluded.locale,
                 timezone = excluded.timezone, updated_at = excluded.updated_at
             WHERE recipients.updated_at <= excluded.updated_at AND NOT recipients.erased")
            .bind(user).bind(name).bind(locale).bind(timezone).bind(at).execute(conn).await.map(|_| ()))
    }

    /// An erased account: its address and name gone, its deliveries kept
    /// without their contents, its inbox and choices deleted.
    pub async fn erase(tx: &mut Tx, user: Uuid, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
        // What the provider said of the address goes with it.
        with_tx!(tx, conn => sqlx::query(
            "DELETE FROM suppressions WHERE address = (SELECT lower(email) FROM recipients WHERE user_id = $1)")
            .bind(user).execute(conn).await.map(|_| ()))?;
        with_tx!(tx, conn => sqlx::query(
            "INSERT INTO recipients (user_id, display_name, erased, updated_at) VALUES ($1, 'deleted user', TRUE, $2)
             ON CONFLICT (user_id) DO UPDATE SET email = NULL, display_name = 'deleted user', locale = NULL,
                 timezone = NULL, erased = TRUE, updated_at = excluded.updated_at")
            .bind(user).bind(at).execute(conn).await.map(|_| ()))?;
        with_tx!(tx, conn => sqlx::query("UPDATE deliveries SET vars = '{}' WHERE user_id = $1")
            .bind(user).execute(conn).await.map(|_| ()))?;
        with_tx!(tx, conn => sqlx::query("DELETE FROM inbox_items WHERE user_id = $1")
            .bind(user).execute(conn).await.map(|_| ()))?;
        with_tx!(tx, conn => sqlx::query("DELETE FROM preferences WHERE user_id = $1")
            .bind(user).execute(conn).await.map(|_| ()))?;
        with_tx!(tx, conn => sqlx::query("DELETE FROM quiet_hours WHERE user_id = $1")
            .bind(user).execute(conn).await.map(|_| ()))?;
        with_tx!(tx, conn => sqlx::query("DELETE FROM push_subscriptions WHERE user_id = $1")
            .bind(user).execute(conn).await.map(|_| ()))?;
        with_tx!(tx, conn => sqlx::query("DELETE FROM phones WHERE user_id = $1")
            .bind(user).execute(conn).await.map(|_| ()))
    }

    pub async fn recipient_in(tx: &mut Tx, user: Uuid) -> Result<Option<Recipient>, sqlx::Error> {
        let row: Option<RecipientRow> =
            with_tx!(tx, conn => sqlx::query_as(RECIPIENT).bind(user).fetch_optional(conn).await)?;
        Ok(row.map(recipient))
    }

    pub async fn recipient(&self, user: Uuid) -> Result<Option<Recipient>, sqlx::Error> {
        let row: Option<RecipientRow> =
            with_db!(&self.db, pool => sqlx::query_as(RECIPIENT).bind(user).fetch_optional(pool).await)?;
        Ok(row.map(recipient))
    }

    // ---- deciding a notification ---------------------------------------

    /// The person's choice for `kind` on `channel`, if they made one.
    async fn choice_in(tx: &mut Tx, user: Uuid, kind: Kind, channel: Channel) -> Result<Option<bool>, sqlx::Error> {
        with_tx!(tx, conn => sqlx::query_scalar(
            "SELECT enabled FROM preferences WHERE user_id = $1 AND kind = $2 AND channel = $3")
            .bind(user).bind(kind.as_str()).bind(channel.as_str()).fetch_optional(conn).await)
    }

    /// Records `kind` for `to` (the event `event_id`'s): a delivery per
    /// channel their choices let through; the inbox item and its live push
    /// at once. A redelivered event finds its rows and adds nothing.
    /// Returns the channels recorded now.
    pub async fn notify(
        tx: &mut Tx,
        event_id: Uuid,
        kind: Kind,
        to: &Recipient,
        vars: &Value,
        now: DateTime<Utc>,
    ) -> Result<Vec<Channel>, NotifyError> {
        let mut recorded = Vec::new();
        for &channel in kind.channels() {
            let choice = Self::choice_in(tx, to.user_id, kind, channel).await?;
            if !domain::enabled(kind, channel, choice) {
                continue;
            }
            // Only for a channel the person has on: its look-ups are skipped otherwise.
            let reachable = match channel {
                Channel::Inbox => true,
                Channel::Email => match &to.email {
                    Some(address) => !domain::suppressed(kind, Self::suppression_in(tx, address).await?.as_deref()),
                    None => false,
                },
                Channel::Push => Self::subscribed_in(tx, to.user_id).await?,
                Channel::Sms => Self::verified_phone_in(tx, to.user_id).await?.is_some(),
            };
            if !reachable {
                continue;
            }
            let id = Uuid::now_v7();
            let status = if channel == Channel::Inbox { "delivered" } else { "pending" };
            let inserted = with_tx!(tx, conn => sqlx::query(
                "INSERT INTO deliveries (id, event_id, kind, channel, user_id, vars, status, attempts, next_at,
                     created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $8, $8)
                 ON CONFLICT (event_id, channel, user_id) DO NOTHING")
                .bind(id).bind(event_id).bind(kind.as_str()).bind(channel.as_str()).bind(to.user_id)
                .bind(vars.to_string()).bind(status).bind(now)
                .execute(conn).await.map(|r| r.rows_affected()))?;
            if inserted == 0 {
                continue;
            }
            if channel == Channel::Inbox {
                let locale = domain::locale_of(to.locale.as_deref());
                let rendered = crate::templates::render(kind, locale, vars).map_err(NotifyError::Template)?;
                let link = vars["link"].as_str();
                with_tx!(tx, conn => sqlx::query(
                    "INSERT INTO inbox_items (id, user_id, kind, title, body, link, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                    .bind(id).bind(to.user_id).bind(kind.as_str()).bind(&rendered.title).bind(&rendered.body)
                    .bind(link).bind(now).execute(conn).await.map(|_| ()))?;
                tx.record(&contracts::realtime::Publication {
                    channel: format!("user:{}", to.user_id),
                    data: serde_json::json!({
                        "type": "notification", "id": id, "kind": kind.as_str(), "title": rendered.title,
                        "body": rendered.body, "link": link, "created_at": now,
                    }),
                    skip_users: Vec::new(),
                    ephemeral: false,
                })
                .await?;
            }
            recorded.push(channel);
        }
        Ok(recorded)
    }

    // ---- sending -------------------------------------------------------

    /// Claims the deliveries due now (e-mail, push and SMS; the inbox's
    /// are delivered when decided): each is put off until `lease` in the
    /// same statement, so another notify process does not take it too
    /// (PostgreSQL re-checks `next_at` on a row another claim just
    /// changed; SQLite has one writer). The sender settles or holds each;
    /// one whose process died goes again after the lease.
    pub async fn claim(&self, now: DateTime<Utc>, lease: DateTime<Utc>, limit: i64) -> Result<Vec<Due>, sqlx::Error> {
        let rows: Vec<DueRow> = with_db!(write &self.db, pool => sqlx::query_as(concat!(
            "UPDATE deliveries SET next_at = $2
             WHERE status = 'pending' AND next_at <= $1 AND id IN (
                 SELECT id FROM deliveries WHERE status = 'pending' AND next_at <= $1 ORDER BY next_at LIMIT $3)
             RETURNING ", due_columns!()))
            .bind(now).bind(lease).bind(limit).fetch_all(pool).await)?;
        let mut due: Vec<Due> = rows.into_iter().filter_map(due).collect();
        due.sort_by_key(|d| (d.created_at, d.id));
        Ok(due)
    }

    /// Every pending e-mail of `kind` to `user`, oldest first: a digest's
    /// contents.
    pub async fn batch(&self, user: Uuid, kind: Kind) -> Result<Vec<Due>, sqlx::Error> {
        let rows: Vec<DueRow> = with_db!(&self.db, pool => sqlx::query_as(concat!(
            "SELECT ", due_columns!(), " FROM deliveries
             WHERE channel = 'email' AND status = 'pending' AND user_id = $1 AND kind = $2 ORDER BY created_at, id"))
            .bind(user).bind(kind.as_str()).fetch_all(pool).await)?;
        Ok(rows.into_iter().filter_map(due).collect())
    }

    /// A delivery sent (the relay accepted it), failed for good, or to try
    /// again at `next_at`. Only a pending delivery moves: states never go
    /// back.
    pub async fn settle(
        &self,
        id: Uuid,
        status: &str,
        error: Option<&str>,
        next_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        // A link that signs its reader in is kept no longer than needed.
        with_db!(write &self.db, pool => sqlx::query(concat!(
            "UPDATE deliveries SET status = $2, last_error = $3, attempts = attempts + 1, next_at = $4, updated_at = $5, ",
            scrub!("$2 <> 'pending'"), " WHERE id = $1 AND status = 'pending'"))
            .bind(id).bind(status).bind(error).bind(next_at).bind(now).execute(pool).await.map(|_| ()))
    }

    /// A message asked for directly, not by an event: auth's mail (`id`
    /// is auth's, so a call made again adds nothing), a phone's code.
    /// Whether it was new.
    pub async fn direct(
        &self,
        id: Uuid,
        kind: Kind,
        channel: Channel,
        user: Uuid,
        vars: &Value,
        now: DateTime<Utc>,
    ) -> Result<bool, sqlx::Error> {
        let n = with_db!(write &self.db, pool => sqlx::query(
            "INSERT INTO deliveries (id, event_id, kind, channel, user_id, vars, status, attempts, next_at,
                 created_at, updated_at)
             VALUES ($1, $1, $2, $3, $4, $5, 'pending', 0, $6, $6, $6)
             ON CONFLICT DO NOTHING")
            .bind(id).bind(kind.as_str()).bind(channel.as_str()).bind(user).bind(vars.to_string()).bind(now)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// The provider's id of a sent message.
    pub async fn provider_id(&self, id: Uuid, provider_id: &str) -> Result<(), sqlx::Error> {
        with_db!(write &self.db, pool => sqlx::query("UPDATE deliveries SET provider_id = $2 WHERE id = $1")
            .bind(id).bind(provider_id).execute(pool).await.map(|_| ()))
    }

    // ---- Web Push --------------------------------------------------------

    async fn subscribed_in(tx: &mut Tx, user: Uuid) -> Result<bool, sqlx::Error> {
        let n: i64 = with_tx!(tx, conn => sqlx::query_scalar(
            "SELECT count(*) FROM push_subscriptions WHERE user_id = $1").bind(user).fetch_one(conn).await)?;
        Ok(n > 0)
    }

    /// Subscribes a browser for `user` (its endpoint taken over from
    /// whoever had it: an endpoint is one browser's); its id.
    pub async fn subscribe(
        &self,
        user: Uuid,
        s: &NewSubscription<'_>,
        now: DateTime<Utc>,
    ) -> Result<Uuid, sqlx::Error> {
        with_db!(write &self.db, pool => sqlx::query_scalar(
            "INSERT INTO push_subscriptions (id, user_id, endpoint, p256dh, auth, device, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (endpoint) DO UPDATE SET user_id = excluded.user_id, p256dh = excluded.p256dh,
                 auth = excluded.auth, device = excluded.device, created_at = excluded.created_at
             RETURNING id")
            .bind(Uuid::now_v7()).bind(user).bind(s.endpoint).bind(s.p256dh).bind(s.auth).bind(s.device).bind(now)
            .fetch_one(pool).await)
    }

    /// The person's subscribed browsers, oldest first.
    pub async fn subscriptions(&self, user: Uuid) -> Result<Vec<Subscription>, sqlx::Error> {
        let rows: Vec<SubscriptionRow> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT id, endpoint, p256dh, auth, device, created_at FROM push_subscriptions
             WHERE user_id = $1 ORDER BY created_at, id")
            .bind(user).fetch_all(pool).await)?;
        Ok(rows.into_iter().map(subscription).collect())
    }

    /// Removes one of the person's subscriptions; false when they have no
    /// such one.
    pub async fn unsubscribe_browser(&self, user: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
        let n = with_db!(write &self.db, pool => sqlx::query(
            "DELETE FROM push_subscriptions WHERE user_id = $1 AND id = $2")
            .bind(user).bind(id).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Removes a subscription its push service says is gone.
    pub async fn subscription_gone(&self, id: Uuid) -> Result<(), sqlx::Error> {
        with_db!(write &self.db, pool => sqlx::query("DELETE FROM push_subscriptions WHERE id = $1")
            .bind(id).execute(pool).await.map(|_| ()))
    }

    /// The browsers a push delivery is done with.
    pub async fn receipts(&self, delivery: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
        with_db!(&self.db, pool => sqlx::query_scalar(
            "SELECT subscription_id FROM push_receipts WHERE delivery_id = $1")
            .bind(delivery).fetch_all(pool).await)
    }

    pub async fn receipt(&self, delivery: Uuid, subscription: Uuid) -> Result<(), sqlx::Error> {
        with_db!(write &self.db, pool => sqlx::query(
            "INSERT INTO push_receipts (delivery_id, subscription_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(delivery).bind(subscription).execute(pool).await.map(|_| ()))
    }

    /// A delivery given up: `failed`, and a dead letter of the bus
    /// (consumer [`SENDER`]) an administrator sees with the others and
    /// retries with `POST /v1/notify/admin/deliveries/{id}/retry`. The letter
    /// names the delivery, never its contents.
    pub async fn fail(&self, d: &Due, error: &str, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
        let mut tx = self.db.begin().await?;
        with_tx!(&mut tx, conn => sqlx::query(
            concat!("UPDATE deliveries SET status = 'failed', last_error = $2, attempts = attempts + 1, updated_at = $3, ",
                scrub!("TRUE"), " WHERE id = $1 AND status = 'pending'"))
            .bind(d.id).bind(error).bind(now).execute(conn).await.map(|_| ()))?;
        let letter = kit::bus::store::DeadLetter {
            id: Uuid::now_v7(),
            consumer: SENDER.to_owned(),
            event_id: Some(d.id.to_string()),
            event_type: format!("notify.delivery.{}", d.channel.as_str()),
            payload: serde_json::json!({
                "delivery_id": d.id, "kind": d.kind.as_str(), "channel": d.channel.as_str(), "user_id": d.user_id,
            })
            .to_string(),
            error: error.to_owned(),
            attempts: i32::try_from(d.attempts + 1).unwrap_or(i32::MAX),
            first_failed_at: now,
            last_failed_at: now,
        };
        kit::bus::store::insert_dead_letter_in(&mut tx, &letter).await?;
        tx.commit().await
    }

    /// A failed delivery sent again from the start (an administrator's
    /// call), its dead letter removed; false when no failed delivery has
    /// that id.
    pub async fn retry(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool, sqlx::Error> {
        let mut tx = self.db.begin().await?;
        let n = with_tx!(&mut tx, conn => sqlx::query(
            "UPDATE deliveries SET status = 'pending', attempts = 0, next_at = $2, updated_at = $2, last_error = NULL
             WHERE id = $1 AND status = 'failed'")
            .bind(id).bind(now).execute(conn).await.map(|r| r.rows_affected()))?;
        with_tx!(&mut tx, conn => sqlx::query("DELETE FROM dead_letters WHERE consumer = $1 AND event_id = $2")
            .bind(SENDER).bind(id.to_string()).execute(conn).await.map(|_| ()))?;
        tx.commit().await?;
        Ok(n == 1)
    }

    // ---- what the e-mail provider reports ---------------------------------

    async fn suppression_in(tx: &mut Tx, address: &str) -> Result<Option<String>, sqlx::Error> {
        with_tx!(tx, conn => sqlx::query_scalar("SELECT reason FROM suppressions WHERE address = $1")
            .bind(address.to_lowercase()).fetch_optional(conn).await)
    }

    /// Why nothing (`bounce`) or only security mail (`complaint`) goes to
    /// `address`, if the provider said so.
    pub async fn suppression(&self, address: &str) -> Result<Option<String>, sqlx::Error> {
        with_db!(&self.db, pool => sqlx::query_scalar("SELECT reason FROM suppressions WHERE address = $1")
            .bind(address.to_lowercase()).fetch_optional(pool).await)
    }

    /// Records what the provider said of an address: a bounce outweighs a
    /// complaint.
    pub async fn suppress(
        &self,
        address: &str,
        reason: &str,
        detail: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        with_db!(write &self.db, pool => sqlx::query(
            "INSERT INTO suppressions (address, reason, detail, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (address) DO UPDATE SET
                 reason = CASE WHEN excluded.reason = 'bounce' THEN 'bounce' ELSE suppressions.reason END,
                 detail = excluded.detail")
            .bind(address.to_lowercase()).bind(reason).bind(detail).bind(now).execute(pool).await.map(|_| ()))
    }

    /// An e-mail delivery moved to `status` by the provider's report, if
    /// its state lets it (states only move forward); whether it moved.
    pub async fn reported(&self, id: Uuid, status: &str, now: DateTime<Utc>) -> Result<bool, sqlx::Error> {
        let [a, b, c] = domain::may_become(status);
        let n = with_db!(write &self.db, pool => sqlx::query(
            "UPDATE deliveries SET status = $2, updated_at = $3
             WHERE id = $1 AND channel = 'email' AND status IN ($4, $5, $6)")
            .bind(id).bind(status).bind(now).bind(a).bind(b).bind(c).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// An SMS delivery moved to `status` by the provider's callback (by
    /// its message id), if its state lets it; whether it moved.
    pub async fn sms_reported(&self, provider_id: &str, status: &str, now: DateTime<Utc>) -> Result<bool, sqlx::Error> {
        let [a, b, c] = domain::may_become(status);
        let n = with_db!(write &self.db, pool => sqlx::query(
            "UPDATE deliveries SET status = $2, updated_at = $3
             WHERE provider_id = $1 AND channel = 'sms' AND status IN ($4, $5, $6)")
            .bind(provider_id).bind(status).bind(now).bind(a).bind(b).bind(c)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    // ---- phone numbers ---------------------------------------------------

    async fn verified_phone_in(tx: &mut Tx, user: Uuid) -> Result<Option<String>, sqlx::Error> {
        with_tx!(tx, conn => sqlx::query_scalar(
            "SELECT number FROM phones WHERE user_id = $1 AND verified_at IS NOT NULL")
            .bind(user).fetch_optional(conn).await)
    }

    /// The person's number, if verified.
    pub async fn verified_phone(&self, user: Uuid) -> Result<Option<String>, sqlx::Error> {
        with_db!(&self.db, pool => sqlx::query_scalar(
            "SELECT number FROM phones WHERE user_id = $1 AND verified_at IS NOT NULL")
            .bind(user).fetch_optional(pool).await)
    }

    pub async fn phone(&self, user: Uuid) -> Result<Option<Phone>, sqlx::Error> {
        let row: Option<PhoneRow> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT number, verified_at, code_hash, code_expires_at, code_attempts FROM phones WHERE user_id = $1")
            .bind(user).fetch_optional(pool).await)?;
        Ok(row.map(|(number, verified_at, code_hash, code_expires_at, code_attempts)| Phone {
            number,
            verified_at,
            code_hash,
            code_expires_at,
            code_attempts,
        }))
    }

    /// A new number (unverified) and the hash of the code sent to it.
    pub async fn set_phone(
        &self,
        user: Uuid,
        number: &str,
        code_hash: &[u8],
        expires: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        with_db!(write &self.db, pool => sqlx::query(
            "INSERT INTO phones (user_id, number, verified_at, code_hash, code_expires_at, code_attempts, updated_at)
             VALUES ($1, $2, NULL, $3, $4, 0, $5)
             ON CONFLICT (user_id) DO UPDATE SET number = excluded.number, verified_at = NULL,
                 code_hash = excluded.code_hash, code_expires_at = excluded.code_expires_at, code_attempts = 0,
                 updated_at = excluded.updated_at")
            .bind(user).bind(number).bind(code_hash).bind(expires).bind(now).execute(pool).await.map(|_| ()))
    }

    /// One more try at the code.
    pub async fn phone_code_tried(&self, user: Uuid) -> Result<(), sqlx::Error> {
        with_db!(write &self.db, pool => sqlx::query(
            "UPDATE phones SET code_attempts = code_attempts + 1 WHERE user_id = $1")
            .bind(user).execute(pool).await.map(|_| ()))
    }

    /// The number proved: the code is gone.
    pub async fn phone_verified(&self, user: Uuid, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
        with_db!(write &self.db, pool => sqlx::query(
            "UPDATE phones SET verified_at = $2, code_hash = NULL, code_expires_at = NULL, updated_at = $2
             WHERE user_id = $1")
            .bind(user).bind(now).execute(pool).await.map(|_| ()))
    }

    /// Removes the number; false when there was none.
    pub async fn delete_phone(&self, user: Uuid) -> Result<bool, sqlx::Error> {
        let n = with_db!(write &self.db, pool => sqlx::query("DELETE FROM phones WHERE user_id = $1")
            .bind(user).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    // ---- the inbox -----------------------------------------------------

    /// The person's inbox, newest first, after `before` (an item id).
    pub async fn inbox(&self, user: Uuid, before: Option<Uuid>, limit: i64) -> Result<Vec<Item>, sqlx::Error> {
        let rows: Vec<ItemRow> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT id, kind, title, body, link, created_at, read_at FROM inbox_items
             WHERE user_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3")
            .bind(user).bind(before).bind(limit).fetch_all(pool).await)?;
        Ok(rows.into_iter().map(item).collect())
    }

    pub async fn unread(&self, user: Uuid) -> Result<i64, sqlx::Error> {
        with_db!(&self.db, pool => sqlx::query_scalar(
            "SELECT count(*) FROM inbox_items WHERE user_id = $1 AND read_at IS NULL").bind(user).fetch_one(pool).await)
    }

    /// Marks one item read; false when the person has no such item.
    pub async fn read(&self, user: Uuid, id: Uuid, now: DateTime<Utc>) -> Result<bool, sqlx::Error> {
        let n = with_db!(write &self.db, pool => sqlx::query(
            "UPDATE inbox_items SET read_at = COALESCE(read_at, $3) WHERE user_id = $1 AND id = $2")
            .bind(user).bind(id).bind(now).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Marks every item read; how many were unread.
    pub async fn read_all(&self, user: Uuid, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
        with_db!(write &self.db, pool => sqlx::query(
            "UPDATE inbox_items SET read_at = $2 WHERE user_id = $1 AND read_at IS NULL")
            .bind(user).bind(now).execute(pool).await.map(|r| r.rows_affected()))
    }

    // ---- preferences ---------------------------------------------------

    /// The person's choices: (kind, channel, enabled).
    pub async fn choices(&self, user: Uuid) -> Result<Vec<(String, String, bool)>, sqlx::Error> {
        with_db!(&self.db, pool => sqlx::query_as(
            "SELECT kind, channel, enabled FROM preferences WHERE user_id = $1 ORDER BY kind, channel")
            .bind(user).fetch_all(pool).await)
    }

    pub async fn choose(
        &self,
        user: Uuid,
        kind: Kind,
        channel: Channel,
        enabled: bool,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        with_db!(write &self.db, pool => sqlx::query(
            "INSERT INTO preferences (user_id, kind, channel, enabled, updated_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (user_id, kind, channel) DO UPDATE SET enabled = excluded.enabled, updated_at = excluded.updated_at")
            .bind(user).bind(kind.as_str()).bind(channel.as_str()).bind(enabled).bind(now)
            .execute(pool).await.map(|_| ()))
    }

    /// The person's quiet hours: (from, to, time zone), as they set them.
    pub async fn quiet_hours(&self, user: Uuid) -> Result<Option<(String, String, Option<String>)>, sqlx::Error> {
        with_db!(&self.db, pool => sqlx::query_as(
            "SELECT from_time, to_time, timezone FROM quiet_hours WHERE user_id = $1")
            .bind(user).fetch_optional(pool).await)
    }

    pub async fn set_quiet_hours(
        &self,
        user: Uuid,
        from: &str,
        to: &str,
        timezone: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        with_db!(write &self.db, pool => sqlx::query(
            "INSERT INTO quiet_hours (user_id, from_time, to_time, timezone, updated_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (user_id) DO UPDATE SET from_time = excluded.from_time, to_time = excluded.to_time,
                 timezone = excluded.timezone, updated_at = excluded.updated_at")
            .bind(user).bind(from).bind(to).bind(timezone).bind(now).execute(pool).await.map(|_| ()))
    }

    /// Removes the person's quiet hours; false when they had none.
    pub async fn clear_quiet_hours(&self, user: Uuid) -> Result<bool, sqlx::Error> {
        let n = with_db!(write &self.db, pool => sqlx::query("DELETE FROM quiet_hours WHERE user_id = $1")
            .bind(user).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Holds a pending delivery until `until` (quiet hours): not an attempt.
    pub async fn hold(&self, id: Uuid, until: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
        with_db!(write &self.db, pool => sqlx::query(HOLD).bind(id).bind(until).bind(now).execute(pool).await.map(|_| ()))
    }

    /// Holds pending deliveries, each until its time, in one transaction.
    pub async fn hold_all(&self, until: &[(Uuid, DateTime<Utc>)], now: DateTime<Utc>) -> Result<(), sqlx::Error> {
        if until.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin().await?;
        for (id, at) in until {
            with_tx!(&mut tx, conn => sqlx::query(HOLD).bind(id).bind(at).bind(now).execute(conn).await.map(|_| ()))?;
        }
        tx.commit().await
    }

    /// Every delivery to the person (their export).
    pub async fn deliveries(&self, user: Uuid) -> Result<Vec<DeliveryRecord>, sqlx::Error> {
        let rows: Vec<DeliveryRow> = with_db!(&self.db, pool => sqlx::query_as(
            "SELECT id, kind, channel, status, attempts, created_at, updated_at FROM deliveries
             WHERE user_id = $1 ORDER BY created_at, id")
            .bind(user).fetch_all(pool).await)?;
        Ok(rows
            .into_iter()
            .map(|(id, kind, channel, status, attempts, created_at, updated_at)| DeliveryRecord {
                id,
                kind,
                channel,
                status,
                attempts,
                created_at,
                updated_at,
            })
            .collect())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A template that does not render (caught at start; here only if the
    /// event's values lack one): the event is dead-lettered, not retried.
    #[error("the notification could not be rendered: {0}")]
    Template(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kinds_whose_values_are_wiped_are_those_that_carry_a_secret() {
        for kind in Kind::ALL {
            assert_eq!(scrub!("x").contains(&format!("'{}'", kind.as_str())), kind.carries_secret(), "{kind:?}");
        }
    }
}
