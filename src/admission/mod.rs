//! Admission: who is calling (`auth`), and whether their limits let the call in (`limits`), within this
//! replica or across the fleet through Redis (`shared`).

pub mod auth;
pub mod limits;
pub mod shared;
