//! Registration: the engine both faces drive (`polaris register` and the dashboard's wizard),
//! the wallets and keys it offers, what a face prepares around it (`session`), what it submits
//! and what it keeps.

pub mod display;
pub mod engine;
pub mod record;
pub mod session;
pub mod ssh_key;
pub mod submit;
pub mod wallets;
