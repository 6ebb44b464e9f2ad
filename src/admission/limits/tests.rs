use std::time::UNIX_EPOCH;

use super::{calendar::days_from_civil, *};

fn limiter(rpm: Option<u32>, tpm: Option<u64>, concurrency: Option<u32>) -> KeyLimiter {
    KeyLimiter::new(
        "k",
        KeyLimits {
            rpm,
            tpm,
            concurrency,
            ..KeyLimits::default()
        },
    )
}

fn rates(rpm: Option<u32>, tpm: Option<u64>, daily: Option<f64>) -> KeyLimits {
    KeyLimits {
        rpm,
        tpm,
        daily_budget_usd: daily,
        ..KeyLimits::default()
    }
}

/// Usage an upstream reports is not trusted to stay small: the window saturates instead of wrapping back to
/// empty (or panicking), and still expires.
#[test]
fn a_window_saturates_rather_than_wraps() {
    let t0 = Instant::now();
    let mut log = Log::default();
    log.add(t0, u64::MAX);
    log.add(t0 + Duration::from_secs(1), u64::MAX);
    assert_eq!(log.total(t0 + Duration::from_secs(1)), u64::MAX);
    assert!(log.check(t0 + Duration::from_secs(1), 1, 1000).is_err());
    log.adjust(t0, i64::MIN);
    assert_eq!(log.total(t0 + WINDOW + Duration::from_secs(2)), 0);
}

#[test]
fn the_daily_budget_holds_until_utc_midnight() {
    let budget = KeyLimits {
        daily_budget_usd: Some(1.0),
        ..KeyLimits::default()
    };
    let l = KeyLimiter::new("k", budget);
    let noon = UNIX_EPOCH + Duration::from_secs(20_000 * 86_400 + 43_200);
    let t = Instant::now();
    assert!(l.rates(t, noon, 10).is_ok());
    l.add_spend(0.6, noon);
    assert!(l.rates(t, noon, 10).is_ok());
    l.add_spend(0.6, noon);
    let err = l.rates(t, noon, 10).unwrap_err();
    assert!(
        err.to_string().contains("daily budget of $1.00 spent"),
        "{err}"
    );
    assert_eq!(
        err.retry_after(),
        Some(Duration::from_secs(43_200)),
        "until midnight UTC"
    );
    let tomorrow = noon + Duration::from_secs(43_200);
    assert!(l.rates(t, tomorrow, 10).is_ok());
    assert_eq!(l.spent_today(tomorrow), 0.0);
    // Raised at run time: admitted again today.
    l.set_limits(rates(None, None, Some(5.0)));
    assert!(l.rates(t, noon, 10).is_ok());
}

/// A budget is spent when the spend reaches it, not only once it passes it: spent to the cent, the next
/// call is refused, for the day and for the month.
#[test]
fn a_budget_spent_to_the_cent_refuses_the_next_call() {
    let noon = UNIX_EPOCH + Duration::from_secs(20_000 * 86_400 + 43_200);
    let t = Instant::now();
    let daily = KeyLimiter::new("d", rates(None, None, Some(1.0)));
    daily.add_spend(0.5, noon);
    assert!(daily.rates(t, noon, 10).is_ok());
    daily.add_spend(0.5, noon);
    assert_eq!(daily.spent_today(noon), 1.0);
    assert!(daily.rates(t, noon, 10).is_err(), "spent == budget");
    let monthly = KeyLimiter::new(
        "m",
        KeyLimits {
            monthly_budget_usd: Some(3.0),
            ..KeyLimits::default()
        },
    );
    monthly.add_spend(1.5, noon);
    assert!(monthly.rates(t, noon, 10).is_ok());
    monthly.add_spend(1.5, noon);
    let err = monthly.rates(t, noon, 10).unwrap_err();
    assert!(err.to_string().contains("monthly budget"), "{err}");
}

fn global() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(1000))
}

fn retry_after(err: GatewayError) -> Option<Duration> {
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    err.retry_after()
}

