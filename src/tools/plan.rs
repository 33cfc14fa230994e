//! `stateless plan`: the whole boot, planned from the facts given, printed; nothing changed.

use super::{dhcp_facts_refused, emit, given_facts, target_and_options, Args};
use crate::boot::plan;
use crate::config::Cmdline;
use crate::model::options::Options;
use crate::model::step::Step;

/// Builds the plan for `args`.
fn build(args: &Args) -> Result<plan::Plan, String> {
    if let Some(why) = dhcp_facts_refused(args, "plan") {
        return Err(why);
    }
    let (target, options, diagnostics) = target_and_options(args)?;
    // Initramfs mode: the command line alone until the switch into the image.
    let (before_switch, _) = Options::resolve(&Cmdline::parse(&args.cmdline), None);
    Ok(plan::dry_run(&target, options, diagnostics, given_facts(args), before_switch))
}

pub(super) fn command(args: &Args) -> Result<i32, String> {
    let plan = build(args)?;
    if args.json {
        super::emit_json(&plan)?;
    } else {
        emit(&plan.to_string())?;
    }
    // A boot that would find no root to mount.
    let unresolved = plan.steps.iter().any(|s| matches!(s, Step::NfsRoot { root: Err(_) }));
    Ok(i32::from(unresolved))
}
