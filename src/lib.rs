//! `stateless`: the PID 1 shim of a diskless client. See README.md.
//!
//! Layout, leaf first (no module uses one listed after it: no import cycles):
//! - [`model`]: options, facts, steps, outcomes: plain data;
//! - [`config`]: the kernel command line and `/etc/stateless.conf` into options;
//! - [`log`]: `log` records to /dev/kmsg or standard error;
//! - [`fs`]: the image root, tree copy, mounts and overlays, layers, host files;
//! - [`net`]: rtnetlink and /proc/net/pnp;
//! - [`sys`]: the syscall seam (the kernel, or a recording fake);
//! - [`kmod`]: kernel modules;
//! - [`boot`]: the phases of the boot, planned and carried out, the report, the handoff;
//! - [`tools`]: `stateless plan` and `stateless apply`.
//!
//! tests/layout.rs checks that order (none of STYLE.md's anchors checks its layering); the
//! lints are Cargo.toml's. Which anchor each part follows: README.md's Design.

pub mod boot;
pub mod config;
pub mod fs;
pub mod kmod;
pub mod log;
pub mod model;
pub mod net;
pub mod sys;
pub mod tools;