#[test]
fn exactly_n_requests_in_any_rolling_minute() {
    let l = limiter(Some(3), None, None);
    let (g, t0) = (global(), Instant::now());
    let s = Duration::from_secs;
    for at in [t0, t0 + s(10), t0 + s(59)] {
        l.admit(at, 0, &g).unwrap();
    }
    // The fourth within the minute: refused until the first leaves the window, exactly at t0 + 60 s.
    let err = l
        .admit(t0 + s(59) + Duration::from_millis(999), 0, &g)
        .unwrap_err();
    assert_eq!(retry_after(err), Some(Duration::from_millis(1)));
    l.admit(t0 + s(60), 0, &g).unwrap();
    // No burst across the boundary: t0+10 and t0+59 still count.
    assert_eq!(
        retry_after(l.admit(t0 + s(61), 0, &g).unwrap_err()),
        Some(s(9))
    );
    l.admit(t0 + s(70), 0, &g).unwrap();
}

/// Calls that land within one grain are kept as one entry, dated by the later: the entry expires with its
/// last call, never with its first, so merging never admits N+1 in a rolling minute.
#[test]
fn calls_merged_into_one_entry_expire_with_the_last() {
    let l = limiter(Some(2), None, None);
    let (g, t0) = (global(), Instant::now());
    let late = t0 + GRAIN / 2;
    l.admit(t0, 0, &g).unwrap();
    l.admit(late, 0, &g).unwrap();
    // A minute after the first call, the second is still in the window.
    let err = l.admit(t0 + WINDOW, 0, &g).unwrap_err();
    assert_eq!(retry_after(err), Some(GRAIN / 2));
    l.admit(late + WINDOW, 0, &g).unwrap();
    // A whole grain apart, two calls are two entries: the first leaves on its own.
    let mut log = Log::default();
    log.add(t0, 1);
    log.add(t0 + GRAIN, 1);
    assert_eq!(log.total(t0 + WINDOW), 1);
}

/// A limit set (or lowered) at run time counts what is already in its window: after 3 calls with no
/// limit, rpm = 4 admits exactly one more; tpm likewise counts the tokens already used.
#[test]
fn a_limit_set_at_run_time_counts_the_window_so_far() {
    let l = limiter(None, None, None);
    let (g, t0) = (global(), Instant::now());
    for i in 0..3 {
        let mut a = l.admit(t0 + Duration::from_secs(i), 100, &g).unwrap();
        a.reconcile(50);
    }
    l.set_limits(rates(Some(4), Some(200), None));
    let now = t0 + Duration::from_secs(5);
    l.admit(now, 40, &g).unwrap();
    let refused = l.admit(now, 0, &g).unwrap_err();
    assert!(matches!(
        refused,
        GatewayError::ResourceExhausted { limit: "rpm", .. }
    ));
    // 3 x 50 + 40 = 190 tokens in the window: 20 more do not fit under 200.
    l.set_limits(rates(None, Some(200), None));
    let refused = l.admit(now, 20, &g).unwrap_err();
    assert!(matches!(
        refused,
        GatewayError::ResourceExhausted { limit: "tpm", .. }
    ));
}

/// A monthly budget holds across days, until 00:00 UTC on the 1st of the next month.
#[test]
fn the_monthly_budget_holds_until_the_next_month() {
    let l = KeyLimiter::new(
        "k",
        KeyLimits {
            monthly_budget_usd: Some(1.0),
            ..KeyLimits::default()
        },
    );
    let t = Instant::now();
    let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
    l.add_spend(0.6, at(1_795_910_400)); // 2026-11-29 00:00 UTC
    l.add_spend(0.5, at(1_795_996_800)); // 2026-11-30 00:00: 1.1 this month
    let err = l.rates(t, at(1_795_996_800 + 3_600), 10).unwrap_err();
    assert!(
        err.to_string()
            .contains("monthly budget of $1.00 spent ($1.1000 this month"),
        "{err}"
    );
    // 2026-12-01 00:00 UTC is 23 hours later.
    assert_eq!(err.retry_after(), Some(Duration::from_secs(23 * 3_600)));
    assert!(l.rates(t, at(1_796_083_200), 10).is_ok(), "a new month");
}

