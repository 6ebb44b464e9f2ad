//! The scaling signal: per-minute request counts, a forecast of the next minutes, and a recommended replica
//! count.
//!
//! The forecaster is robust exponential smoothing with an additive daily season of 1,440 one-minute slots
//! (Holt-Winters without the trend term, with clipped updates):
//!
//! - **Clipped updates.** Each minute is compared with the forecast made for it; a surprise larger than twice
//!   the running scale of surprises is clipped before it updates the level and the season. A spike, even a
//!   30-minute one, barely moves the model; a lasting change raises the scale minute by minute until it is
//!   followed (about half an hour for a step of ×1.5 or ×0.5). Meanwhile the recommendation follows the load
//!   itself: it takes the higher of the last minute and the forecast.
//! - **The season** is seeded at the end of the first day from that day's 91-minute running median, so spikes
//!   up to 45 minutes long leave no trace, then updated slowly (γ = 0.05) from clipped minutes. Until a day
//!   has been seen, the forecast is the level alone.
//! - **No trend term**: growth of a few percent a day is tracked by the level; a trend learnt from minutes
//!   mostly extrapolated noise.
//!
//! Judged on realistic load (`forecast/tests.rs`: a two-hump workday curve whose amplitude and phase change
//! from day to day, a growth ramp, autocorrelated noise, spikes of 5–30 minutes), it beats the last value,
//! Holt with its best α and β, and seasonal naive; the figures are in docs/observability.md.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
};

/// One-minute slots in a day: the season.
pub(crate) const SEASON: usize = 1440;
/// The running median that seeds the season: odd, and more than twice the longest spike to forget.
const SEED_WINDOW: usize = 91;
/// A surprise beyond this many scales is clipped.
const CLIP: f64 = 2.0;
/// How fast the scale of surprises follows them.
const SCALE_RATE: f64 = 0.1;

#[derive(Debug, Clone)]
pub(crate) struct Forecaster {
    alpha: f64,
    gamma: f64,
    level: f64,
    /// The running mean absolute surprise (counts), at least 1.
    scale: f64,
    /// Seasonal offsets by minute of day; empty until the first day is seen.
    season: Vec<f64>,
    first_day: Vec<f64>,
    /// Observations so far (its remainder by SEASON is the next minute of day).
    seen: usize,
}

impl Default for Forecaster {
    fn default() -> Self {
        Forecaster::new(0.15, 0.05)
    }
}

impl Forecaster {
    pub(crate) fn new(alpha: f64, gamma: f64) -> Forecaster {
        Forecaster {
            alpha,
            gamma,
            level: 0.0,
            scale: 1.0,
            season: Vec::new(),
            first_day: Vec::with_capacity(SEASON),
            seen: 0,
        }
    }

    fn slot(&self, i: usize) -> f64 {
        self.season.get(i % SEASON).copied().unwrap_or(0.0)
    }

    /// Adds the count of the minute that just ended.
    pub(crate) fn observe(&mut self, x: f64) {
        let i = self.seen % SEASON;
        if self.seen == 0 {
            self.level = x;
            self.scale = (0.1 * x).max(1.0);
        } else {
            let s = self.slot(i);
            let expected = self.level + s;
            let surprise = x - expected;
            let bound = CLIP * self.scale;
            let clipped = expected + surprise.clamp(-bound, bound);
            self.scale =
                ((1.0 - SCALE_RATE) * self.scale + SCALE_RATE * surprise.abs().min(bound)).max(1.0);
            self.level = self.alpha * (clipped - s) + (1.0 - self.alpha) * self.level;
            if !self.season.is_empty() {
                self.season[i] = self.gamma * (clipped - self.level) + (1.0 - self.gamma) * s;
            }
        }
        self.seen += 1;
        if self.season.is_empty() {
            self.first_day.push(x);
            if self.first_day.len() == SEASON {
                self.seed_season();
            }
        }
    }

    /// Seeds the season from the first day: offsets of its running median from its mean. A median, not a
    /// mean: a spike shorter than half the window leaves no trace, where a mean would smear it into a "daily
    /// pattern" that the next day does not have.
    fn seed_season(&mut self) {
        let day = std::mem::take(&mut self.first_day);
        let half = SEED_WINDOW / 2;
        let mut window = Vec::with_capacity(SEED_WINDOW);
        let smooth: Vec<f64> = (0..SEASON)
            .map(|i| {
                window.clear();
                window.extend((i + SEASON - half..=i + SEASON + half).map(|j| day[j % SEASON]));
                window.sort_by(f64::total_cmp);
                window[half]
            })
            .collect();
        let mean = smooth.iter().sum::<f64>() / SEASON as f64;
        self.season = smooth.iter().map(|x| x - mean).collect();
        // The level is what is left without the season: the day's (median-smoothed) mean.
        self.level = mean;
    }

    /// The count expected `h` minutes after the last one observed (h ≥ 1), never below 0.
    pub(crate) fn forecast(&self, h: usize) -> f64 {
        (self.level + self.slot(self.seen + h - 1)).max(0.0)
    }
}

/// Replicas for a load: enough for the highest of now and the forecast, plus headroom, within bounds.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "a float to an integer: `as` saturates, NaN is 0"
)]
pub(crate) fn recommended_replicas(
    peak_per_minute: f64,
    capacity_per_replica: f64,
    headroom: f64,
    min: u32,
    max: u32,
) -> u32 {
    let needed = (peak_per_minute * (1.0 + headroom) / capacity_per_replica).ceil();
    (needed.clamp(f64::from(min), f64::from(max))) as u32
}

/// The live signal: counts requests as they come, and once a minute folds the count into the forecaster.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    this_minute: AtomicU64,
    state: Mutex<SignalState>,
}

#[derive(Debug, Default)]
struct SignalState {
    model: Forecaster,
    /// The last hour of counts, newest last.
    recent: VecDeque<u64>,
}

/// What the signal says now.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Outlook {
    pub last_minute: u64,
    /// The highest forecast over the horizon.
    pub forecast_peak_per_minute: f64,
    pub recommended_replicas: u32,
}

impl Signal {
    pub(crate) fn count(&self) {
        self.this_minute.fetch_add(1, Ordering::Relaxed);
    }

    /// Closes the minute: feeds its count to the forecaster.
    pub(crate) fn tick(&self) -> u64 {
        let n = self.this_minute.swap(0, Ordering::Relaxed);
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.model.observe(n as f64);
        s.recent.push_back(n);
        if s.recent.len() > 60 {
            s.recent.pop_front();
        }
        n
    }

    pub(crate) fn outlook(
        &self,
        horizon_minutes: usize,
        capacity: f64,
        headroom: f64,
        min: u32,
        max: u32,
    ) -> Outlook {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let last = s.recent.back().copied().unwrap_or(0);
        let peak = (1..=horizon_minutes.max(1))
            .map(|h| s.model.forecast(h))
            .fold(last as f64, f64::max);
        Outlook {
            last_minute: last,
            forecast_peak_per_minute: peak,
            recommended_replicas: recommended_replicas(peak, capacity, headroom, min, max),
        }
    }
}

#[cfg(test)]
mod tests;
