//! Admission: who is calling (`auth`), whether their limits and budgets let the call in (`limits`), within
//! this replica or across the fleet through Redis (`shared`), and what each key used (`usage`).

pub mod auth;
pub mod limits;
pub mod shared;
pub mod usage;