#[test]
fn utc_months_are_calendar_months() {
    let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
    assert_eq!(utc_month(at(0)), 197001);
    assert_eq!(utc_month(at(951_782_400)), 200002); // 2000-02-29
    assert_eq!(utc_month(at(951_868_799)), 200002); // 2000-02-29 23:59:59
    assert_eq!(utc_month(at(951_868_800)), 200003);
    assert_eq!(utc_month(at(1_798_761_599)), 202612); // 2026-12-31 23:59:59
    assert_eq!(utc_month(at(1_798_761_600)), 202701);
}

/// Every day from 1970 to 2500 against a calendar kept by hand: its month, its day number, and the wait from
/// its last second to the next month (one second on a month's last day, else more).
#[test]
fn every_day_for_five_centuries_is_in_its_calendar_month() {
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let length = |y: i64, m: i64| match m {
        2 if leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    let (mut year, mut month, mut day) = (1970i64, 1i64, 1i64);
    for n in 0..(530 * 366) {
        if year == 2500 {
            break;
        }
        let midnight = UNIX_EPOCH + Duration::from_secs(n as u64 * 86_400);
        let last_second = midnight + Duration::from_secs(86_399);
        assert_eq!(days_from_civil(year, month, day), n, "{year}-{month}-{day}");
        assert_eq!(utc_day(last_second), n as u64);
        assert_eq!(
            i64::from(utc_month(midnight)),
            year * 100 + month,
            "day {n}"
        );
        assert_eq!(
            i64::from(utc_month(last_second)),
            year * 100 + month,
            "day {n}"
        );
        let to_next = until_next_utc_month(last_second);
        let days_left = length(year, month) - day;
        assert_eq!(
            to_next,
            Duration::from_secs(days_left as u64 * 86_400 + 1),
            "{year}-{month}-{day}"
        );
        assert_eq!(until_utc_midnight(last_second), Duration::from_secs(1));
        assert_eq!(until_utc_midnight(midnight), Duration::from_secs(86_400));
        day += 1;
        if day > length(year, month) {
            day = 1;
            month += 1;
            if month > 12 {
                month = 1;
                year += 1;
            }
        }
    }
    assert_eq!(year, 2500);
}

#[test]
fn tokens_are_reserved_then_reconciled() {
    let l = limiter(None, Some(1000), None);
    let (g, t0) = (global(), Instant::now());
    let mut a = l.admit(t0, 600, &g).unwrap();
    // 600 reserved: another 600 does not fit, and waits for the first to leave the window.
    let err = l.admit(t0 + Duration::from_secs(1), 600, &g).unwrap_err();
    assert_eq!(retry_after(err), Some(Duration::from_secs(59)));
    a.reconcile(150); // the call used only 150
    let mut b = l.admit(t0 + Duration::from_secs(1), 600, &g).unwrap();
    b.reconcile(850); // this one used more than it reserved: charged in full
    assert!(l.admit(t0 + Duration::from_secs(2), 1, &g).is_err());
    // A call that never reached the upstream gives its reservation back: the whole limit fits again.
    let fresh = limiter(None, Some(1000), None);
    let mut c = fresh.admit(t0, 1000, &g).unwrap();
    assert!(fresh.admit(t0, 1, &g).is_err());
    c.release();
    assert!(fresh.admit(t0, 1000, &g).is_ok());
}

#[test]
fn a_cancelled_call_keeps_its_reservation() {
    // Dropped without a reconcile (the client left mid-call): the upstream may have done the work, so the
    // reserved tokens stay charged for the minute; only the concurrency slot is free.
    let l = limiter(None, Some(1000), Some(1));
    let (g, t0) = (global(), Instant::now());
    let a = l.admit(t0, 600, &g).unwrap();
    drop(a);
    let err = l.admit(t0 + Duration::from_secs(1), 600, &g).unwrap_err();
    assert_eq!(retry_after(err), Some(Duration::from_secs(59)));
    assert!(
        l.admit(t0 + Duration::from_secs(1), 400, &g).is_ok(),
        "the slot is free"
    );
}

#[test]
fn a_request_larger_than_the_limit_has_no_retry_time() {
    let err = limiter(None, Some(100), None)
        .admit(Instant::now(), 101, &global())
        .unwrap_err();
    assert_eq!(retry_after(err.clone()), None);
    assert!(err.to_string().contains("lower max_tokens"), "{err}");
}

#[test]
fn a_refused_call_leaves_no_trace() {
    let l = limiter(Some(2), Some(100), None);
    let (g, t0) = (global(), Instant::now());
    l.admit(t0, 90, &g).unwrap();
    assert!(l.admit(t0, 20, &g).is_err()); // tpm refuses: the rpm entry must not be recorded
    l.admit(t0, 10, &g).unwrap(); // the second request still fits the rpm of 2
}

#[test]
fn concurrency_counts_until_the_admission_is_dropped() {
    let l = limiter(None, None, Some(2));
    let (g, t0) = (global(), Instant::now());
    let a = l.admit(t0, 0, &g).unwrap();
    let _b = l.admit(t0, 0, &g).unwrap();
    let err = l.admit(t0, 0, &g).unwrap_err();
    assert!(err.to_string().contains("concurrency"), "{err}");
    drop(a);
    l.admit(t0, 0, &g).unwrap();
    // The global cap sheds before any key limit.
    let tiny = Arc::new(Semaphore::new(0));
    assert!(limiter(None, None, None)
        .admit(t0, 0, &tiny)
        .unwrap_err()
        .to_string()
        .contains("gateway"));
}

/// The fleet's spend (reported by Redis's admission) raises this replica's figure, never lowers it; a new
/// UTC day or month starts from the fleet's figure alone; a non-number is ignored.
#[test]
fn the_fleets_spend_raises_this_replicas_never_lowers_it() {
    let l = KeyLimiter::new("k", KeyLimits::default());
    let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
    let day = at(1_796_083_200); // 2026-12-01 00:00 UTC
    l.add_spend(0.5, day);
    l.saw_fleet_spend(0.25, 0.25, day);
    assert_eq!((l.spent_today(day), l.spent_this_month(day)), (0.5, 0.5));
    l.saw_fleet_spend(2.0, 3.0, day);
    assert_eq!((l.spent_today(day), l.spent_this_month(day)), (2.0, 3.0));
    l.saw_fleet_spend(f64::NAN, f64::INFINITY, day);
    assert_eq!((l.spent_today(day), l.spent_this_month(day)), (2.0, 3.0));
    let next_day = at(1_796_083_200 + 86_400);
    assert_eq!(
        l.spent_today(next_day),
        0.0,
        "yesterday's spend is not today's"
    );
    assert_eq!(l.spent_this_month(next_day), 3.0);
    l.saw_fleet_spend(1.0, 4.0, next_day);
    assert_eq!(
        (l.spent_today(next_day), l.spent_this_month(next_day)),
        (1.0, 4.0)
    );
    let next_month = at(1_798_761_600); // 2027-01-01
    l.saw_fleet_spend(0.1, 0.1, next_month);
    assert_eq!(l.spent_this_month(next_month), 0.1);
    l.add_spend(0.2, next_month);
    assert!((l.spent_today(next_month) - 0.3).abs() < 1e-12);
}

/// A group's limiter names the group in its refusals and in the fleet's state, apart from a key of its name.
#[test]
fn a_group_is_named_as_a_group() {
    let key = KeyLimiter::new("team", rates(Some(1), None, None));
    let group = KeyLimiter::group("team", rates(Some(1), None, None));
    assert_eq!(
        (key.store_name(), group.store_name()),
        ("team".into(), "group:team".into())
    );
    assert_eq!(group.name(), "team");
    let (g, t0) = (global(), Instant::now());
    group.admit(t0, 0, &g).unwrap();
    let err = group.admit(t0, 0, &g).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("group 'team': 1 requests per minute"),
        "{err}"
    );
    key.admit(t0, 0, &g).unwrap();
    let err = key.admit(t0, 0, &g).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("key 'team': 1 requests per minute"),
        "{err}"
    );
}

