//! Admission: who is calling (`auth`, and `jwt` for identity providers' tokens), whether their limits and budgets let the call in (`limits`), within
//! this replica or across the fleet through Redis (`shared`), and what each key used (`usage`); keys made at
//! run time through the admin API (`registry`).

pub(crate) mod auth;
pub(crate) mod estimate;
pub(crate) mod fleet;
pub(crate) mod jwt;
pub(crate) mod limits;
pub(crate) mod registry;
pub(crate) mod usage_book;
