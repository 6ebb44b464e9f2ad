//! `model_limits`, checked.

use super::tests::{parse, BASE};

#[test]
fn model_limits_name_a_model_and_set_rates_and_concurrency_only() {
    let with = |limits: &str| {
        parse(&BASE.replace(
            "sha256 = \"HASH\"",
            &format!("sha256 = \"HASH\"\nmodel_limits = {limits}"),
        ))
    };
    let cfg = with("{ m-alias = { rpm = 2, concurrency = 1 } }").unwrap();
    assert_eq!(cfg.keys[0].model_limits["m"].rpm, Some(2)); // an alias is taken to its model
    for (limits, says) in [
        (
            "{ x = { rpm = 2 } }",
            "keys[0].model_limits: no model named 'x'",
        ),
        (
            "{ m = { daily_budget_usd = 1.0 } }",
            "takes rpm, tpm and concurrency",
        ),
        ("{ m = { tpm = 0 } }", "a limit of 0"),
        (
            "{ m = { rpm = 1 }, m-alias = { rpm = 2 } }",
            "'m' is named twice",
        ),
    ] {
        let e = with(limits).unwrap_err().to_string();
        assert!(e.contains(says), "{limits}: {e}");
    }
}
