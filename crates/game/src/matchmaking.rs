//! The matchmaking queue: players waiting for a match of one mode are
//! grouped with players of close rating, the allowed gap widening the
//! longer they wait. Pure: the caller keeps the queue and the clock.

use std::time::Duration;

use uuid::Uuid;

/// The gap allowed at once, and how fast it widens, up to the cap.
pub const START_WINDOW: f64 = 100.0;
pub const WIDENING_PER_SEC: f64 = 50.0;
pub const MAX_WINDOW: f64 = 800.0;

/// The rating a player without one is matched at.
pub const DEFAULT_RATING: f64 = 1500.0;

#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub user: Uuid,
    pub rating: f64,
    /// How long they have waited.
    pub waited: Duration,
}

/// The rating gap a player who has waited this long accepts.
pub fn window(waited: Duration) -> f64 {
    (START_WINDOW + WIDENING_PER_SEC * waited.as_secs_f64()).min(MAX_WINDOW)
}

/// Groups of `size` players whose ratings all lie within every member's
/// window; the others keep waiting. Neighbours in rating are grouped first,
/// so the closest games are made.
pub fn groups(waiting: &[Waiting], size: usize) -> Vec<Vec<Uuid>> {
    if size == 0 {
        return Vec::new();
    }
    let mut sorted: Vec<&Waiting> = waiting.iter().collect();
    sorted.sort_by(|a, b| a.rating.total_cmp(&b.rating));
    let mut made = Vec::new();
    let mut i = 0;
    while i + size <= sorted.len() {
        let group = &sorted[i..i + size];
        let gap = group[size - 1].rating - group[0].rating;
        let allowed = group.iter().map(|w| window(w.waited)).fold(f64::INFINITY, f64::min);
        if gap <= allowed {
            made.push(group.iter().map(|w| w.user).collect());
            i += size;
        } else {
            i += 1;
        }
    }
    made
}

/// Players nobody was found for after `after` of waiting: a match each
/// (with four players, up to three of them together, those who waited
/// longest first), its other seats left for bots. `waiting` are the ones
/// [`groups`] did not place.
pub fn for_bots(waiting: &[Waiting], size: usize, after: Duration) -> Vec<Vec<Uuid>> {
    if size < 2 {
        return Vec::new();
    }
    let mut lonely: Vec<&Waiting> = waiting.iter().filter(|w| w.waited >= after).collect();
    lonely.sort_by_key(|w| std::cmp::Reverse(w.waited));
    lonely.chunks(size - 1).map(|chunk| chunk.iter().map(|w| w.user).collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(rating: f64, secs: u64) -> Waiting {
        Waiting { user: Uuid::now_v7(), rating, waited: Duration::from_secs(secs) }
    }

    #[test]
    fn close_ratings_are_paired_at_once_and_far_ones_wait_until_the_window_widens() {
        let (a, b, c) = (w(1500.0, 0), w(1580.0, 0), w(2000.0, 0));
        let made = groups(&[a.clone(), c.clone(), b.clone()], 2);
        assert_eq!(made, vec![vec![a.user, b.user]], "the close pair, not the far one");
        // 1500 and 1900: a 400 gap needs 6 s of waiting from both.
        let (d, e) = (w(1500.0, 5), w(1900.0, 6));
        assert!(groups(&[d.clone(), e.clone()], 2).is_empty());
        let (d, e) = (Waiting { waited: Duration::from_secs(6), ..d }, e);
        assert_eq!(groups(&[d.clone(), e.clone()], 2), vec![vec![d.user, e.user]]);
    }

    #[test]
    fn players_alone_long_enough_get_bots_the_others_wait() {
        let after = Duration::from_secs(20);
        let (a, b) = (w(1500.0, 25), w(1600.0, 5));
        assert_eq!(for_bots(&[a.clone(), b.clone()], 2, after), vec![vec![a.user]]);
        // Four players: up to three people together, the longest waiting first.
        let (c, d, e, f) = (w(1500.0, 21), w(1800.0, 40), w(1200.0, 30), w(1500.0, 22));
        let made = for_bots(&[c.clone(), d.clone(), e.clone(), f.clone()], 4, after);
        assert_eq!(made, vec![vec![d.user, e.user, f.user], vec![c.user]]);
        assert!(for_bots(&[b], 2, after).is_empty());
    }

    #[test]
    fn the_window_is_capped() {
        assert_eq!(window(Duration::from_secs(3600)), MAX_WINDOW);
        let (a, b) = (w(1000.0, 3600), w(2000.0, 3600));
        assert!(groups(&[a, b], 2).is_empty(), "a gap over the cap never matches");
    }

    #[test]
    fn four_player_groups_take_four_neighbours() {
        let players: Vec<Waiting> = [1500.0, 1510.0, 1520.0, 1530.0, 1540.0].into_iter().map(|r| w(r, 0)).collect();
        let made = groups(&players, 4);
        assert_eq!(made.len(), 1);
        assert_eq!(made[0], players[..4].iter().map(|p| p.user).collect::<Vec<_>>());
        assert!(groups(&players[..3], 4).is_empty(), "three are not enough");
    }
}