/// Limits changed at run time keep the configured concurrency.
#[test]
fn a_run_time_change_keeps_the_concurrency() {
    let l = limiter(Some(1), None, Some(3));
    l.set_limits(KeyLimits {
        rpm: Some(9),
        concurrency: Some(50),
        ..KeyLimits::default()
    });
    assert_eq!(l.limits().rpm, Some(9));
    assert_eq!(l.limits().concurrency, Some(3));
    let g = global();
    let held: Vec<_> = (0..3).map(|_| l.permits(&g).unwrap()).collect();
    let err = l.permits(&g).unwrap_err();
    assert!(
        err.to_string().contains("3 calls already in flight"),
        "{err}"
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    drop(held);
}

/// What lost attempts spent stays in the window after the call: added to the answer's tokens, or alone
/// when the call got no answer.
#[test]
fn lost_attempts_count_on_top_of_the_answer() {
    let l = limiter(None, Some(1_000), None);
    let (g, t0) = (global(), Instant::now());
    let mut a = l.admit(t0, 500, &g).unwrap();
    a.add_lost(100);
    a.add_lost(50);
    a.reconcile(200);
    assert_eq!(l.tokens.lock().unwrap().total(t0), 350);
    let mut b = l.admit(t0, 500, &g).unwrap();
    b.add_lost(30);
    b.release();
    assert_eq!(l.tokens.lock().unwrap().total(t0), 380);
    // The gateway's own cap refuses with a second's wait.
    let err = limiter(None, None, None)
        .permits(&Arc::new(Semaphore::new(0)))
        .unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    assert_eq!(err.label(), "limit_max_in_flight");
}

#[test]
fn memory_is_bounded_whatever_the_rate() {
    let l = limiter(Some(u32::MAX), Some(u64::MAX / 2), None);
    let (g, t0) = (global(), Instant::now());
    for i in 0..100_000u64 {
        l.admit(t0 + Duration::from_micros(i * 600), 1, &g).unwrap(); // 60 s of calls at ~1,700/s
    }
    let entries = l.requests.lock().unwrap().entries.len();
    assert!(
        entries <= (WINDOW.as_millis() / GRAIN.as_millis()) as usize + 1,
        "{entries} entries"
    );
}

#[test]
fn estimates() {
    assert_eq!(
        crate::admission::estimate::estimate_tokens([8, 0], 100),
        (2 + 4) + 4 + 100
    );
}

#[test]
fn a_model_limiter_keeps_its_window_when_its_limits_change_but_not_its_concurrency() {
    let key = limiter(Some(100), None, None);
    let limits = |rpm, concurrency| {
        crate::config::ModelLimits::from([(
            "m".to_owned(),
            KeyLimits {
                rpm: Some(rpm),
                concurrency,
                ..KeyLimits::default()
            },
        )])
    };
    key.set_model_limits(&limits(1, None));
    let on_m = key.on_model("m").unwrap();
    assert!(key.on_model("other").is_none());
    let now = Instant::now();
    on_m.rates(now, SystemTime::now(), 1).unwrap();
    key.set_model_limits(&limits(2, None));
    assert!(Arc::ptr_eq(&on_m, &key.on_model("m").unwrap()));
    on_m.rates(now, SystemTime::now(), 1).unwrap();
    let refused = on_m.rates(now, SystemTime::now(), 1).unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("key 'k' on model 'm': 2 requests"),
        "{refused}"
    );
    assert_eq!(on_m.store_name(), "k@model:m");
    // A new concurrency starts it afresh; a model no longer named loses its limiter.
    key.set_model_limits(&limits(2, Some(1)));
    assert!(!Arc::ptr_eq(&on_m, &key.on_model("m").unwrap()));
    key.set_model_limits(&crate::config::ModelLimits::new());
    assert!(key.on_model("m").is_none());
}

#[test]
fn a_cancelled_reservation_leaves_no_trace_in_the_windows() {
    let l = limiter(Some(1), Some(1000), None);
    let now = Instant::now();
    let mut reserved = Reserved {
        key: l.rates(now, SystemTime::now(), 600).unwrap(),
        ..Reserved::default()
    };
    futures_util::FutureExt::now_or_never(reserved.cancel()).unwrap();
    // The request and its 600 tokens are gone: another fits the rpm of 1 and a tpm of 1000 at once.
    l.rates(now, SystemTime::now(), 1000).unwrap();
}
