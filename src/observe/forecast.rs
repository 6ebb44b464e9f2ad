//! The scaling signal: per-minute request counts, a forecast of the next minutes, and a recommended replica
//! count.
//!
//! The forecaster is additive Holt-Winters with a daily season of 1,440 one-minute slots. Until it has seen a
//! whole day it is plain Holt (level and trend); at the end of the first day the season is seeded from that day,
//! smoothed by a 15-minute running median so one day's spikes are not taken for a daily pattern.
//!
//! Why not something simpler, measured by replaying a synthetic two-day load (daily curve, ±5 % noise, 3 %
//! growth, three ×3 spikes a day) and scoring day two (mean absolute percentage error, spike minutes left out;
//! the noise alone costs 2.5 %): 10 minutes ahead, Holt-Winters 3.3 %, Holt 3.7 %, "next = now" 4.0 %;
//! 30 minutes ahead, 3.6 %, 6.7 % and 8.5 %. Only the seasonal model sees a ramp coming. (A mean instead of the
//! median for seeding scored 6.5 %: the first day's spikes came back as phantom peaks.)

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
};

/// One-minute slots in a day: the season.
pub(crate) const SEASON: usize = 1440;
const SMOOTHING: usize = 15;

#[derive(Debug, Clone)]
pub(crate) struct HoltWinters {
    alpha: f64,
    beta: f64,
    gamma: f64,
    level: f64,
    trend: f64,
    /// Seasonal offsets by minute of day; empty until the first day is seen.
    season: Vec<f64>,
    first_day: Vec<f64>,
    /// Observations so far (its remainder by SEASON is the next minute of day).
    seen: usize,
}

impl Default for HoltWinters {
    fn default() -> Self {
        HoltWinters::new(0.2, 0.01, 0.1)
    }
}

