//! The forecaster judged on realistic load, against the simple methods an operator would otherwise use.
//!
//! The load (per minute, four days, several seeds): a workday curve with a morning and an afternoon hump and
//! an evening tail; each day's amplitude (±15 %) and phase (±20 min) drawn anew; growth as a ramp of 3 % a
//! day; autocorrelated noise (AR(1), φ = 0.9, 5 % standard deviation) on top of Poisson counting noise; three
//! spikes a day of 1.5–3× lasting 5–30 minutes, longer than the season's 15-minute smoothing window. Days two
//! to four are scored by mean absolute percentage error, leaving out the spike minutes only.

use super::*;

struct Load {
    x: Vec<f64>,
    spike: Vec<bool>,
}

fn normal() -> f64 {
    // Box-Muller on fastrand's seeded generator.
    let (u, v) = (fastrand::f64().max(1e-12), fastrand::f64());
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// The workday shape at minute `m` of the day: about 0.2 at night, 1.2 at the afternoon peak.
fn shape(m: f64) -> f64 {
    let hump = |at: f64, width: f64, height: f64| height * (-((m - at) / width).powi(2)).exp();
    0.2 + hump(600.0, 150.0, 0.6) + hump(900.0, 180.0, 0.9) + hump(1230.0, 90.0, 0.3)
}

fn realistic(seed: u64, days: usize) -> Load {
    fastrand::seed(seed);
    let minutes = days * SEASON;
    let day_shape: Vec<(f64, f64)> = (0..days)
        .map(|_| {
            (
                1.0 + 0.3 * (fastrand::f64() - 0.5),
                40.0 * (fastrand::f64() - 0.5),
            )
        })
        .collect();
    let mut spike = vec![false; minutes];
    let mut factor = vec![1.0; minutes];
    for day in 0..days {
        for _ in 0..3 {
            let at = day * SEASON + fastrand::usize(0..SEASON);
            let (len, height) = (fastrand::usize(5..=30), 1.5 + 1.5 * fastrand::f64());
            for t in at..(at + len).min(minutes) {
                spike[t] = true;
                factor[t] = height;
            }
        }
    }
    // AR(1) in the log, scaled so that its stationary standard deviation is 5 %.
    let (phi, sd) = (0.9_f64, 0.05_f64);
    let mut noise = 0.0;
    let x = (0..minutes)
        .map(|t| {
            let (amplitude, phase) = day_shape[t / SEASON];
            let m = (t % SEASON) as f64 - phase;
            let daily = 0.2 + amplitude * (shape(m) - 0.2);
            let growth = 1.0 + 0.03 * t as f64 / SEASON as f64;
            noise = phi * noise + sd * (1.0 - phi * phi).sqrt() * normal();
            let rate = 2000.0 * daily * growth * noise.exp() * factor[t];
            (rate + rate.sqrt() * normal()).max(0.0).round()
        })
        .collect();
    Load { x, spike }
}

/// A forecaster fed one minute at a time.
trait Online {
    fn observe(&mut self, x: f64);
    /// The count `h` minutes after the last one observed.
    fn forecast(&self, h: usize) -> f64;
}

impl Online for Forecaster {
    fn observe(&mut self, x: f64) {
        Forecaster::observe(self, x);
    }
    fn forecast(&self, h: usize) -> f64 {
        Forecaster::forecast(self, h)
    }
}

/// "Next = now".
#[derive(Default)]
struct Last(f64);

impl Online for Last {
    fn observe(&mut self, x: f64) {
        self.0 = x;
    }
    fn forecast(&self, _: usize) -> f64 {
        self.0
    }
}

/// Holt's level and trend, no season.
struct Holt {
    alpha: f64,
    beta: f64,
    level: Option<f64>,
    trend: f64,
}

impl Online for Holt {
    fn observe(&mut self, x: f64) {
        let Some(level) = self.level else {
            self.level = Some(x);
            return;
        };
        let next = self.alpha * x + (1.0 - self.alpha) * (level + self.trend);
        self.trend = self.beta * (next - level) + (1.0 - self.beta) * self.trend;
        self.level = Some(next);
    }
    fn forecast(&self, h: usize) -> f64 {
        (self.level.unwrap_or(0.0) + h as f64 * self.trend).max(0.0)
    }
}

/// Seasonal naive: yesterday's same minute, scaled by the last hour against the same hour yesterday.
#[derive(Default)]
struct SeasonalNaive(Vec<f64>);

impl Online for SeasonalNaive {
    fn observe(&mut self, x: f64) {
        self.0.push(x);
    }
    fn forecast(&self, h: usize) -> f64 {
        let n = self.0.len();
        if n < SEASON + 60 {
            return self.0.last().copied().unwrap_or(0.0);
        }
        let hour: f64 = self.0[n - 60..].iter().sum();
        let same_hour_yesterday: f64 = self.0[n - 60 - SEASON..n - SEASON].iter().sum();
        self.0[n - 1 + h - SEASON] * hour / same_hour_yesterday.max(1.0)
    }
}

/// Mean absolute percentage error of `h`-minute-ahead forecasts after the first day, spike minutes left out.
fn score(load: &Load, h: usize, model: &mut dyn Online) -> f64 {
    let mut made = vec![f64::NAN; load.x.len() + h];
    let (mut sum, mut n) = (0.0, 0);
    for (t, &x) in load.x.iter().enumerate() {
        if t >= SEASON && !load.spike[t] && x > 0.0 {
            sum += (made[t] - x).abs() / x;
            n += 1;
        }
        model.observe(x);
        made[t + h] = model.forecast(h);
    }
    sum / f64::from(n)
}

/// The model's constants were chosen on seeds 1–5; it is judged on others.
const SEEDS: [u64; 5] = [11, 12, 13, 14, 15];
const DAYS: usize = 4;

/// The mean score over the seeds of a model built fresh for each.
fn mean_score(h: usize, build: impl Fn() -> Box<dyn Online>) -> f64 {
    SEEDS
        .iter()
        .map(|&seed| score(&realistic(seed, DAYS), h, build().as_mut()))
        .sum::<f64>()
        / SEEDS.len() as f64
}

/// Holt with the α and β that score best on this very load: the baseline at its best.
fn tuned_holt(h: usize) -> (f64, f64, f64) {
    let mut best = (f64::MAX, 0.0, 0.0);
    for alpha in [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9] {
        for beta in [0.0, 0.001, 0.01, 0.05] {
            let e = mean_score(h, || {
                Box::new(Holt {
                    alpha,
                    beta,
                    level: None,
                    trend: 0.0,
                })
            });
            if e < best.0 {
                best = (e, alpha, beta);
            }
        }
    }
    best
}

#[test]
fn the_forecaster_beats_the_simple_methods_on_realistic_load() {
    for h in [10, 30] {
        let ours = mean_score(h, || Box::new(Forecaster::default()));
        let last = mean_score(h, || Box::<Last>::default());
        let (holt, alpha, beta) = tuned_holt(h);
        let seasonal = mean_score(h, || Box::<SeasonalNaive>::default());
        println!(
            "{h} min ahead, MAPE over days 2-4 without spike minutes: forecaster {ours:.4}, \
             last value {last:.4}, Holt (α {alpha}, β {beta}) {holt:.4}, seasonal naive {seasonal:.4}"
        );
        // Bounds with room over the held-out figures (7.2 % and 8.8 %); and a clear win over each baseline.
        let bound = if h == 10 { 0.08 } else { 0.10 };
        assert!(ours < bound, "{h} min: {ours:.4} over {bound}");
        for (name, other) in [("last", last), ("holt", holt), ("seasonal naive", seasonal)] {
            assert!(
                ours < 0.9 * other,
                "{h} min: {ours:.4} against {name} {other:.4}"
            );
        }
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

/// A lasting step (a large customer arrives or leaves at noon on day three) is followed within the hour: from
/// then on, the ten-minute-ahead forecasts are off by less than 10 % on average.
#[test]
fn a_lasting_change_is_followed_within_the_hour() {
    for step in [1.5, 0.5, 3.0] {
        let load = realistic(7, 3);
        let at = 2 * SEASON + 720;
        let mut model = Forecaster::default();
        let mut made = vec![f64::NAN; load.x.len() + 10];
        let mut errors = Vec::new();
        for (t, &x) in load.x.iter().enumerate() {
            let x = if t >= at { x * step } else { x };
            if (at + 60..at + 180).contains(&t) && !load.spike[t] {
                errors.push((made[t] - x).abs() / x);
            }
            model.observe(x);
            made[t + 10] = model.forecast(10);
        }
        let error = errors.iter().sum::<f64>() / errors.len() as f64;
        assert!(error < 0.1, "step ×{step}: {error:.3} off after an hour");
    }
}

/// A quiet gateway: zeros and single calls give a finite forecast, never below zero.
#[test]
fn low_counts_and_zeros_stay_sane() {
    let mut model = Forecaster::default();
    fastrand::seed(3);
    for t in 0..3 * SEASON {
        let x = if t % 97 == 0 {
            3.0
        } else {
            f64::from(u8::from(fastrand::u8(..) < 8))
        };
        model.observe(x);
        let f = model.forecast(15);
        assert!(f.is_finite() && (0.0..5.0).contains(&f), "minute {t}: {f}");
    }
}
