//! As PID 1: boot the diskless client. Otherwise: the `plan`/`apply` tools.

fn main() {
    if rustix::process::getpid().is_init() {
        stateless::boot::run();
    }
    std::process::exit(stateless::tools::main(std::env::args_os()));
}
