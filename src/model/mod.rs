//! The vocabulary of the boot: options, facts, steps and their outcomes. Pure data, the leaf
//! every other part may use; it uses nothing of theirs.

pub mod entry;
pub mod facts;
pub mod hostname;
pub mod image;
pub mod interface;
pub mod ipv4;
pub mod layer;
pub mod lease;
pub mod manifest;
pub mod mount;
pub mod nbdroot;
pub mod nfsroot;
pub mod options;
pub mod outcome;
pub mod paths;
pub mod servers;
pub mod sign;
pub mod step;
pub mod text;
pub mod verity;
pub mod writable;