impl HoltWinters {
    pub(crate) fn new(alpha: f64, beta: f64, gamma: f64) -> HoltWinters {
        HoltWinters {
            alpha,
            beta,
            gamma,
            level: 0.0,
            trend: 0.0,
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
        } else {
            let s = self.slot(i);
            let previous = self.level;
            self.level = self.alpha * (x - s) + (1.0 - self.alpha) * (self.level + self.trend);
            self.trend = self.beta * (self.level - previous) + (1.0 - self.beta) * self.trend;
            if !self.season.is_empty() {
                self.season[i] = self.gamma * (x - self.level) + (1.0 - self.gamma) * s;
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

    /// Seeds the season from the first day: offsets of its 15-minute running median from its mean. A median,
    /// not a mean: a spike shorter than half the window leaves no trace, where a mean would smear it into a
    /// "daily pattern" that the next day does not have.
    fn seed_season(&mut self) {
        let day = std::mem::take(&mut self.first_day);
        let half = SMOOTHING / 2;
        let smooth: Vec<f64> = (0..SEASON)
            .map(|i| {
                let mut window: Vec<f64> = (i + SEASON - half..=i + SEASON + half)
                    .map(|j| day[j % SEASON])
                    .collect();
                window.sort_by(f64::total_cmp);
                window[half]
            })
            .collect();
        let mean = smooth.iter().sum::<f64>() / SEASON as f64;
        self.season = smooth.iter().map(|x| x - mean).collect();
        // Re-level on the season so the next minutes start from the right place of the day.
        self.level = day[SEASON - 1] - self.season[SEASON - 1];
        self.trend = 0.0;
    }

    /// The count expected `h` minutes after the last one observed (h ≥ 1), never below 0.
    pub(crate) fn forecast(&self, h: usize) -> f64 {
        let slot = self.seen + h - 1;
        (self.level + h as f64 * self.trend + self.slot(slot)).max(0.0)
    }
}

/// Replicas for a load: enough for the highest of now and the forecast, plus headroom, within bounds.
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
    model: HoltWinters,
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
mod tests {
    use super::*;

    /// Two synthetic days, per minute: a daily curve (quiet night, busy afternoon), 5 % noise, 3 % growth on
    /// day two, and three spikes a day (×3 for 5 minutes) at different times each day. Returns the load and
    /// which minutes are spikes.
    fn two_days() -> (Vec<f64>, Vec<bool>) {
        fastrand::seed(42);
        let spikes = [
            (200, 2),
            (700, 2),
            (1100, 2),
            (1440 + 400, 2),
            (1440 + 950, 2),
            (1440 + 1300, 2),
        ];
        let mut load = Vec::new();
        let mut spike = Vec::new();
        for t in 0..2 * SEASON {
            let day_angle =
                2.0 * std::f64::consts::PI * ((t % SEASON) as f64 - 480.0) / SEASON as f64;
            let growth = if t >= SEASON { 1.03 } else { 1.0 };
            let mut x = (2000.0 + 1500.0 * day_angle.sin())
                * growth
                * (1.0 + 0.1 * (fastrand::f64() - 0.5));
            let in_spike = spikes.iter().any(|&(at, _)| t >= at && t < at + 5);
            if in_spike {
                x *= 3.0;
            }
            load.push(x);
            spike.push(in_spike);
        }
        (load, spike)
    }

    /// Mean absolute percentage error of `h`-minute-ahead forecasts over day two (spike minutes, and the
    /// minutes right after them, left out: no model sees a spike coming).
    fn replay(mut predict: impl FnMut(&[f64]) -> f64, h: usize) -> f64 {
        let (load, spike) = two_days();
        let mut errors = Vec::new();
        for t in SEASON..load.len() {
            let near_spike = (t.saturating_sub(h + 5)..=t).any(|i| spike[i]);
            let forecast = predict(&load[..=t - h]);
            if !near_spike {
                errors.push((forecast - load[t]).abs() / load[t]);
            }
        }
        errors.iter().sum::<f64>() / errors.len() as f64
    }

    fn holt_winters_error(h: usize, model: HoltWinters) -> f64 {
        // Feed incrementally (the replay hands over growing prefixes).
        let mut fed = 0;
        let mut m = model;
        replay(
            |history| {
                for &x in &history[fed..] {
                    m.observe(x);
                }
                fed = history.len();
                m.forecast(h)
            },
            h,
        )
    }

    fn holt_error(h: usize) -> f64 {
        let (alpha, beta) = (0.2, 0.01);
        replay(
            |history| {
                let (mut level, mut trend) = (history[0], 0.0);
                for &x in &history[1..] {
                    let previous = level;
                    level = alpha * x + (1.0 - alpha) * (level + trend);
                    trend = beta * (level - previous) + (1.0 - beta) * trend;
                }
                (level + h as f64 * trend).max(0.0)
            },
            h,
        )
    }

    #[test]
    fn holt_winters_forecasts_a_daily_load_within_the_bound() {
        for (h, bound) in [(10, 0.04), (30, 0.05)] {
            let hw = holt_winters_error(h, HoltWinters::default());
            let holt = holt_error(h);
            let naive = replay(|history| history[history.len() - 1], h);
            println!("{h}-minute-ahead MAPE on day two: holt-winters {hw:.4}, holt {holt:.4}, last value {naive:.4}");
            // The noise alone (uniform ±5 %) costs 2.5 %: the bound leaves 1.5 points (2.5 at 30 minutes) for
            // the model, and it must beat both simpler methods.
            assert!(
                hw < bound,
                "{h} min: holt-winters error {hw:.4} over {bound}"
            );
            assert!(
                hw < holt && hw < naive,
                "{h} min: holt-winters {hw:.4} vs holt {holt:.4} vs last {naive:.4}"
            );
        }
    }

    #[test]
    fn replicas_cover_the_peak_with_headroom() {
        assert_eq!(recommended_replicas(0.0, 6000.0, 0.2, 2, 20), 2);
        assert_eq!(recommended_replicas(10_000.0, 6000.0, 0.2, 2, 20), 2);
        assert_eq!(recommended_replicas(10_001.0, 6000.0, 0.2, 2, 20), 3);
        assert_eq!(recommended_replicas(1e9, 6000.0, 0.2, 2, 20), 20);
    }

    #[test]
    fn the_signal_counts_minutes() {
        let s = Signal::default();
        for _ in 0..30 {
            s.count();
        }
        assert_eq!(s.tick(), 30);
        let o = s.outlook(10, 10.0, 0.0, 1, 100);
        assert_eq!(o.last_minute, 30);
        assert!(o.forecast_peak_per_minute >= 30.0);
        assert_eq!(o.recommended_replicas, 3);
        assert_eq!(s.tick(), 0, "each minute starts from zero");
    }
}
