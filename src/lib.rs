//! `stateless`: the PID 1 shim of a diskless client. See README.md.
//!
//! Pipeline: [`cmdline`] (pure parse) → [`facts`] (what the kernel knows) → [`plan`] (typed
//! steps) → [`execute`] (thin, through the [`sys`] seam) → [`handoff`] (exec the real init).

pub mod boot;
pub mod cli;
pub mod cmdline;
pub mod console;
pub mod execute;
pub mod facts;
pub mod handoff;
pub mod hostfiles;
pub mod hostname;
pub mod layers;
pub mod log;
pub mod modules;
pub mod mounts;
pub mod net;
pub mod plan;
pub mod report;
pub mod sys;
pub mod tree;
mod unsafe_ops;
