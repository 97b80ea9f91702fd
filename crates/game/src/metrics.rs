//! Game's metrics, beside kit's HTTP ones: live matches, how late the
//! clock runs its ticks (the jitter players feel), how long stepping every
//! match takes, frames published, and broadcasts skipped because realtime
//! was slower than the frames.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub struct Metrics {
    pub live_matches: Gauge,
    /// From when a tick was due to when the clock stepped it.
    pub tick_lateness: Histogram,
    /// How far the time between two wake-ups of the clock strays from the
    /// ticks it stepped (jitter proper: a constant lateness is none).
    pub tick_jitter: Histogram,
    /// Stepping every live match once (one wake-up of the clock).
    pub step_duration: Histogram,
    pub frames: Counter,
    /// Broadcasts replaced by a newer one before they were sent.
    pub skipped_broadcasts: Counter,
    pub matches_made: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let buckets = [0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.033, 0.1];
        let fine = [0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.008, 0.016];
        Self {
            live_matches: Gauge::default(),
            tick_lateness: Histogram::new(fine),
            tick_jitter: Histogram::new(fine),
            step_duration: Histogram::new(buckets),
            frames: Counter::default(),
            skipped_broadcasts: Counter::default(),
            matches_made: Counter::default(),
        }
    }
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register("game_live_matches", "Live matches this process runs", self.live_matches.clone());
        registry.register(
            "game_tick_lateness_seconds",
            "How late the clock stepped each tick after it was due",
            self.tick_lateness.clone(),
        );
        registry.register(
            "game_tick_jitter_seconds",
            "How far the time between two steps of the clock strays from the ticks it stepped",
            self.tick_jitter.clone(),
        );
        registry.register(
            "game_step_duration_seconds",
            "Time to step every live match once",
            self.step_duration.clone(),
        );
        registry.register("game_frames", "Match frames published", self.frames.clone());
        registry.register(
            "game_skipped_broadcasts",
            "Broadcasts replaced by a newer one before realtime took them",
            self.skipped_broadcasts.clone(),
        );
        registry.register("game_matches_made", "Matches made by the matchmaking queue", self.matches_made.clone());
    }
}
