//! As PID 1: boot the diskless client. Otherwise: the `plan`/`apply` tools.
//! One binary over the library, as nixos-init's multicall one; chosen by PID and the first
//! argument, not by argv[0].

fn main() {
    if rustix::process::getpid().is_init() {
        stateless::boot::run();
    }
    std::process::exit(stateless::tools::main(std::env::args_os()));
}
